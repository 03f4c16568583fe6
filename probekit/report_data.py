"""The numbers behind each figure of the HTML report, computed from the result table alone (so they work for any
plugin), as plain dicts and lists: the tests check these, the report only draws them.

Probe rows and control rows are told apart by the ``control`` column (see probekit.controls). "Best" is always the
highest test value over the selectors (and, where said, over layers).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from probekit.controls import control_rows, probe_rows

FeatureKey = tuple[str, str, str]  # (model, dataset, feature)


def _best(table: pa.Table, keys: list[str], metric: str) -> list[dict[str, Any]]:
    """The maximum of ``metric`` per group of ``keys``."""
    if table.num_rows == 0:
        return []
    grouped = table.select([*keys, metric]).group_by(keys, use_threads=False).aggregate([(metric, "max")])
    return grouped.rename_columns([metric if name == f"{metric}_max" else name for name in grouped.column_names]) \
        .to_pylist()


@dataclass
class FeatureCurves:
    """Figure 1 (per feature): the best ``metric`` over selectors against k, one curve per layer, and each control's
    best over layers and selectors (drawn dashed)."""

    feature: FeatureKey
    layers: dict[int, list[tuple[int, float]]] = field(default_factory=dict)
    controls: dict[str, list[tuple[int, float]]] = field(default_factory=dict)


def feature_curves(table: pa.Table, metric: str = "f1") -> dict[FeatureKey, FeatureCurves]:
    """:class:`FeatureCurves` of every feature of the table, curves sorted by k."""
    curves: dict[FeatureKey, FeatureCurves] = {}
    for row in _best(probe_rows(table), ["model", "dataset", "feature", "layer", "k"], metric):
        key = (row["model"], row["dataset"], row["feature"])
        curves.setdefault(key, FeatureCurves(key)).layers.setdefault(row["layer"], []).append((row["k"], row[metric]))
    for row in _best(control_rows(table), ["model", "dataset", "feature", "control", "k"], metric):
        key = (row["model"], row["dataset"], row["feature"])
        if key in curves:
            curves[key].controls.setdefault(row["control"], []).append((row["k"], row[metric]))
    for curve in curves.values():
        for points in (*curve.layers.values(), *curve.controls.values()):
            points.sort()
    return dict(sorted(curves.items()))


@dataclass
class LayerMap:
    """Figure 2: the best F1 over selectors per (feature, layer) at one k; ``values[i][j]`` is feature ``i`` at layer
    ``layers[j]`` (None where the run has no such cell)."""

    k: int
    features: list[FeatureKey]
    layers: list[int]
    values: list[list[float | None]]


def layer_maps(table: pa.Table) -> list[LayerMap]:
    """Where each feature lives: a :class:`LayerMap` at the smallest and at the largest k of the run."""
    probes = probe_rows(table)
    if probes.num_rows == 0:
        return []
    ks = sorted(set(probes.column("k").to_pylist()))
    maps = []
    for k in dict.fromkeys([ks[0], ks[-1]]):
        rows = _best(probes.filter(pc.equal(probes.column("k"), k)), ["model", "dataset", "feature", "layer"], "f1")
        features = sorted({(r["model"], r["dataset"], r["feature"]) for r in rows})
        layers = sorted({r["layer"] for r in rows})
        cell = {((r["model"], r["dataset"], r["feature"]), r["layer"]): r["f1"] for r in rows}
        maps.append(LayerMap(k, features, layers, [[cell.get((f, layer)) for layer in layers] for f in features]))
    return maps


@dataclass
class ModelCurves:
    """Figure 4a: per dataset, each model's F1 against k: the best over layers and selectors, averaged over the
    dataset's features (those every model has)."""

    dataset: str
    models: dict[str, list[tuple[int, float]]]


def model_curves(table: pa.Table, models: list[str]) -> list[ModelCurves]:
    """:class:`ModelCurves` per dataset, models in ``models`` order (the spec's)."""
    best = _best(probe_rows(table), ["model", "dataset", "feature", "k"], "f1")
    per: dict[tuple[str, str, int], dict[str, float]] = defaultdict(dict)
    for row in best:
        per[(row["dataset"], row["model"], row["k"])][row["feature"]] = row["f1"]
    curves = []
    for dataset in sorted({row["dataset"] for row in best}):
        features = None
        for (d, _model, _k), values in per.items():
            if d == dataset:
                features = set(values) if features is None else features & set(values)
        lines = {}
        for model in models:
            ks = sorted(k for (d, m, k) in per if d == dataset and m == model)
            if ks and features:
                lines[model] = [(k, sum(per[(dataset, model, k)][f] for f in features) / len(features)) for k in ks]
        curves.append(ModelCurves(dataset, lines))
    return curves


