"""The unit every executor multiplies: seconds per (feature, layer) cell for all eight ks, probekit's per-cell path
against a SAEBench-like top-k mean difference + logistic regression and a plain scikit-learn SelectKBest +
LogisticRegression, on the same activations and splits, in one process, the contenders alternating.

    python benchmarks/bench_cell_cost.py            # the quickstart's real MiniLM activations (about 1 minute)
    python benchmarks/bench_cell_cost.py --quick    # a synthetic stand-in, about 8 seconds (the smoke test)

Full run: the quickstart spec (examples/quickstart.yaml): all-MiniLM-L6-v2, its text features on 400 stdlib
sequences, all 6 layers, the sweep's own group split of every usable feature (4 features x 6 layers = 24 cells of
2,000 sites, about 1,390 training rows, 1,536 neurons). Activations come from the spec's activation cache when a
quickstart run filled it, else they are extracted here (in memory; the cache is not written).
``--quick``: 4 features x 1 layer of activation-shaped synthetic data (GELU of correlated pre-activations, 2,000
sites x 1,536 neurons, 20-50 % positives, a few neurons shifted by the label), split by ``split.by: site``.

Contenders, each from the cell's activations, its train/test indices and labels to per-k test metrics:

(a) probekit, as ``probekit.cells.probe_cells`` runs a cell: the mean-difference prefilter to 1,024 candidates, the
    ``mean_diff`` selector plugin for every k at once, then ``fit_and_evaluate`` per k (one BLAS thread); the F1
    bootstrap interval and the result row are left out (the peers compute neither).
(a') ``probekit.cells.probe_cells`` itself, as a sweep calls it: (a) plus every k's F1 bootstrap interval (1,000
    resamples of the test groups) and result row.
(b) SAEBench-like (sparse_probing's ``get_top_k_mean_diff_mask`` + ``train_sklearn_probe``): per k, the top-k
    |mean difference| over every neuron, an L2 ``LogisticRegression(C=1, max_iter=1000)``
    (unweighted), train and test accuracy.
(c) plain scikit-learn: per k, ``SelectKBest(f_classif, k)``, ``LogisticRegression(class_weight="balanced",
    max_iter=1000)``, test F1.

(b) and (c) also run their k loop under one BLAS thread (their best case: tiny fits run 4x slower with more). After one
untimed call of each, a repeat visits every cell once and times the four contenders on it back to back, their order
rotating from cell to cell. A ratio is the median of the per-cell ratios (the same cell and repeat), its range in
brackets. Last, the numbers are checked: on every cell and k, (a)'s predictions are LogisticRegression.predict's and
its metrics scikit-learn's functions', and (a')'s rows hold the same fits and the F1 intervals of the bootstrap as
it was (one multinomial draw per k).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.feature_selection import SelectKBest, f_classif
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    matthews_corrcoef,
    precision_score,
    recall_score,
    roc_auc_score,
)
from threadpoolctl import threadpool_limits

from probekit.cells import probe_cells
from probekit.contracts import Feature, Selector
from probekit.probing import fit_and_evaluate, mean_difference, stratified_split, top_k
from probekit.registry import PluginRegistry
from probekit.spec import ResolvedPlugin, ValidatedSpec, load_spec
from probekit.splits import RESAMPLES, Split

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "quickstart.yaml"
KS = list(range(1, 9))
PREFILTER, C, MAX_ITER = 1024, 1.0, 1000  # the spec's defaults, which the quickstart keeps


@dataclass
class Cell:
    """One (feature, layer): the feature's sites at the layer, the feature (its labels) and its split."""

    name: str
    layer: int
    X: np.ndarray
    feature: Feature
    split: Split

    @property
    def y(self) -> np.ndarray:
        return self.feature.labels

    @property
    def train(self) -> np.ndarray:
        return self.split.train

    @property
    def test(self) -> np.ndarray:
        return self.split.test


@dataclass
class Setup:
    """The cells, the quickstart's validated spec and its selector (resolved and instantiated), and where the
    activations came from."""

    cells: list[Cell]
    validated: ValidatedSpec
    selector: tuple[ResolvedPlugin, Selector]
    source: str


