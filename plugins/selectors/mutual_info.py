"""Mutual information between each neuron and the label (k-nearest-neighbour estimator, seeded)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field
from sklearn.feature_selection import mutual_info_classif

from probekit.api import PluginParams, RankingSelector
from probekit_plugins.selectors.knn_mutual_info import mutual_info_knn


class MutualInfoParams(PluginParams):
    n_neighbors: int = Field(3, ge=1, description="neighbours of the k-NN estimator (Ross 2014)")
    seed: int = Field(0, description="seed of the tiny noise that breaks ties (scikit-learn's random_state)")
    implementation: Literal["vectorised", "sklearn"] = Field(
        "vectorised", description="'vectorised' computes scikit-learn's numbers 10-20x faster; 'sklearn' calls "
                                  "mutual_info_classif itself")


class MutualInformation(RankingSelector):
    """Top-k neurons by estimated mutual information with the label (Ross 2014 k-NN estimator)."""

    Params = MutualInfoParams
    params: MutualInfoParams

    def score(self, X_train: np.ndarray, y_train: np.ndarray) -> np.ndarray:
        if self.params.implementation == "sklearn":
            return mutual_info_classif(X_train, y_train, discrete_features=False, n_neighbors=self.params.n_neighbors,
                                       random_state=self.params.seed)
        return mutual_info_knn(X_train, y_train, self.params.n_neighbors, self.params.seed)
