"""Ablation (the paper's figure 3, right): the language-model loss of each sequence with the neurons zero- or
mean-ablated against the clean model, per class of sequence (e.g. the French neuron costs French text, not other
languages): the relative increase of the mean loss per class with a seeded bootstrap interval over sequences."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from probekit.contracts import Feature, ModelAdapter, ProbingDataset
from probekit.errors import ProbekitError, guarded
from probekit.extraction import length_batches, pad_batch, pad_token_id
from probekit.figures import new_figure
from probekit.inspection.neurons import NeuronId
from probekit.inspection.output import Inspection
from probekit.inspection.stream import stream_tokens

NO_CLASS = ""


def sequence_classes(dataset: ProbingDataset, feature: Feature | None) -> np.ndarray:
    """Each sequence's class: with ``feature``, its name or "not <name>" by the label of the feature's sites in the
    sequence; otherwise the feature positive in it, or "none" (one-vs-rest datasets such as natural_language give each
    text its language). Sequences the feature does not label (or labels both ways) get no class; without ``feature``
    a dataset whose sequences are positive for several features (token-level labels) needs one chosen."""
    classes = np.full(len(dataset.sequences), NO_CLASS, dtype=object)
    sequence_of = dataset.sites.sequence
    if feature is not None:
        positive = np.zeros(len(dataset.sequences), dtype=bool)
        negative = np.zeros(len(dataset.sequences), dtype=bool)
        positive[sequence_of[feature.sites[feature.labels]]] = True
        negative[sequence_of[feature.sites[~feature.labels]]] = True
        classes[positive & ~negative] = feature.name
        classes[negative & ~positive] = f"not {feature.name}"
        return classes
    for each in dataset.features:
        classes[sequence_of[each.sites][classes[sequence_of[each.sites]] == NO_CLASS]] = "none"
    for each in dataset.features:
        positive = np.unique(sequence_of[each.sites[each.labels]])
        taken = positive[(classes[positive] != "none") & (classes[positive] != each.name)]
        if len(taken):
            raise ProbekitError(f"sequence {int(taken[0])} is positive for both '{classes[taken[0]]}' and "
                                f"'{each.name}': this dataset labels tokens, not whole texts; choose one feature "
                                "with --feature")
        classes[positive] = each.name
    return classes


def ablation(
    adapter: ModelAdapter,
    dataset: ProbingDataset,
    neurons: Sequence[NeuronId],
    mode: Literal["zero", "mean"] = "zero",
    feature: Feature | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    batch_tokens: int = 4096,
    on_sequences: Callable[[int], None] | None = None,
) -> Inspection:
    """Per-sequence loss clean and ablated, and per class the relative increase of the mean loss with a 95 %
    percentile-bootstrap interval (sequences resampled within the class, ``bootstrap`` draws)."""
    require_language_model(adapter)
    classes = sequence_classes(dataset, feature)
    chosen = np.flatnonzero(classes != NO_CLASS)
    if len(chosen) == 0:
        raise ProbekitError("no sequence of the dataset has a class to compare")
    sequences = [dataset.sequences[i] for i in chosen]
    means = None
    if mode == "mean":  # the neuron's mean over every real token of the corpus, special tokens included
        totals, count = np.zeros(len(neurons)), 0
        for batch in stream_tokens(adapter, sequences, neurons, batch_tokens, include_special=True):
            totals += batch.values.sum(axis=0, dtype=np.float64)
            count += len(batch.values)
        means = (totals / max(count, 1)).tolist()
    pairs = [(n.layer, n.index) for n in neurons]
    clean, ablated = np.zeros(len(sequences)), np.zeros(len(sequences))
    lengths = np.array([len(ids) for ids in sequences])
    pad_id, left = pad_token_id(adapter.tokenizer), adapter.padding_side == "left"
    for members in length_batches(lengths, np.arange(len(sequences)), batch_tokens):
        batch, _ = pad_batch([sequences[i] for i in members], pad_id, left)
        result = guarded(lambda: adapter.ablate(pairs, batch, mode, means=means), "ablation")
        clean[members], ablated[members] = result.loss_clean, result.loss_ablated
        if on_sequences is not None:
            on_sequences(len(members))

    rng = np.random.default_rng(seed)
    summary = []
    for name in sorted(set(classes[chosen])):
        own = np.flatnonzero(classes[chosen] == name)
        increase = relative_increase(clean[own], ablated[own])
        draws = rng.integers(0, len(own), size=(bootstrap, len(own)))
        resampled = relative_increase(clean[own][draws], ablated[own][draws], axis=1)
        low, high = np.quantile(resampled, [0.025, 0.975])
        summary.append({"class": name, "sequences": len(own), "loss_clean": float(clean[own].mean()),
                        "loss_ablated": float(ablated[own].mean()), "relative_increase": float(increase),
                        "increase_low": float(low), "increase_high": float(high)})
    per_sequence = [{"sequence": int(s), "class": str(classes[s]), "loss_clean": float(c), "loss_ablated": float(a)}
                    for s, c, a in zip(chosen, clean, ablated)]
    description: dict[str, Any] = {"neurons": [str(n) for n in neurons], "mode": mode, "means": means,
                                   "feature": feature.name if feature else None, "bootstrap": bootstrap, "seed": seed,
                                   "sequences": len(chosen)}
    tables = {"classes": pa.Table.from_pylist(summary), "sequences": pa.Table.from_pylist(per_sequence)}
    return Inspection("ablate", tables, description, _figure(neurons, mode, summary))


def require_language_model(adapter: ModelAdapter) -> None:
    """Stop with a clear message when the adapter cannot ablate (no language-model head, e.g. an encoder)."""
    try:
        adapter.unembedding()
    except NotImplementedError as error:
        raise ProbekitError(f"ablate measures the language-model loss, so it needs a model with a language-model "
                            f"head: {error}; use a causal language model such as pythia") from None


def relative_increase(clean: np.ndarray, ablated: np.ndarray, axis: int | None = None) -> Any:
    """(mean ablated loss - mean clean loss) / mean clean loss."""
    base = np.mean(clean, axis=axis)
    return (np.mean(ablated, axis=axis) - base) / base


def _figure(neurons: Sequence[NeuronId], mode: str, summary: list[dict[str, Any]]) -> Any:
    figure, axes = new_figure(1, 1, width=max(5.0, 0.8 * len(summary)), height=3.5)
    ax = axes[0, 0]
    names = [row["class"] for row in summary]
    values = np.array([row["relative_increase"] for row in summary])
    errors = np.array([[row["relative_increase"] - row["increase_low"] for row in summary],
                       [row["increase_high"] - row["relative_increase"] for row in summary]])
    ax.bar(names, 100 * values, yerr=100 * errors, capsize=3, color="tab:purple")
    ax.set_ylabel("loss increase (%)")
    ax.set_title(f"{mode}-ablating {', '.join(map(str, neurons))}")
    ax.tick_params(axis="x", labelrotation=45)
    return figure
