"""Optimal sparse probing (OSP): the k-sparse hinge-loss SVM with the best objective, with a certificate."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import Field
from sklearn.utils.class_weight import compute_sample_weight

from probekit.api import PluginParams, RunError, Selection, Selector, mean_difference, top_k
from probekit_plugins.selectors.outer_approximation import SparseSVM


class OSPParams(PluginParams):
    gamma: float | None = Field(
        None, gt=0, description="ridge parameter: the penalty is ||w||^2 / (2 gamma); default 1/sqrt(n_train)")
    scaling: Literal["paper", "standardize", "none"] = Field(
        "paper", description="feature scaling before solving: 'paper' divides by 10 x train std (Gurnee et al.), "
                             "'standardize' by the train std, 'none' leaves activations as they are")
    candidates: int = Field(50, ge=1, description="solve over this many neurons: the top ones by class-mean "
                                                  "difference among the columns given (train split)")
    time_limit: float = Field(60.0, gt=0, description="seconds per k; on expiry the best support is returned "
                                                      "with its bound and gap")
    relative_gap: float = Field(1e-4, ge=0, description="stop when (objective - bound) / objective <= this")
    threads: int = Field(1, ge=1, description="threads of HiGHS's branch and bound on the master MILP")
    class_weight: Literal["balanced", "none"] = Field(
        "balanced", description="hinge-loss weights: 'balanced' gives each class half the total weight")
    local_search_budget: int = Field(400, ge=0, description="support evaluations per k spent on swap local search")


class OptimalSparseProbe(Selector):
    """Provably optimal k-sparse hinge-loss SVM (outer approximation with Pyomo + HiGHS; Gurnee et al. 2023)."""

    Params = OSPParams
    params: OSPParams

    def ks_problem(self, ks: Sequence[int], n_columns: int) -> str | None:
        """OSP solves over min(candidates, n_columns) neurons: a larger k has no support at all."""
        p = min(self.params.candidates, n_columns)
        if max(ks) <= p:
            return None
        return (f"osp: k = {max(ks)} exceeds the {p} candidate neurons it solves over (the smaller of "
                f"params.candidates = {self.params.candidates} and {n_columns} prefiltered neurons); raise "
                "'candidates' or lower 'ks'")

    def select(self, X_train: np.ndarray, y_train: np.ndarray, ks: Sequence[int]) -> dict[int, Selection]:
        params = self.params
        y = np.asarray(y_train, dtype=bool)
        n = len(y)
        problem = self.ks_problem(ks, X_train.shape[1])
        if problem is not None:
            raise RunError(problem)
        columns = top_k(mean_difference(X_train, y), min(params.candidates, X_train.shape[1]))  # best first
        p = len(columns)
        X = np.asarray(X_train[:, columns], dtype=np.float64)
        scale = feature_scale(X, params.scaling)
        X = X / scale
        gamma = params.gamma if params.gamma is not None else 1.0 / np.sqrt(n)
        weights = class_weights(y, params.class_weight)
        solver = SparseSVM(X, y, weights, gamma, threads=params.threads,
                           local_search_budget=params.local_search_budget)
        by_scaled_gap = top_k(mean_difference(X, y), p)
        selections: dict[int, Selection] = {}
        for k in sorted(set(ks)):
            warm = [list(range(k)), sorted(by_scaled_gap[:k].tolist())]
            evaluation, certificate = solver.solve(k, warm, params.time_limit, params.relative_gap)
            support = np.array(evaluation.support)
            w = evaluation.solution.w / scale[support]
            order = np.argsort(-np.abs(w), kind="stable")
            certificate.extras.update({
                "gamma": gamma, "scaling": params.scaling, "candidates": p, "class_weight": params.class_weight,
                "coefficients": w[order].tolist(), "intercept": evaluation.solution.b,
                "inner_solver": evaluation.solution.method,
            })
            selections[k] = Selection(columns[support[order]], np.abs(w[order]), certificate.as_dict())
        return selections


def feature_scale(X: np.ndarray, scaling: str) -> np.ndarray:
    """Per-column divisor: 10 x std ('paper'), std ('standardize') or 1 ('none'); constant columns get 1."""
    if scaling == "none":
        return np.ones(X.shape[1])
    std = X.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return 10.0 * std if scaling == "paper" else std


def class_weights(y: np.ndarray, mode: str) -> np.ndarray:
    """Per-sample hinge weights: n / (2 n_class) for 'balanced' (each class weighs n/2), else 1."""
    return np.ones(len(y)) if mode == "none" else compute_sample_weight("balanced", np.asarray(y, dtype=bool))
