"""Random neurons: the paper's baseline for how much any k neurons know about a feature."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
from pydantic import Field

from probekit.api import PluginParams, RunError, Selection, Selector, mean_difference, top_k


class RandomParams(PluginParams):
    seed: int = Field(0, description="random seed; the draw also depends on the training labels, so it is "
                                     "reproducible and differs between features")
    pool: int | None = Field(None, ge=1, description="draw from the top `pool` candidates by class-mean difference "
                                                     "(the paper drew within a 512-neuron prefilter); default: "
                                                     "every candidate column")


class RandomNeurons(Selector):
    """k neurons drawn uniformly at random from the candidates (seeded; nested over k)."""

    Params = RandomParams
    params: RandomParams

    def ks_problem(self, ks: Sequence[int], n_columns: int) -> str | None:
        """random draws from min(pool, n_columns) neurons: a larger k cannot be drawn."""
        size = min(self.params.pool or n_columns, n_columns)
        if max(ks) <= size:
            return None
        return (f"random: k = {max(ks)} exceeds the {size} neurons it draws from (the smaller of params.pool = "
                f"{self.params.pool} and {n_columns} prefiltered neurons); raise 'pool' or lower 'ks'")

    def select(self, X_train: np.ndarray, y_train: np.ndarray, ks: Sequence[int]) -> dict[int, Selection]:
        y = np.asarray(y_train, dtype=bool)
        n, d = X_train.shape
        problem = self.ks_problem(ks, d)
        if problem is not None:
            raise RunError(problem)
        pool = np.arange(d)
        if self.params.pool is not None and self.params.pool < d:
            pool = top_k(mean_difference(X_train, y), self.params.pool)
        labels = zlib.crc32(np.packbits(y).tobytes())
        rng = np.random.default_rng([self.params.seed, labels, n, d])
        order = pool[rng.permutation(len(pool))]
        return {k: Selection(order[:k], details={"seed": self.params.seed, "pool": len(pool)}) for k in ks}
