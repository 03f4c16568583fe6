"""A feature's activations by class: the distribution of each neuron (and of their sum: superposition, where
several polysemantic neurons together separate what none does alone) at the feature's sites, split into positive
and negative, and into the dataset's finer kinds where it defines them (the compound-word XY / XZ / WY pools of the
paper's figure 2b), optionally against every other token of the same sequences. Histograms in raw counts and in
densities (figure 5d), and the precision and recall of the best single threshold."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from probekit.cache import ActivationCache
from probekit.contracts import Feature, ModelAdapter, ProbingDataset
from probekit.errors import ProbekitError
from probekit.figures import new_figure
from probekit.inspection.neurons import NeuronId
from probekit.inspection.output import Inspection
from probekit.inspection.stream import site_activations, stream_tokens

OTHER = "other tokens"


def by_class(
    adapter: ModelAdapter,
    dataset: ProbingDataset,
    feature: Feature,
    neurons: Sequence[NeuronId],
    cache: ActivationCache | None = None,
    other_tokens: bool = False,
    bins: int = 50,
    batch_tokens: int = 4096,
    on_sites: Callable[[int], None] | None = None,
) -> Inspection:
    """Distributions, histograms and best thresholds of ``neurons`` (and their sum when several) on ``feature``."""
    values, from_cache = site_activations(adapter, dataset, neurons, cache, batch_tokens, on_sites)
    values = values[feature.sites]
    labels = feature.labels
    series = {str(n): values[:, i] for i, n in enumerate(neurons)}
    if len(neurons) > 1:
        series[f"sum of {len(neurons)}"] = values.sum(axis=1)
    classes = {"positive": labels, "negative": ~labels}
    if feature.kinds is not None:
        classes.update({f"kind {kind}": feature.kinds == kind for kind in np.unique(feature.kinds)})
    other: np.ndarray | None = None
    if other_tokens:
        if dataset.sites.aggregation != "token":
            raise ProbekitError(f"--other-tokens compares token sites with every other token; feature "
                                f"'{feature.name}' reads {dataset.sites.aggregation}-aggregated spans")
        other = _other_tokens(adapter, dataset, feature, neurons, batch_tokens)
        if len(neurons) > 1:
            other = np.concatenate([other, other.sum(axis=1, keepdims=True)], axis=1)

    summary, histogram, thresholds = [], [], []
    for column, (name, x) in enumerate(series.items()):
        samples = {cls: x[mask] for cls, mask in classes.items()}
        if other is not None:
            samples[OTHER] = other[:, column]
        for cls, sample in samples.items():
            summary.append({"series": name, "class": cls, **describe(sample)})
        edges = np.histogram_bin_edges(np.concatenate(list(samples.values())), bins=bins)
        for cls, sample in samples.items():
            counts, _ = np.histogram(sample, bins=edges)
            density = counts / max(len(sample), 1) / np.diff(edges)
            histogram += [{"series": name, "class": cls, "bin_low": float(lo), "bin_high": float(hi),
                           "count": int(c), "density": float(d)}
                          for lo, hi, c, d in zip(edges[:-1], edges[1:], counts, density)]
        thresholds.append({"series": name, **best_threshold(x, labels)})
    description = {"neurons": [str(n) for n in neurons], "feature": feature.name, "sites": len(feature.sites),
                   "positives": int(labels.sum()), "negatives": int((~labels).sum()), "bins": bins,
                   "layers_from_cache": from_cache}
    notes = [f"layers {', '.join(map(str, from_cache))} read from the activation cache"] if from_cache else []
    tables = {"classes": pa.Table.from_pylist(summary), "thresholds": pa.Table.from_pylist(thresholds),
              "histogram": pa.Table.from_pylist(histogram)}
    return Inspection("by-class", tables, description, _figure(feature.name, histogram, list(series)), notes)


def describe(sample: np.ndarray) -> dict[str, Any]:
    """Count, mean, standard deviation and quantiles of one class's activations."""
    if len(sample) == 0:
        return {"n": 0, "mean": None, "std": None, "min": None, "median": None, "max": None}
    return {"n": len(sample), "mean": float(sample.mean()), "std": float(sample.std()), "min": float(sample.min()),
            "median": float(np.median(sample)), "max": float(sample.max())}


def best_threshold(x: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """The single threshold on ``x`` with the best F1 for predicting ``labels``: positive above it when positives
    have the larger mean (``direction`` ">="), below it otherwise ("<="); with its precision and recall."""
    labels = np.asarray(labels, dtype=bool)
    if labels.all() or not labels.any():
        raise ProbekitError("the feature's sites are all of one class here; a threshold needs both")
    direction = 1.0 if x[labels].mean() >= x[~labels].mean() else -1.0
    score = direction * np.asarray(x, dtype=np.float64)
    order = np.argsort(-score, kind="stable")
    ordered, hits = score[order], labels[order]
    true_positive = np.cumsum(hits)
    predicted = np.arange(1, len(hits) + 1)
    last_of_value = np.append(ordered[1:] != ordered[:-1], True)  # cut only between distinct values
    precision = true_positive / predicted
    recall = true_positive / labels.sum()
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-300), 0.0)
    best = int(np.flatnonzero(last_of_value)[np.argmax(f1[last_of_value])])
    return {"direction": ">=" if direction > 0 else "<=", "threshold": float(direction * ordered[best]),
            "f1": float(f1[best]), "precision": float(precision[best]), "recall": float(recall[best]),
            "predicted_positive": int(predicted[best])}


def _other_tokens(adapter: ModelAdapter, dataset: ProbingDataset, feature: Feature, neurons: Sequence[NeuronId],
                  batch_tokens: int) -> np.ndarray:
    """Activations at every non-special token of the feature's sequences that is not one of its sites."""
    sequences = np.unique(dataset.sites.sequence[feature.sites])
    probed = {(int(s), int(p)) for s, p in zip(dataset.sites.sequence[feature.sites],
                                                dataset.sites.start[feature.sites])}
    parts = []
    for batch in stream_tokens(adapter, [dataset.sequences[s] for s in sequences], neurons, batch_tokens):
        keep = np.array([(int(sequences[s]), int(p)) not in probed for s, p in zip(batch.sequence, batch.position)],
                        dtype=bool)
        parts.append(batch.values[keep])
    return np.concatenate(parts) if parts else np.zeros((0, len(neurons)), dtype=np.float32)


def _figure(feature: str, histogram: list[dict[str, Any]], series: list[str]) -> Any:
    figure, axes = new_figure(len(series), 2)
    for row, name in enumerate(series):
        rows = [r for r in histogram if r["series"] == name]
        for cls in dict.fromkeys(r["class"] for r in rows):
            own = [r for r in rows if r["class"] == cls]
            lows = [r["bin_low"] for r in own] + [own[-1]["bin_high"]]
            for column, measure in enumerate(("count", "density")):
                axes[row, column].stairs([r[measure] for r in own], lows, label=cls)
        for column, measure in enumerate(("count", "density")):
            ax = axes[row, column]
            ax.set_title(f"{name} on '{feature}': {'raw counts' if measure == 'count' else 'densities'}")
            ax.set_xlabel("activation")
            ax.set_ylabel(measure)
            ax.legend(fontsize="small")
    return figure