def quickstart_cells() -> Setup:
    """Every (usable feature, layer) of the quickstart spec, split as the sweep splits it."""
    from probekit.cache import ActivationCache, CacheKey
    from probekit.extraction import extract_activations
    from probekit.splits import SplitError, site_groups, split_feature

    validated = load_spec(QUICKSTART, PluginRegistry())
    spec = validated.spec
    assert (spec.prefilter, spec.probe.C, spec.probe.max_iter, spec.ks) == (PREFILTER, C, MAX_ITER, KS)
    adapter = validated.models[0].instantiate()
    dataset = validated.datasets[0].instantiate().build(adapter.tokenizer)
    layers = list(range(adapter.n_layers))
    shape = (len(dataset.sites), adapter.d_mlp)
    cache = ActivationCache(spec.cache) if spec.cache else None  # relative to the working directory, as in a run
    layer_values = {layer: cache.load(CacheKey(adapter.identity, dataset.activation_fingerprint, layer), shape)
                    if cache and cache.root.is_dir() else None for layer in layers}
    missing = [layer for layer, values in layer_values.items() if values is None]
    if missing:
        layer_values.update(extract_activations(adapter, dataset, missing, spec.extraction.batch_tokens))
    source = f"cache {len(layers) - len(missing)} layers, extracted {len(missing)}"
    groups = site_groups(dataset)
    cells = []
    for feature in dataset.features:
        positives = int(feature.labels.sum())
        if min(positives, len(feature.labels) - positives) < spec.min_per_class:
            continue
        try:
            split = split_feature(feature.labels, groups[feature.sites], spec.split.test_fraction, spec.split.seed,
                                  spec.split.by)
        except SplitError:
            continue
        cells += [Cell(f"{feature.name} L{layer}", layer, np.asarray(layer_values[layer][feature.sites]), feature,
                       split) for layer in layers]
    return Setup(cells, validated, (validated.selectors[0], validated.selectors[0].instantiate()), source)


def synthetic_cells(n_sites: int = 2000, d: int = 1536, seed: int = 0) -> Setup:
    """The --quick stand-in: 4 features x 1 layer of GELU activations, a few neurons shifted by the label, each
    test site its own group (``split.by: site``); the quickstart spec's settings (its model is not loaded)."""
    validated = load_spec(QUICKSTART, PluginRegistry())
    rng = np.random.default_rng(seed)
    cells = []
    for feature, rate in enumerate((0.2, 0.3, 0.4, 0.5)):
        y = rng.random(n_sites) < rate
        train, test = stratified_split(y, 0.3, 42)
        factors = rng.standard_normal((n_sites, 16), dtype=np.float32) @ rng.standard_normal((16, d), dtype=np.float32)
        pre = rng.standard_normal((n_sites, d), dtype=np.float32) + 0.5 * factors - rng.uniform(0.5, 2.0, d)
        signal = rng.choice(d, 6, replace=False)
        pre[:, signal] += np.outer(y, rng.uniform(0.3, 2.0, 6))
        X = (0.5 * pre * (1.0 + np.tanh(0.7978845608 * (pre + 0.044715 * pre**3)))).astype(np.float32)
        split = Split(train, test, test, len(train), len(test))
        cells.append(Cell(f"synthetic{feature}", 0, X, Feature(f"synthetic{feature}", np.arange(n_sites), y), split))
    return Setup(cells, validated, (validated.selectors[0], validated.selectors[0].instantiate()), "synthetic")


def probekit_cell(cell: Cell, setup: Setup) -> list[dict[str, float]]:
    """(a): the lines of probekit.cells.probe_cells that compute a cell, for one selector and every k."""
    X, y, train, test = cell.X, cell.y, cell.train, cell.test
    X_train, X_test = X[train], X[test]
    y_train, y_test = y[train], y[test]
    candidates = top_k(mean_difference(X_train, y_train), min(PREFILTER, X.shape[1]))
    selections = setup.selector[1].select(np.take(X_train, candidates, axis=1), y_train, KS)
    metrics = []
    with threadpool_limits(limits=1, user_api="blas"):
        for k in KS:
            chosen = candidates[selections[k].neurons]
            fit = fit_and_evaluate(np.take(X_train, chosen, axis=1), y_train, np.take(X_test, chosen, axis=1), y_test,
                                   C, MAX_ITER)
            metrics.append(fit.metrics)
    return metrics


def probekit_rows(cell: Cell, setup: Setup) -> list[dict]:
    """(a'): probekit.cells.probe_cells itself, every k of the cell still to do, F1 intervals and rows included."""
    return probe_cells(setup.validated.spec, [setup.selector], cell.X, cell.feature, cell.split, cell.layer,
                       lambda feature, layer, key: f"{feature}/{layer}/{key.selector}/{key.k}", set())


