"""Max-activating examples: the top-N token positions of each neuron over a corpus, each with its context, and N
random examples from a quantile band of the neuron's activations (the top alone can mislead: the paper's
"interpretability illusion"). Memory stays bounded: a running top-N and a uniform reservoir sample of tokens."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from probekit.contracts import ModelAdapter
from probekit.errors import ProbekitError
from probekit.figures import new_figure
from probekit.inspection.neurons import NeuronId
from probekit.inspection.output import Inspection
from probekit.inspection.stream import Reservoir, RunningTop, stream_tokens

#: tokens kept in the uniform sample the quantile band is drawn from
RESERVOIR_SIZE = 200_000


def max_activating(
    adapter: ModelAdapter,
    sequences: Sequence[np.ndarray],
    neurons: Sequence[NeuronId],
    top: int = 20,
    band: tuple[float, float] = (0.9, 0.99),
    band_examples: int = 10,
    context: int = 8,
    seed: int = 0,
    batch_tokens: int = 4096,
    on_tokens: Callable[[int], None] | None = None,
) -> Inspection:
    """The ``top`` largest activations of each neuron over ``sequences`` and ``band_examples`` random tokens whose
    activation lies between the ``band`` quantiles (estimated on a uniform sample of the corpus's tokens)."""
    low, high = band
    if not 0 <= low < high <= 1:
        raise ProbekitError(f"--band {low}-{high}: give two quantiles 0 <= low < high <= 1, e.g. 0.9-0.99")
    tops = RunningTop(len(neurons), top)
    sample = Reservoir(RESERVOIR_SIZE, seed)
    for batch in stream_tokens(adapter, sequences, neurons, batch_tokens, on_tokens=on_tokens):
        tops.update(batch)
        sample.update(batch)
    if sample.values is None:
        raise ProbekitError("the corpus holds no token to read (only special tokens?)")
    rows: list[dict[str, Any]] = []
    rng = np.random.default_rng(seed)
    thresholds = []
    for column, neuron in enumerate(neurons):
        values, sequence, position = tops.ranked(column)
        for rank, (value, s, p) in enumerate(zip(values, sequence, position), start=1):
            rows.append(_example(adapter.tokenizer, sequences, str(neuron), "top", rank, float(value), int(s), int(p),
                                 context))
        sampled = sample.values[:, column]
        lo, hi = np.quantile(sampled, [low, high])
        thresholds.append((float(lo), float(hi)))
        inside = np.flatnonzero((sampled >= lo) & (sampled <= hi))
        chosen = rng.choice(inside, min(band_examples, len(inside)), replace=False) if len(inside) else inside
        for rank, index in enumerate(chosen[np.argsort(-sampled[chosen], kind="stable")], start=1):
            rows.append(_example(adapter.tokenizer, sequences, str(neuron), f"band {low:g}-{high:g}", rank,
                                 float(sampled[index]), int(sample.sequence[index]), int(sample.position[index]),
                                 context))
    figure = _figure(neurons, sample.values, tops, thresholds)
    description = {"neurons": [str(n) for n in neurons], "tokens": sample.seen, "sequences": len(sequences),
                   "top": top, "band": [low, high], "band_thresholds": thresholds, "band_examples": band_examples,
                   "context": context, "seed": seed, "sample_size": len(sample.values)}
    return Inspection("max-activating", {"examples": pa.Table.from_pylist(rows)}, description, figure)


def _example(tokenizer: Any, sequences: Sequence[np.ndarray], neuron: str, kind: str, rank: int, value: float,
             sequence: int, position: int, context: int) -> dict[str, Any]:
    ids = np.asarray(sequences[sequence])
    before = ids[max(0, position - context) : position]
    after = ids[position + 1 : position + 1 + context]
    return {"neuron": neuron, "kind": kind, "rank": rank, "activation": value, "sequence": sequence,
            "position": position, "token_id": int(ids[position]),
            "before": tokenizer.decode(before.tolist()), "token": tokenizer.decode([int(ids[position])]),
            "after": tokenizer.decode(after.tolist())}


def _figure(neurons: Sequence[NeuronId], sampled: np.ndarray, tops: RunningTop,
            thresholds: list[tuple[float, float]]) -> Any:
    figure, axes = new_figure(1, len(neurons))
    for column, neuron in enumerate(neurons):
        ax = axes[0, column]
        ax.hist(sampled[:, column], bins=80, color="0.6", log=True, label="token sample")
        lo, hi = thresholds[column]
        ax.axvspan(lo, hi, color="tab:orange", alpha=0.25, label="quantile band")
        for value in tops.ranked(column)[0]:
            ax.axvline(value, color="tab:red", lw=0.6, alpha=0.6)
        ax.set_title(f"{neuron}: activations (red: top examples)")
        ax.set_xlabel("activation")
        ax.set_ylabel("tokens (log)")
        ax.legend(fontsize="small")
    return figure
