"""Probe training and evaluation: split, mean-difference prefilter, logistic-regression probe, metrics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
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
    """Fit a class-balanced logistic regression on the training rows and score it on the test rows."""
    probe = LogisticRegression(C=C, class_weight="balanced", max_iter=max_iter)
    probe.fit(X_train, y_train)
    predicted = probe.predict(X_test)
    metrics = {
        "f1": f1_score(y_test, predicted, zero_division=0),
        "precision": precision_score(y_test, predicted, zero_division=0),
        "recall": recall_score(y_test, predicted, zero_division=0),
        "mcc": matthews_corrcoef(y_test, predicted),
        "accuracy": accuracy_score(y_test, predicted),
        "balanced_accuracy": balanced_accuracy_score(y_test, predicted),
        "roc_auc": roc_auc_score(y_test, probe.decision_function(X_test)),
    }
    return ProbeFit(probe.coef_[0].astype(np.float64), float(probe.intercept_[0]),
                    {name: float(value) for name, value in metrics.items()}, np.asarray(predicted, dtype=bool))
