"""Selectors that rank neurons: one score per neuron, the top k kept for every k (the paper's MMD, F statistic,
mutual information, and any third-party score)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

import numpy as np

from probekit.contracts import Selection, Selector
from probekit.errors import RunError
from probekit.probing import top_k


class RankingSelector(Selector):
    """A selector defined by a score per neuron: implement :meth:`score`; for every k the k best-scored columns are
    chosen, best first (ties go to the lower column), and a NaN score ranks last."""

    @abstractmethod
    def score(self, X_train: np.ndarray, y_train: np.ndarray) -> np.ndarray:
        """One score per column of ``X_train`` (higher is better; NaN when undefined). ``y_train`` is bool."""

    def select(self, X_train: np.ndarray, y_train: np.ndarray, ks: Sequence[int]) -> dict[int, Selection]:
        scores = np.asarray(self.score(X_train, np.asarray(y_train, dtype=bool)), dtype=np.float64)
        if scores.shape != (X_train.shape[1],):
            raise RunError(f"{type(self).__name__}.score returned shape {scores.shape}, expected one score per column "
                           f"({X_train.shape[1]},)")
        order = top_k(np.nan_to_num(scores, nan=-np.inf), max(ks))
        return {k: Selection(order[:k], scores[order[:k]]) for k in ks}
