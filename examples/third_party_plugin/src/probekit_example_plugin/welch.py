"""Rank neurons by the absolute Welch t statistic between the two classes and keep the top k."""

from __future__ import annotations

import numpy as np

from probekit.api import PluginParams, RankingSelector


class WelchTParams(PluginParams):
    """The welch_t selector takes no parameters."""


def welch_t_scores(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """|Welch t| per column of ``X`` between rows with ``y`` true and false (unequal variances, ddof = 1).

    Equals ``abs(scipy.stats.ttest_ind(X[y], X[~y], equal_var=False).statistic)``, except that a column whose
    standard error is zero (zero variance in both classes) or undefined (fewer than two rows in a class) scores 0
    instead of NaN or infinity.
    """
    y = np.asarray(y, dtype=bool)
    X = np.asarray(X, dtype=np.float64)
    positive, negative = X[y], X[~y]
    n1, n0 = len(positive), len(negative)
    if n1 < 2 or n0 < 2:
        return np.zeros(X.shape[1])
    difference = positive.mean(axis=0) - negative.mean(axis=0)
    standard_error = np.sqrt(positive.var(axis=0, ddof=1) / n1 + negative.var(axis=0, ddof=1) / n0)
    scores = np.zeros(X.shape[1])
    np.divide(np.abs(difference), standard_error, out=scores, where=standard_error > 0)
    return scores


class WelchT(RankingSelector):
    """Top-k neurons by |Welch t| between classes on the training split (unequal-variance t-test)."""

    Params = WelchTParams

    def score(self, X_train: np.ndarray, y_train: np.ndarray) -> np.ndarray:
        return welch_t_scores(X_train, y_train)