def saebench_cell(cell: Cell, setup: Setup) -> list[dict[str, float]]:
    """(b): SAEBench's sparse probing per k: top-k |mean difference| mask, L2 logistic regression, accuracies."""
    X_train, X_test = cell.X[cell.train], cell.X[cell.test]
    y_train, y_test = cell.y[cell.train], cell.y[cell.test]
    metrics = []
    with threadpool_limits(limits=1, user_api="blas"):
        for k in KS:
            difference = np.abs(X_train[y_train].mean(axis=0) - X_train[~y_train].mean(axis=0))
            keep = np.argsort(-difference)[:k]
            probe = LogisticRegression(C=C, max_iter=MAX_ITER).fit(X_train[:, keep], y_train)
            train_accuracy = accuracy_score(y_train, probe.predict(X_train[:, keep]))
            metrics.append({"accuracy": accuracy_score(y_test, probe.predict(X_test[:, keep])),
                            "train_accuracy": train_accuracy})
    return metrics


def plain_cell(cell: Cell, setup: Setup) -> list[dict[str, float]]:
    """(c): per k, SelectKBest(f_classif) and a class-balanced LogisticRegression, test F1."""
    X_train, X_test = cell.X[cell.train], cell.X[cell.test]
    y_train, y_test = cell.y[cell.train], cell.y[cell.test]
    metrics = []
    with threadpool_limits(limits=1, user_api="blas"):
        for k in KS:
            kbest = SelectKBest(f_classif, k=k).fit(X_train, y_train)
            probe = LogisticRegression(C=C, class_weight="balanced", max_iter=MAX_ITER)
            probe.fit(kbest.transform(X_train), y_train)
            metrics.append({"f1": f1_score(y_test, probe.predict(kbest.transform(X_test)))})
    return metrics


CONTENDERS: dict[str, Callable[[Cell, Setup], list[dict]]] = {
    "(a) probekit (prefilter, mean_diff, fit_and_evaluate)": probekit_cell,
    "(a') probekit.cells.probe_cells (a + F1 intervals, rows)": probekit_rows,
    "(b) SAEBench-like top-k mean diff + LogisticRegression": saebench_cell,
    "(c) plain SelectKBest(f_classif) + LogisticRegression": plain_cell,
}


def measure(setup: Setup, repeats: int) -> dict[str, list[float]]:
    """Seconds per cell and contender: each contender once untimed, then ``repeats`` passes over the cells, the
    contenders' order rotating from cell to cell."""
    names = list(CONTENDERS)
    for name in names:
        CONTENDERS[name](setup.cells[0], setup)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    turn = 0
    for _ in range(repeats):
        for cell in setup.cells:
            turn += 1
            for name in names[turn % len(names):] + names[:turn % len(names)]:
                started = time.perf_counter()
                CONTENDERS[name](cell, setup)
                seconds[name].append(time.perf_counter() - started)
    return seconds


