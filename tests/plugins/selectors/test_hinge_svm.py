"""The inner SVM of OSP: exact objective and a feasible dual certificate, checked against HiGHS's QP solver."""

from __future__ import annotations

import numpy as np
import pytest

from probekit_plugins.selectors.hinge_svm import (
    _best_intercept,
    _libsvm,
    dual_objective,
    primal_objective,
    solve_hinge_svm,
)


def instance(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Small weighted SVMs across regimes: strong and weak ridge, overlapping and separable classes, ties."""
    rng = np.random.default_rng(seed)
    n, q = int(rng.integers(20, 120)), int(rng.integers(1, 6))
    Z = rng.standard_normal((n, q)) * rng.uniform(0.1, 3.0)
    positive = rng.random(n) < rng.uniform(0.15, 0.5)
    positive[:2] = [True, False]
    Z[positive] += rng.uniform(0.0, 3.0)
    if seed % 4 == 0:
        Z = np.round(Z, 1)  # ties
    if seed % 5 == 0:
        Z[n // 2:] = Z[: n - n // 2]  # duplicated rows
    y = np.where(positive, 1.0, -1.0)
    balanced = np.where(positive, n / (2 * positive.sum()), n / (2 * (~positive).sum()))
    c = balanced if seed % 3 else np.ones(n)
    return Z, y, c, float(10 ** rng.uniform(-2.5, 1.5))


@pytest.mark.parametrize("seed", range(40))
def test_objective_matches_an_exact_qp_and_the_dual_certifies_it(seed, exact_svm) -> None:
    Z, y, c, gamma = instance(seed)
    solution = solve_hinge_svm(Z, y, c, gamma)
    exact = exact_svm(Z, y, c, gamma)
    assert solution.primal == pytest.approx(exact, rel=1e-7)
    # the dual point is feasible and bounds the optimum from below
    assert np.all(solution.beta >= 0) and np.all(solution.beta <= c)
    assert abs(float(y @ solution.beta)) <= 1e-9 * c.sum()
    assert solution.dual <= exact * (1 + 1e-9) + 1e-9
    assert solution.dual == pytest.approx(dual_objective(Z, y, gamma, solution.beta))
    assert solution.primal == pytest.approx(primal_objective(Z, y, c, gamma, solution.w, solution.b))
    assert solution.relative_gap <= 1e-7


def test_best_intercept_is_the_exact_minimiser() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(2, 40))
        scores, y, c = rng.standard_normal(n), np.where(rng.random(n) < 0.4, 1.0, -1.0), rng.uniform(0.2, 3, n)
        loss = lambda b: float(c @ np.maximum(0.0, 1.0 - y * (scores + b)))  # noqa: E731
        candidates = y - scores  # the minimum of a convex piecewise-linear function sits on a kink
        assert loss(_best_intercept(scores, y, c)) == pytest.approx(min(loss(b) for b in candidates), abs=1e-12)


def test_libsvm_fallback_solves_the_same_problem(exact_svm) -> None:
    Z, y, c, gamma = instance(7)
    fallback = _libsvm(Z, y, c, gamma)
    assert fallback.primal == pytest.approx(exact_svm(Z, y, c, gamma), rel=1e-5)  # libsvm: SMO, less exact
    assert fallback.dual <= fallback.primal
