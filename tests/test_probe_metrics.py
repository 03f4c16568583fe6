"""fit_and_evaluate's metrics, computed from one confusion matrix and one ranking of the decision values, are
scikit-learn's: every metric against scikit-learn's own function on many random and degenerate cases, and the whole
fit against the earlier implementation (one scikit-learn call per metric), written out here."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.exceptions import UndefinedMetricWarning
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

from probekit.probing import METRICS, binary_metrics, fit_and_evaluate, ranking_auc
from probekit.splits import RESAMPLES, F1Bootstrap, f1_interval


def sklearn_metrics(y_true: np.ndarray, y_pred: np.ndarray, decision: np.ndarray) -> dict[str, float]:
    """What the earlier fit_and_evaluate computed: one scikit-learn call per metric."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", UserWarning)  # balanced accuracy: "y_pred contains classes not in y_true"
        metrics = {
            "f1": f1_score(y_true, y_pred, zero_division=0),
            "precision": precision_score(y_true, y_pred, zero_division=0),
            "recall": recall_score(y_true, y_pred, zero_division=0),
            "mcc": matthews_corrcoef(y_true, y_pred),
            "accuracy": accuracy_score(y_true, y_pred),
            "balanced_accuracy": balanced_accuracy_score(y_true, y_pred),
            "roc_auc": roc_auc_score(y_true, decision),
        }
    return {name: float(value) for name, value in metrics.items()}


def assert_same(ours: dict[str, float], theirs: dict[str, float], case: str) -> None:
    assert list(ours) == list(METRICS) == list(theirs)
    for name in METRICS:
        if np.isnan(theirs[name]):
            assert np.isnan(ours[name]), f"{case}: {name} {ours[name]} != nan"
        else:
            assert abs(ours[name] - theirs[name]) <= 1e-12, f"{case}: {name} {ours[name]!r} != {theirs[name]!r}"
        assert type(ours[name]) is float