def earlier_f1_interval(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, seed: int,
                        level: float = 0.95) -> tuple[float, float]:
    """probekit.splits.f1_interval as it was, which each k called: its own multinomial draw of the resamples."""
    y_true, y_pred = np.asarray(y_true, dtype=bool), np.asarray(y_pred, dtype=bool)
    ids, inverse = np.unique(groups, return_inverse=True)
    if len(ids) < 2:
        return float("nan"), float("nan")
    per_group = np.stack([np.bincount(inverse, weights=y_true & y_pred, minlength=len(ids)),
                          np.bincount(inverse, weights=~y_true & y_pred, minlength=len(ids)),
                          np.bincount(inverse, weights=y_true & ~y_pred, minlength=len(ids))], axis=1)
    draws = np.random.default_rng(seed).multinomial(len(ids), np.full(len(ids), 1 / len(ids)), size=RESAMPLES)
    tp, fp, fn = (draws @ per_group).T
    denominator = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(denominator), where=denominator > 0)
    low, high = np.quantile(f1, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def difference(ours: float, theirs: float, what: str) -> float:
    """|ours - theirs|, 0 when both are NaN; a NaN on one side only is an error."""
    if np.isnan(ours) or np.isnan(theirs):
        assert np.isnan(ours) and np.isnan(theirs), f"{what}: {ours} against {theirs}"
        return 0.0
    return abs(ours - theirs)


def check_numbers(setup: Setup) -> tuple[float, float, float]:
    """Largest |probekit metric - scikit-learn's function|, |coefficient - a LogisticRegression's| and |F1 interval -
    the earlier bootstrap's| over every cell and k, for (a)'s fits and (a')'s rows: probekit's numbers are the ones
    scikit-learn, and probekit before this change, give."""
    worst_metric = worst_coefficient = worst_interval = 0.0
    seed = setup.validated.spec.split.seed
    with threadpool_limits(limits=1, user_api="blas"):  # probe_cells fits under one BLAS thread: so do these
        for cell in setup.cells:
            X, y, train, test = cell.X, cell.y, cell.train, cell.test
            candidates = top_k(mean_difference(X[train], y[train]), min(PREFILTER, X.shape[1]))
            selections = setup.selector[1].select(X[train][:, candidates], y[train], KS)
            rows = {row["k"]: row for row in probekit_rows(cell, setup)}
            assert sorted(rows) == KS
            for k in KS:
                chosen = candidates[selections[k].neurons]
                X_train, X_test, y_train, y_test = X[train][:, chosen], X[test][:, chosen], y[train], y[test]
                fit = fit_and_evaluate(X_train, y_train, X_test, y_test, C, MAX_ITER)
                probe = LogisticRegression(C=C, class_weight="balanced", max_iter=MAX_ITER).fit(X_train, y_train)
                predicted = probe.predict(X_test)
                expected = {"f1": f1_score(y_test, predicted, zero_division=0),
                            "precision": precision_score(y_test, predicted, zero_division=0),
                            "recall": recall_score(y_test, predicted, zero_division=0),
                            "mcc": matthews_corrcoef(y_test, predicted), "accuracy": accuracy_score(y_test, predicted),
                            "balanced_accuracy": balanced_accuracy_score(y_test, predicted),
                            "roc_auc": roc_auc_score(y_test, probe.decision_function(X_test))}
                assert np.array_equal(fit.predictions, predicted), f"{cell.name} k={k}: predictions differ"
                row = rows[k]
                assert row["neuron_indices"] == chosen.tolist(), f"{cell.name} k={k}: probe_cells chose other neurons"
                for ours in (fit.metrics, row):
                    worst_metric = max(worst_metric, *(difference(ours[name], float(value), f"{cell.name} k={k} {name}")
                                                       for name, value in expected.items()))
                for coefficients, intercept in ((fit.coefficients, fit.intercept),
                                                (np.asarray(row["coefficients"]), row["intercept"])):
                    worst_coefficient = max(worst_coefficient, float(np.max(np.abs(coefficients - probe.coef_[0]))),
                                            abs(intercept - float(probe.intercept_[0])))
                low, high = earlier_f1_interval(y_test, predicted, cell.split.test_groups, seed)
                worst_interval = max(worst_interval, difference(row["f1_low"], low, f"{cell.name} k={k} f1_low"),
                                     difference(row["f1_high"], high, f"{cell.name} k={k} f1_high"))
    return worst_metric, worst_coefficient, worst_interval


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.4f} ({min(values):.4f}-{max(values):.4f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="synthetic stand-in, one repeat (about 8 seconds)")
    parser.add_argument("--repeats", type=int, help="timed passes over every cell (default 5, --quick 1)")
    args = parser.parse_args()
    started = time.perf_counter()
    setup = synthetic_cells() if args.quick else quickstart_cells()
    cells = setup.cells
    print(f"{len(cells)} cells ({setup.source}; {len(cells[0].y)} sites x {cells[0].X.shape[1]} neurons, "
          f"{len(cells[0].train)} training rows, {cells[0].split.n_test_groups} test groups), "
          f"k = {KS[0]}..{KS[-1]}, set up in {time.perf_counter() - started:.1f} s")
    repeats = args.repeats or (1 if args.quick else 5)
    seconds = measure(setup, repeats)
    a, whole, b, c = (seconds[name] for name in CONTENDERS)
    print(f"\nseconds per (feature, layer) cell for {len(KS)} ks, median (range) of {len(a)} timings:\n")
    print("| contender | seconds per cell |\n|---|---|")
    for name, values in seconds.items():
        print(f"| {name} | {summary(values)} |")
    target = [x / y for x, y in zip(a, c)]
    print("\n| ratio | median (range) of per-cell ratios |\n|---|---|")
    print(f"| a / c, probekit / plain (target <= 0.7) | {summary(target)} |")
    print(f"| a' / c, probe_cells with F1 intervals and rows / plain | {summary([x / y for x, y in zip(whole, c)])} |")
    print(f"| a / b, probekit / SAEBench-like | {summary([x / y for x, y in zip(a, b)])} |")
    print(f"\ntarget a / c <= 0.7: {'met' if statistics.median(target) <= 0.7 else 'NOT met'} "
          f"(median {statistics.median(target):.2f})")
    worst_metric, worst_coefficient, worst_interval = check_numbers(setup)
    print(f"\nsame numbers: every cell and k, probekit's predictions equal LogisticRegression.predict's; "
          f"max |metric - scikit-learn's| = {worst_metric:.1e}, max |coefficient - LogisticRegression's| = "
          f"{worst_coefficient:.1e}, max |F1 interval - the earlier bootstrap's| = {worst_interval:.1e}")


if __name__ == "__main__":
    main()
