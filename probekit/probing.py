"""Probe training and evaluation: split, mean-difference prefilter, logistic-regression probe, metrics."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn import config_context
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

METRICS = ("f1", "precision", "recall", "mcc", "accuracy", "balanced_accuracy", "roc_auc")


def mean_difference(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """|mean(x | y=1) - mean(x | y=0)| per column (Gurnee et al. 2023, the MMD ranking)."""
    y = np.asarray(y, dtype=bool)
    return np.abs(X[y].mean(axis=0, dtype=np.float64) - X[~y].mean(axis=0, dtype=np.float64))


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores, best first; ties broken by the lower index."""
    return np.argsort(-scores, kind="stable")[:k]


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices, stratified by label, reproducible from ``seed``."""
    indices = np.arange(len(labels))
    train, test = train_test_split(indices, test_size=test_fraction, random_state=seed, stratify=labels)
    return np.sort(train), np.sort(test)


@dataclass(frozen=True)
class ProbeFit:
    """A fitted probe on a set of neurons, and its test metrics."""

    coefficients: np.ndarray
    intercept: float
    metrics: dict[str, float]
    predictions: np.ndarray  # bool, one per test row


def fit_and_evaluate(
    X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray, y_test: np.ndarray, C: float, max_iter: int
) -> ProbeFit:
    """Fit a class-balanced logistic regression on the training rows and score it on the test rows.

    The probe is scikit-learn's own ``LogisticRegression``; its test decision values are computed once, with the
    very expression of ``LogisticRegression.decision_function`` (so ``predict``'s labels, ``decision > 0``, are
    the same bits), and every metric comes from them: see :func:`binary_metrics`."""
    # C and max_iter come validated from the spec; skipping scikit-learn's re-validation of them changes no number
    with config_context(skip_parameter_validation=True):
        probe = LogisticRegression(C=C, class_weight="balanced", max_iter=max_iter).fit(X_train, y_train)
    decision = np.ravel(X_test @ probe.coef_.T + probe.intercept_)
    predicted = decision > 0
    return ProbeFit(probe.coef_[0].astype(np.float64), float(probe.intercept_[0]),
                    binary_metrics(y_test, predicted, decision), predicted)


def binary_metrics(y_true: np.ndarray, y_pred: np.ndarray, decision: np.ndarray) -> dict[str, float]:
    """Every metric of :data:`METRICS`, from one confusion matrix of ``y_pred`` and one ranking of ``decision``,
    equal to scikit-learn's ``f1_score``, ``precision_score``, ``recall_score`` (all three with
    ``zero_division=0``), ``matthews_corrcoef``, ``accuracy_score``, ``balanced_accuracy_score`` and
    ``roc_auc_score`` (tests/test_probe_metrics.py), degenerate cases included: MCC 0 when a class is missing
    from the labels or the predictions, balanced accuracy over the classes present, ROC AUC NaN with one class."""
    y_true = np.asarray(y_true, dtype=bool)
    tn, fp, fn, tp = (int(count) for count in np.bincount(2 * y_true + np.asarray(y_pred, dtype=bool), minlength=4))
    n = tn + fp + fn + tp
    true_negatives, true_positives = tn + fp, fn + tp  # row sums (true classes)
    pred_negatives, pred_positives = tn + fn, fp + tp  # column sums (predicted classes)
    # matthews_corrcoef's own arithmetic, in float64 as there
    cov_ytyp = float(tn + tp) * n - (float(true_negatives) * pred_negatives + float(true_positives) * pred_positives)
    cov_ypyp = float(n) ** 2 - (float(pred_negatives) ** 2 + float(pred_positives) ** 2)
    cov_ytyt = float(n) ** 2 - (float(true_negatives) ** 2 + float(true_positives) ** 2)
    per_class = [tn / true_negatives] if true_negatives else []  # balanced accuracy: classes present in y_true
    per_class += [tp / true_positives] if true_positives else []
    return {
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
        "precision": tp / pred_positives if pred_positives else 0.0,
        "recall": tp / true_positives if true_positives else 0.0,
        "mcc": cov_ytyp / math.sqrt(cov_ypyp * cov_ytyt) if cov_ypyp * cov_ytyt != 0 else 0.0,
        "accuracy": (tn + tp) / n,
        "balanced_accuracy": sum(per_class) / len(per_class),
        "roc_auc": ranking_auc(y_true, decision),
    }


def ranking_auc(y_true: np.ndarray, decision: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic, from one sort of the decision values: tied values share their average
    rank (as the diagonal step of scikit-learn's ROC curve does). NaN when ``y_true`` holds one class, as
    ``roc_auc_score`` (which also warns)."""
    y_true = np.asarray(y_true, dtype=bool)
    n = len(y_true)
    positives = int(np.count_nonzero(y_true))
    negatives = n - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(decision, kind="stable")
    ranked = np.asarray(decision)[order]
    starts = np.flatnonzero(np.concatenate(([True], ranked[1:] != ranked[:-1])))  # first position of each value
    ends = np.append(starts[1:], n)
    positives_per_value = np.add.reduceat(y_true[order].astype(np.int64), starts)
    # twice the positives' rank sum (1-based ranks starts+1..ends average to (starts+1+ends)/2), an exact integer
    twice_rank_sum = int(np.dot(starts + 1 + ends, positives_per_value))
    return (twice_rank_sum - positives * (positives + 1)) / (2 * positives * negatives)
