"""One-way ANOVA F statistic per neuron (scikit-learn's ``f_classif``)."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.feature_selection import f_classif

from probekit.api import PluginParams, RankingSelector


class FStatistic(RankingSelector):
    """Top-k neurons by the one-way ANOVA F statistic between the classes (Gurnee et al. 2023, 'FS')."""

    Params = PluginParams

    def score(self, X_train: np.ndarray, y_train: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():  # constant neurons: F is undefined (NaN), so they rank last
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.filterwarnings("ignore", message="Features .* are constant")
            scores, _ = f_classif(X_train, y_train)
        return scores
