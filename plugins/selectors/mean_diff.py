"""Rank neurons by the difference of their class means and keep the top k."""

from __future__ import annotations

import numpy as np

from probekit.api import PluginParams, RankingSelector, mean_difference


class MeanDifference(RankingSelector):
    """Top-k neurons by |mean(x | y=1) - mean(x | y=0)| on the training split (the paper's MMD)."""

    Params = PluginParams

    def score(self, X_train: np.ndarray, y_train: np.ndarray) -> np.ndarray:
        return mean_difference(X_train, y_train)
