"""Adaptive thresholding: a telescoping sweep of elastic-net logistic regressions from a large k down to 1."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import Field, PositiveInt
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from probekit.api import PluginParams, Selection, Selector, mean_difference
from probekit_plugins.selectors.l1_logistic import rank_by_coefficient

#: the reference sweep's small ks; above them it halves from the start (make_k_list of Gurnee et al.'s scripts)
BASE_SCHEDULE = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12)


def reference_schedule(start: int) -> list[int]:
    """Reference k schedule up to ``start``: 1-8, 10, 12, then 16, 32, 64, ... and ``start`` itself."""
    ks = {k for k in BASE_SCHEDULE if k <= start}
    ks.update(16 * 2**i for i in range(max(0, int(math.log2(start)) - 3)) if 16 * 2**i <= start)
    ks.add(start)
    return sorted(ks)


def reference_C(k: int) -> float:
    """C = k / 20: weaker regularisation for larger supports."""
    return k / 20.0


def reference_l1_ratio(k: int) -> float:
    """l1_ratio = clip(exp(-k / 20), 0.1, 0.9): mostly L1 for small k, mostly L2 for large k."""
    return float(np.clip(np.exp(-k / 20.0), 0.1, 0.9))


class AdaptiveThresholdParams(PluginParams):
    start: int = Field(256, ge=1, description="k of the first, densest probe, on the top neurons by mean "
                                              "difference (the paper swept k from 256 to 1); capped at the "
                                              "candidates, raised to the largest k asked for")
    schedule: list[PositiveInt] | None = Field(
        None, description="ks the sweep steps through besides the spec's ks (default: the reference 1-8, 10, 12, "
                          "16, 32, ... up to start)")
    C: float | None = Field(None, gt=0, description="inverse regularisation strength (default: k / 20 per step)")
    l1_ratio: float | None = Field(None, ge=0, le=1, description="elastic-net mix (default: clip(exp(-k/20), "
                                                                 "0.1, 0.9) per step)")
    max_iter: int = Field(1000, ge=10, description="saga iterations per step")
    tol: float = Field(1e-2, gt=0, description="saga tolerance per step (1e-3 took 5x longer, mostly in the "
                                               "first, densest step, for the same test F1: docs/selectors.md)")
    warm_start: bool = Field(True, description="start each step from the previous step's coefficients")


class AdaptiveThreshold(Selector):
    """Telescoping elastic-net sweep: refit on the top-k by |coefficient|, k descending (Gurnee et al. 2023)."""

    Params = AdaptiveThresholdParams
    params: AdaptiveThresholdParams

    def select(self, X_train: np.ndarray, y_train: np.ndarray, ks: Sequence[int]) -> dict[int, Selection]:
        params = self.params
        y = np.asarray(y_train, dtype=bool)
        d = X_train.shape[1]
        start = max(min(params.start, d), max(ks))
        steps = set(reference_schedule(start) if params.schedule is None else params.schedule) | set(ks)
        steps = sorted((k for k in steps if k <= start), reverse=True)
        X = StandardScaler(with_mean=False).fit_transform(X_train)  # saga converges on a common scale
        gaps = mean_difference(X_train, y)
        support = np.argsort(-gaps, kind="stable")[:start]  # the first probe's neurons: top by mean difference
        coefficients: np.ndarray | None = None
        intercept = 0.0
        selections: dict[int, Selection] = {}
        for k in steps:
            if coefficients is not None:  # keep the top-k of the previous probe; its weights start this one
                keep = rank_by_coefficient(np.abs(coefficients), gaps[support])[:k]
                support, coefficients = support[keep], coefficients[keep]
            model = LogisticRegression(
                C=params.C or reference_C(k), l1_ratio=reference_l1_ratio(k) if params.l1_ratio is None
                else params.l1_ratio, solver="saga", class_weight="balanced", max_iter=params.max_iter,
                tol=params.tol, warm_start=params.warm_start, random_state=0)
            if params.warm_start and coefficients is not None:
                model.coef_ = coefficients[None, :].copy()
                model.intercept_ = np.array([intercept])
            model.fit(X[:, support], y)
            if k in ks:
                order = rank_by_coefficient(np.abs(coefficients), gaps[support]) if coefficients is not None \
                    else np.argsort(-gaps[support], kind="stable")
                selections[k] = Selection(support[order], None, {
                    "C": model.C, "l1_ratio": model.l1_ratio, "n_iter": int(np.max(model.n_iter_)),
                    "nonzero_coefficients": int(np.count_nonzero(model.coef_[0])), "steps": steps,
                })
            coefficients, intercept = model.coef_[0].astype(np.float64), float(model.intercept_[0])
        return selections
