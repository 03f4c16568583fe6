"""The Boolean relaxation of the sparse SVM (s in [0, 1]^p, sum s = k): a lower bound on every size-k support."""

from __future__ import annotations

import time

import numpy as np

from probekit_plugins.selectors.svm_cuts import Cut, SupportEvaluator, k_bound


def capped_simplex_weights(w: np.ndarray, k: int) -> np.ndarray:
    """argmin over s in [0,1]^p with sum(s) = k of sum_j w_j^2 / s_j: s_j = min(1, |w_j| / tau), tau by bisection
    (the perspective step of the Boolean relaxation; Argyriou et al. 2012's k-support norm)."""
    a = np.abs(w)
    if np.count_nonzero(a) <= k:
        order = np.argsort(-a, kind="stable")[:k]
        s = np.zeros(len(a))
        s[order] = 1.0
        return s
    high = float(a.max())  # f(tau) = sum(min(1, a / tau)) decreases in tau; f >= k at the (k+1)-th largest |w|
    while np.minimum(1.0, a / high).sum() > k:
        high *= 2.0
    low = float(np.sort(a)[-k - 1]) if k < len(a) else 0.0
    for _ in range(100):
        tau = 0.5 * (low + high)
        if np.minimum(1.0, a / tau).sum() > k:
            low = tau
        else:
            high = tau
        if high - low <= 1e-15 * high:
            break
    return np.minimum(1.0, a / high)


def boolean_relaxation(evaluator: SupportEvaluator, k: int, deadline: float, start: np.ndarray | None = None,
                       max_iter: int = 60, tolerance: float = 1e-6) -> tuple[float, list[Cut]]:
    """Lower bound on every size-k support from the Boolean relaxation min_{s in [0,1]^p, sum s = k} c(s).

    c(s) = min_{w,b} loss + sum_j w_j^2 / (2 gamma s_j) is jointly convex in (w, b, s) (a perspective), so
    alternating between the SVM at fixed s and the closed-form s at fixed w descends to the relaxation's optimum;
    every iterate's dual gives a cut whose size-k minimum is a valid bound. Returns the best bound and all cuts.
    """
    p = evaluator.X.shape[1]
    s = np.full(p, k / p) if start is None else start
    best, cuts = -np.inf, []
    for _ in range(max_iter):
        if time.perf_counter() >= deadline:
            break
        solution, w, cut = evaluator.fractional(s)
        cuts.append(cut)
        best = max(best, k_bound(cut, k))
        if solution.primal - best <= tolerance * max(1.0, abs(solution.primal)):
            break
        s = capped_simplex_weights(w, k)
    return best, cuts
