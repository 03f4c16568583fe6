"""Outer-approximation cuts of the sparse SVM: the inner SVM on a support, and its dual as a linear lower bound.

For any dual-feasible ``beta`` of the SVM (see ``hinge_svm``) and every support ``s``,
``c(s) >= sum(beta) - gamma/2 sum_j s_j (X_j^T (y beta))^2``, with equality where ``beta`` is optimal (Bertsimas,
Pauphilet & Van Parys 2021). The cut holds for every k, so one pool serves them all.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from probekit_plugins.selectors.hinge_svm import HingeSolution, solve_hinge_svm


@dataclass(frozen=True)
class Cut:
    """The linear lower bound ``t >= constant - coefficients @ s`` on the objective of every support ``s``."""

    constant: float
    coefficients: np.ndarray


class CutPool:
    """All cuts found so far, stored as arrays for vectorised bounds."""

    def __init__(self, n_features: int) -> None:
        self.n_features = n_features
        self._constants = np.empty(0)
        self._coefficients = np.empty((0, n_features))
        self._size = 0

    def __len__(self) -> int:
        return self._size

    @property
    def constants(self) -> np.ndarray:
        return self._constants[: self._size]

    @property
    def coefficients(self) -> np.ndarray:
        return self._coefficients[: self._size]

    def add(self, cut: Cut) -> None:
        if self._size == len(self._constants):
            capacity = max(64, 2 * self._size)
            constants, coefficients = np.empty(capacity), np.empty((capacity, self.n_features))
            constants[: self._size], coefficients[: self._size] = self.constants, self.coefficients
            self._constants, self._coefficients = constants, coefficients
        self._constants[self._size] = cut.constant
        self._coefficients[self._size] = cut.coefficients
        self._size += 1

    def bound(self, support: np.ndarray) -> float:
        """max over cuts of the cut value at ``support`` (a valid lower bound of its objective)."""
        if self._size == 0:
            return -np.inf
        return float(np.max(self.constants - self.coefficients[:, support].sum(axis=1)))

    def swap_bounds(self, support: np.ndarray) -> np.ndarray:
        """Pool bound of every swap neighbour: entry (a, j) replaces ``support[a]`` by feature j (inf if j is in it)."""
        inside = np.zeros(self.n_features, dtype=bool)
        inside[support] = True
        if self._size == 0:
            bounds = np.full((len(support), self.n_features), -np.inf)
        else:
            base = self.constants - self.coefficients[:, support].sum(axis=1)  # [R]
            leaving = self.coefficients[:, support]  # [R, k]
            values = base[:, None, None] + leaving[:, :, None] - self.coefficients[:, None, :]
            bounds = values.max(axis=0)
        bounds[:, inside] = np.inf
        return bounds


@dataclass(frozen=True)
class Evaluation:
    """The SVM on one support: its exact objective (primal value), dual value and solution."""

    support: tuple[int, ...]
    objective: float
    solution: HingeSolution


class SupportEvaluator:
    """Solves the inner SVM on a support (or a fractional point) and turns its dual into a cut; caches supports."""

    def __init__(self, X: np.ndarray, y: np.ndarray, weights: np.ndarray, gamma: float) -> None:
        """``X``: scaled candidates [n, p]; ``y``: boolean labels; ``weights``: per-sample hinge weights."""
        self.X = np.asarray(X, dtype=np.float64)
        self.y = np.where(np.asarray(y, dtype=bool), 1.0, -1.0)  # labels as -1 / +1
        self.weights = np.asarray(weights, dtype=np.float64)
        self.gamma = float(gamma)
        self.cache: dict[tuple[int, ...], Evaluation] = {}
        self.solves = 0

    def cut_from(self, beta: np.ndarray) -> Cut:
        """The cut of a dual-feasible ``beta``: sum(beta) - gamma/2 sum_j s_j (X_j^T (y beta))^2."""
        g = self.X.T @ (self.y * beta)
        return Cut(float(beta.sum()), 0.5 * self.gamma * g * g)

    def evaluate(self, support: Iterable[int]) -> tuple[Evaluation, Cut | None]:
        """The objective of ``support`` and, on first sight, its cut (None when it was cached)."""
        key = tuple(sorted(int(j) for j in support))
        if key in self.cache:
            return self.cache[key], None
        solution = solve_hinge_svm(self.X[:, key], self.y, self.weights, self.gamma)
        self.solves += 1
        evaluation = Evaluation(key, solution.primal, solution)
        self.cache[key] = evaluation
        return evaluation, self.cut_from(solution.beta)

    def fractional(self, s: np.ndarray) -> tuple[HingeSolution, np.ndarray, Cut]:
        """The SVM at a fractional point ``s`` (feature j scaled by sqrt(s_j)): solution, the weights in the
        unscaled feature space and its cut (the solution's dual value is c(s))."""
        used = np.flatnonzero(s > 1e-12)
        root = np.sqrt(s[used])
        solution = solve_hinge_svm(self.X[:, used] * root, self.y, self.weights, self.gamma)
        self.solves += 1
        w = np.zeros(self.X.shape[1])
        w[used] = solution.w * root
        return solution, w, self.cut_from(solution.beta)


def k_bound(cut: Cut, k: int) -> float:
    """The smallest value the cut takes on any support of size k: constant minus its k largest coefficients."""
    return cut.constant - float(np.sort(cut.coefficients)[-k:].sum())