def random_case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, predictions (decision > 0) and decision values of a random size, class balance and skill, with
    decision values often rounded to a few levels (many ties) or all equal."""
    n = int(rng.choice([1, 2, 3, 4, 5, 7, 10, 31, 100, 613]))
    y_true = rng.random(n) < rng.choice([0.0, 0.05, 0.3, 0.5, 0.9, 1.0])
    decision = rng.normal(size=n) + rng.choice([0.0, 0.5, 3.0]) * (2 * y_true - 1) + rng.choice([-2.0, 0.0, 2.0])
    ties = rng.choice(["none", "rounded", "coarse", "constant"])
    if ties == "rounded":
        decision = np.round(decision, 1)
    elif ties == "coarse":
        decision = np.round(decision)
    elif ties == "constant":
        decision = np.full(n, rng.choice([-1.0, 0.0, 1.0]))
    return y_true, decision > 0, decision


def test_metrics_equal_sklearns_on_random_cases() -> None:
    rng = np.random.default_rng(0)
    for case in range(1000):
        y_true, y_pred, decision = random_case(rng)
        assert_same(binary_metrics(y_true, y_pred, decision), sklearn_metrics(y_true, y_pred, decision),
                    f"case {case} (n={len(y_true)})")


@pytest.mark.parametrize("y_true, y_pred", [
    ([0, 0, 1, 1], [0, 0, 1, 1]),  # perfect
    ([0, 0, 1, 1], [1, 1, 0, 0]),  # every prediction wrong
    ([0, 1, 0, 1, 1], [1, 1, 1, 1, 1]),  # all predicted positive
    ([0, 1, 0, 1, 1], [0, 0, 0, 0, 0]),  # all predicted negative: precision, recall, F1 0/0 -> 0, MCC 0
    ([0, 0, 0], [0, 0, 0]),  # one class, predicted right: every 0/0 -> 0, balanced accuracy over that class
    ([1, 1, 1], [1, 1, 1]),
    ([0, 0, 0], [1, 1, 1]),  # one class, predicted wrong
    ([1, 1, 1], [0, 0, 0]),
    ([0, 0, 0, 0], [0, 1, 0, 1]),
    ([1], [1]), ([0], [1]), ([1], [0]), ([0], [0]),  # one site
    ([0, 1], [0, 1]), ([0, 1], [1, 0]), ([1, 0], [1, 1]),
])
def test_metrics_equal_sklearns_on_degenerate_cases(y_true: list[int], y_pred: list[int]) -> None:
    y_true_array, y_pred_array = np.array(y_true, dtype=bool), np.array(y_pred, dtype=bool)
    for decision in (np.where(y_pred_array, 1.0, -1.0), np.zeros(len(y_true)),
                     np.linspace(-1.0, 1.0, len(y_true)), -np.linspace(-1.0, 1.0, len(y_true))):
        assert_same(binary_metrics(y_true_array, y_pred_array, decision),
                    sklearn_metrics(y_true_array, y_pred_array, decision), f"{y_true} {y_pred} {decision}")


def test_ranking_auc_is_exact_under_ties() -> None:
    # 2 positives, 2 negatives, all four tied: every pair counts one half
    assert ranking_auc(np.array([0, 1, 0, 1], dtype=bool), np.zeros(4)) == 0.5
    # the positives' average ranks are 2 (tied with a negative at ranks 1-3) and 4: (2 + 4 - 3) / (2 * 2)
    assert ranking_auc(np.array([0, 1, 0, 1]), np.array([0.0, 0.0, 0.0, 1.0])) == 0.75
    assert np.isnan(ranking_auc(np.ones(5, dtype=bool), np.arange(5.0)))
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(2, 400))
        y_true = np.arange(n) < rng.integers(1, n)
        decision = rng.integers(0, rng.integers(1, 6), n).astype(np.float64) + 0.25 * y_true
        assert abs(ranking_auc(y_true, decision) - roc_auc_score(y_true, decision)) <= 1e-12


def earlier_fit_and_evaluate(X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray,
                             C: float, max_iter: int) -> tuple[np.ndarray, float, dict[str, float], np.ndarray]:
    """fit_and_evaluate as it was: a LogisticRegression, its predict, one scikit-learn function per metric."""
    probe = LogisticRegression(C=C, class_weight="balanced", max_iter=max_iter)
    probe.fit(X_train, y_train)
    predicted = probe.predict(X_test)
    metrics = sklearn_metrics(y_test, predicted, probe.decision_function(X_test))
    return (probe.coef_[0].astype(np.float64), float(probe.intercept_[0]), metrics,
            np.asarray(predicted, dtype=bool))


@pytest.mark.parametrize("seed", range(12))
def test_fit_and_evaluate_gives_the_earlier_numbers(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, k = int(rng.choice([12, 60, 400, 2000])), int(rng.integers(1, 9))
    y = rng.random(n) < rng.choice([0.1, 0.3, 0.5])
    y[:2] = [False, True]  # both classes in training
    X = rng.standard_normal((n, k)).astype(np.float32) + rng.uniform(0.0, 1.5, k).astype(np.float32) * y[:, None]
    if seed % 3 == 0:
        X = np.round(X, 1)  # tied decision values
    if seed % 4 == 1:
        y = y.astype(np.int64)  # 0/1 labels, as a Feature allows
    train = np.arange(n) % 3 != 2
    train[:2] = True
    C = float(rng.choice([0.01, 1.0, 100.0]))
    fit = fit_and_evaluate(X[train], y[train], X[~train], y[~train], C, 1000)
    coefficients, intercept, metrics, predictions = earlier_fit_and_evaluate(X[train], y[train], X[~train],
                                                                             y[~train], C, 1000)
    assert np.array_equal(fit.coefficients, coefficients) and fit.intercept == intercept
    assert fit.predictions.dtype == bool and np.array_equal(fit.predictions, predictions)
    assert_same(fit.metrics, metrics, f"seed {seed}")


def earlier_f1_interval(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, seed: int,
                        level: float = 0.95) -> tuple[float, float]:
    """probekit.splits.f1_interval as it was, which drew its resamples on every call (every k)."""
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


@pytest.mark.parametrize("n_groups", [1, 2, 7, 150, 600])
def test_f1_bootstrap_reused_across_predictions_gives_the_earlier_intervals(n_groups: int) -> None:
    rng = np.random.default_rng(n_groups)
    n = 600
    groups = rng.integers(0, n_groups, n) * 3 + 5  # arbitrary group ids
    y_true = rng.random(n) < 0.3
    bootstrap = F1Bootstrap(y_true, groups, seed=42)
    for skill in (0.0, 0.5, 0.9, 1.0):  # several predictions (the ks of a cell) from one set of resamples
        y_pred = np.where(rng.random(n) < skill, y_true, rng.random(n) < 0.3)
        expected = earlier_f1_interval(y_true, y_pred, groups, 42)
        for level in (0.95, 0.5):
            got = bootstrap.interval(y_pred, level), f1_interval(y_true, y_pred, groups, 42, level)
            assert all(np.array_equal(interval, earlier_f1_interval(y_true, y_pred, groups, 42, level),
                                      equal_nan=True) for interval in got)
        assert np.array_equal(bootstrap.interval(y_pred), expected, equal_nan=True)
        assert np.isnan(expected[0]) == (n_groups == 1)
