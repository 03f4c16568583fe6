"""A neuron's direct effect on the output logits (the paper's figure 5b): what it writes, ``W_out[:, n]``, read by
the unembedding, ``W_U @ W_out[:, n]``; top boosted and suppressed tokens.

Between the last block and ``W_U`` sits the final norm. Its elementwise scale is folded in, and for LayerNorm
(GPT-NeoX / Pythia, GPT-2) so is its mean subtraction: the effect is ``W_U @ (scale * (w - mean(w)))``. Its division
by the residual stream's norm depends on the input, is positive and is the same for every token, so it is left out:
it rescales all effects of a position alike and changes no ranking. This is the direct path only (not through later
layers)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from probekit.contracts import ModelAdapter
from probekit.errors import ProbekitError
from probekit.figures import new_figure
from probekit.inspection.neurons import NeuronId
from probekit.inspection.output import Inspection


def direct_effects(adapter: ModelAdapter, neurons: Sequence[NeuronId]) -> tuple[np.ndarray, str]:
    """``[vocab, neurons]`` logit effects, and how the final norm was folded in (for the description)."""
    try:
        W_U = adapter.unembedding()
    except NotImplementedError as error:
        raise ProbekitError(f"logits needs a model with an unembedding (a language-model head): {error}; "
                            "use a causal language model such as pythia") from None
    try:
        norm = adapter.final_norm()
        folded = "none (the model has no final norm)" if norm is None else (
            "scale and mean subtraction (LayerNorm)" if norm.centered else "scale (RMSNorm)")
    except NotImplementedError:
        norm, folded = None, "not folded: the adapter does not expose its final norm"
    columns = []
    weights: dict[int, Any] = {}
    for neuron in neurons:
        if neuron.layer not in weights:
            weights[neuron.layer] = adapter.weights(neuron.layer)
        direction = np.asarray(weights[neuron.layer].W_out[:, neuron.index], dtype=np.float64)
        if norm is not None:
            if norm.centered:
                direction = direction - direction.mean()
            direction = direction * np.asarray(norm.scale, dtype=np.float64)
        columns.append(np.asarray(W_U, dtype=np.float64) @ direction)
    return np.stack(columns, axis=1), folded


def logits(adapter: ModelAdapter, neurons: Sequence[NeuronId], top: int = 20) -> Inspection:
    """Each neuron's ``top`` most boosted and most suppressed tokens, and every token's effect (saved)."""
    effects, folded = direct_effects(adapter, neurons)
    texts = [adapter.tokenizer.decode([t]) for t in range(effects.shape[0])]
    ranked, every = [], []
    for column, neuron in enumerate(neurons):
        order = np.argsort(-effects[:, column], kind="stable")
        for end, chosen in (("boosted", order[:top]), ("suppressed", order[::-1][:top])):
            ranked += [{"neuron": str(neuron), "end": end, "rank": rank, "token_id": int(t), "token": texts[t],
                        "effect": float(effects[t, column])} for rank, t in enumerate(chosen, start=1)]
        every += [{"neuron": str(neuron), "token_id": t, "token": texts[t], "effect": float(effects[t, column])}
                  for t in range(effects.shape[0])]
    description = {"neurons": [str(n) for n in neurons], "vocab": effects.shape[0], "top": top,
                   "final_norm_folded": folded}
    return Inspection("logits", {"ranked": pa.Table.from_pylist(ranked), "effects": pa.Table.from_pylist(every)},
                      description, _figure(neurons, effects, ranked), [f"final norm folded in: {folded}"])


def _figure(neurons: Sequence[NeuronId], effects: np.ndarray, ranked: list[dict[str, Any]]) -> Any:
    figure, axes = new_figure(len(neurons), 2, height=4.5)
    for row, neuron in enumerate(neurons):
        axes[row, 0].hist(effects[:, row], bins=100, color="0.5", log=True)
        axes[row, 0].set_title(f"{neuron}: direct logit effect over the vocabulary")
        axes[row, 0].set_xlabel("effect on the logit")
        own = [r for r in ranked if r["neuron"] == str(neuron)]
        shown = [r for r in own if r["end"] == "boosted"][:10] + [r for r in own if r["end"] == "suppressed"][:10][::-1]
        axes[row, 1].barh([repr(r["token"]) for r in shown][::-1], [r["effect"] for r in shown][::-1],
                          color=["tab:blue" if r["end"] == "boosted" else "tab:red" for r in shown][::-1])
        axes[row, 1].set_title(f"{neuron}: most boosted and suppressed tokens")
    return figure