def sparse_across_models(table: pa.Table, models: list[str]) -> dict[tuple[str, str], list[float | None]]:
    """Figure 4b: per (dataset, feature), the best F1 at the smallest k of each model in ``models`` order."""
    probes = probe_rows(table)
    if probes.num_rows == 0:
        return {}
    k = min(probes.column("k").to_pylist())
    rows = _best(probes.filter(pc.equal(probes.column("k"), k)), ["model", "dataset", "feature"], "f1")
    values = {(r["model"], r["dataset"], r["feature"]): r["f1"] for r in rows}
    pairs = sorted({(r["dataset"], r["feature"]) for r in rows})
    return {pair: [values.get((model, *pair)) for model in models] for pair in pairs}


@dataclass(frozen=True)
class SparseProbe:
    """The best probe at the smallest k of one feature (figure 5 and 6 of the report)."""

    feature: FeatureKey
    k: int
    layer: int
    selector: str
    neurons: list[int]
    f1: float
    precision: float
    recall: float


def best_sparse_probes(table: pa.Table) -> list[SparseProbe]:
    """Per feature, the probe with the highest F1 at the run's smallest k (ties: the lower layer)."""
    probes = probe_rows(table)
    if probes.num_rows == 0:
        return []
    k = min(probes.column("k").to_pylist())
    rows = probes.filter(pc.equal(probes.column("k"), k)).select(
        ["model", "dataset", "feature", "layer", "selector", "neuron_indices", "f1", "precision", "recall"]).to_pylist()
    best: dict[FeatureKey, dict[str, Any]] = {}
    for row in rows:
        key = (row["model"], row["dataset"], row["feature"])
        if key not in best or (row["f1"], -row["layer"]) > (best[key]["f1"], -best[key]["layer"]):
            best[key] = row
    return [SparseProbe(key, k, r["layer"], r["selector"], list(r["neuron_indices"]), r["f1"], r["precision"],
                        r["recall"]) for key, r in sorted(best.items())]


@dataclass
class ActivationHistogram:
    """Figure 6: the activation of a feature's best 1-sparse neuron on the feature's sites, by class (counts per bin
    of shared ``edges``)."""

    probe: SparseProbe
    edges: list[float]
    positive: list[int]
    negative: list[int]


def activation_histograms(run_path: Path, cache_dir: Path | None, probes: list[SparseProbe],
                          bins: int = 40) -> tuple[list[ActivationHistogram], list[str]]:
    """Histograms of the 1-sparse probes' neurons, read from the activation cache and the run's prepared datasets;
    and a note per probe whose activations are not there (with how to get them)."""
    import numpy as np

    from probekit.cache import ActivationCache
    from probekit.errors import RunError
    from probekit.results import RunDirectory
    from probekit.units import prepared_path, read_prepared

    histograms, missing = [], []
    cache = ActivationCache(cache_dir) if cache_dir is not None and cache_dir.is_dir() else None
    for probe in probes:
        model, dataset, feature = probe.feature
        name = f"{model} / {dataset} / {feature}"
        if probe.k != 1:
            missing.append(f"{name}: the run's smallest k is {probe.k}, not 1")
            continue
        how = (f"`probekit inspect by-class L{probe.layer}.N{probe.neurons[0]} --from-run {run_path} --model {model} "
               f"--dataset {dataset} --feature {feature}` extracts them")
        try:
            prepared = read_prepared(prepared_path(RunDirectory(run_path), model, dataset))
        except RunError:
            missing.append(f"{name}: the run's prepared dataset is gone; {how}")
            continue
        values = None if cache is None else cache.load(prepared.cache_key(probe.layer),
                                                       (prepared.n_sites, prepared.d_mlp))
        own = next((f for f in prepared.features if f.name == feature), None)
        if values is None or own is None:
            missing.append(f"{name}: layer {probe.layer} is not in the activation cache"
                           f"{'' if cache_dir is None else f' at {cache_dir}'}; {how}")
            continue
        column = np.asarray(values[own.sites, probe.neurons[0]], dtype=np.float64)
        edges = np.histogram_bin_edges(column, bins=bins)
        histograms.append(ActivationHistogram(probe, edges.tolist(),
                                              np.histogram(column[own.labels], edges)[0].tolist(),
                                              np.histogram(column[~own.labels], edges)[0].tolist()))
    return histograms, missing
