"""osp: the certified optimum equals brute-force enumeration, bounds are valid, limits and errors are clean."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from probekit.errors import RunError
from probekit.probing import mean_difference, top_k
from probekit_plugins.selectors.master_milp import MasterMILP
from probekit_plugins.selectors.osp import OptimalSparseProbe, class_weights, feature_scale
from probekit_plugins.selectors.outer_approximation import combinations

REGIMES = {
    "paper": {},  # features / (10 std), gamma = 1/sqrt(n): the ridge dominates
    "standardized": {"scaling": "standardize", "gamma": 1.0},
    "weak": {"scaling": "standardize", "gamma": 10.0},
    "unweighted": {"scaling": "standardize", "gamma": 1.0, "class_weight": "none"},
}


def small_instance(n: int, p: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping classes, three informative columns, one noisy copy, the rest noise."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    y = rng.random(n) < 0.35
    y[:2] = [True, False]
    X[:, :3] += np.outer(y, [1.0, 0.7, 0.5])
    X[:, 3] = X[:, 0] + 0.6 * rng.standard_normal(n)
    return X[:, rng.permutation(p)], y


def brute_force(X: np.ndarray, y: np.ndarray, k: int, params: dict, exact_svm) -> float:
    """min over every support of size k of the SVM objective, each solved by HiGHS's QP solver."""
    settings = OptimalSparseProbe.Params(**params)
    Xs = X / feature_scale(X, settings.scaling)
    gamma = settings.gamma or 1.0 / np.sqrt(len(y))
    c, labels = class_weights(y, settings.class_weight), np.where(y, 1.0, -1.0)
    return min(exact_svm(Xs[:, list(s)], labels, c, gamma) for s in itertools.combinations(range(X.shape[1]), k))


def check_against_brute_force(X, y, params, exact_svm) -> None:
    p = X.shape[1]
    # 1e-7, a thousand times the default: HiGHS's tolerances (1e-9 on rows, entries below 1e-8 folded into the
    # constant) keep the master's bound within about 1e-8 of its exact value
    selections = OptimalSparseProbe(OptimalSparseProbe.Params(candidates=p, relative_gap=1e-7, **params)).select(
        X, y, [1, 2, 3, 4])
    for k, selection in selections.items():
        optimum = brute_force(X, y, k, params, exact_svm)
        details = selection.details
        assert details["status"] == "optimal"
        assert details["objective"] == pytest.approx(optimum, rel=1e-6)
        assert details["lower_bound"] <= optimum * (1 + 1e-9)
        assert len(set(selection.neurons.tolist())) == k


@pytest.mark.parametrize("regime", ["paper", "weak", "unweighted"])
def test_optimum_equals_brute_force_enumeration(regime, exact_svm) -> None:
    X, y = small_instance(50, 10, seed=sorted(REGIMES).index(regime))
    check_against_brute_force(X, y, REGIMES[regime], exact_svm)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("regime", sorted(REGIMES))
def test_optimum_equals_brute_force_enumeration_p15(regime, seed, exact_svm) -> None:
    X, y = small_instance(80, 15, seed=10 + seed)
    check_against_brute_force(X, y, REGIMES[regime], exact_svm)


def test_certificate_is_complete_and_json_ready() -> None:
    X, y = small_instance(120, 12, seed=3)
    selections = OptimalSparseProbe(OptimalSparseProbe.Params(candidates=8)).select(X, y, [2, 3])
    for k, selection in selections.items():
        details = json.loads(json.dumps(selection.details))
        for field in ("status", "objective", "lower_bound", "gap", "cuts", "master_solves", "seconds", "gamma",
                      "coefficients", "intercept"):
            assert field in details
        assert details["lower_bound"] <= details["objective"]
        assert details["gap"] == pytest.approx((details["objective"] - details["lower_bound"]) / details["objective"])
        assert details["gamma"] == pytest.approx(1 / np.sqrt(120)) and details["candidates"] == 8
        # the certificate's coefficients are the SVM's weights in activation units, ordered like the neurons
        assert len(details["coefficients"]) == k
        assert np.all(np.abs(np.asarray(details["coefficients"])) == selection.scores)
        assert np.all(np.diff(selection.scores) <= 0)
        assert set(selection.neurons.tolist()) <= set(top_k(mean_difference(X, y), 8).tolist())


def test_paper_scaling_is_proved_at_the_mean_difference_support_in_a_few_cuts() -> None:
    """Features / (10 std) and gamma = 1/sqrt(n) put every sample inside the margin: the cut is exact, the
    objective is linear in the support with slopes ~ the squared standardised mean differences."""
    rng = np.random.default_rng(4)
    n = 2000
    y = rng.random(n) < 0.3
    X = rng.standard_normal((n, 30)) + np.outer(y, np.linspace(0.8, 0.0, 30))
    selections = OptimalSparseProbe().select(X, y, [1, 2, 3, 4])
    standardized_gap = mean_difference(X / X.std(axis=0), y)
    for k, selection in selections.items():
        assert selection.details["status"] == "optimal" and selection.details["gap"] <= 1e-4
        assert set(selection.neurons.tolist()) == set(top_k(standardized_gap, k).tolist())
        assert selection.details["master_solves"] <= 1 and selection.details["cuts"] <= 5


def test_time_limit_returns_the_best_support_with_bound_and_gap() -> None:
    X, y = small_instance(400, 40, seed=5)
    params = OptimalSparseProbe.Params(scaling="standardize", gamma=30.0, time_limit=0.05, local_search_budget=2)
    selections = OptimalSparseProbe(params).select(X, y, [4])
    details = selections[4].details
    assert details["status"] == "time_limit"
    assert details["lower_bound"] < details["objective"] and 0 < details["gap"] <= 1
    assert len(set(selections[4].neurons.tolist())) == 4


def test_k_beyond_the_candidates_is_a_clear_error() -> None:
    X, y = small_instance(100, 12, seed=6)
    with pytest.raises(RunError, match=r"osp: k = 6 exceeds the 5 candidate neurons .*params.candidates = 5"):
        OptimalSparseProbe(OptimalSparseProbe.Params(candidates=5)).select(X, y, [1, 6])


def test_master_milp_minimises_the_cut_model() -> None:
    """The master's optimum is the smallest pool bound over all supports (brute force over the cut model)."""
    rng = np.random.default_rng(7)
    p, k = 9, 3
    constants, coefficients = rng.uniform(5, 10, 12), rng.uniform(0, 4, (12, p))
    supports = list(itertools.combinations(range(p), k))
    pool = [max(float(a - d[list(s)].sum()) for a, d in zip(constants, coefficients)) for s in supports]
    master = MasterMILP(p, k, floor=0.0)
    for a, d in zip(constants, coefficients):
        master.add_cut(float(a), d)
    result = master.solve(10.0, 1e-9, incumbent=None)
    assert result.finished and result.value == pytest.approx(min(pool), abs=1e-7)
    assert result.bound == pytest.approx(min(pool), abs=1e-7)
    assert pool[supports.index(tuple(result.support.tolist()))] == pytest.approx(min(pool), abs=1e-7)


def test_vectorised_combinations_equal_itertools() -> None:
    for n, m in [(5, 0), (5, 1), (6, 3), (10, 4), (7, 7)]:
        assert combinations(n, m).tolist() == [list(c) for c in itertools.combinations(range(n), m)]


def test_thread_counts_can_differ_between_solves_in_one_process() -> None:
    """HiGHS sizes one thread pool per process at its first solve; osp entries with other `threads` still solve."""
    X, y = small_instance(200, 20, seed=8)
    params = {"scaling": "standardize", "gamma": 10.0, "candidates": 20}
    results = [OptimalSparseProbe(OptimalSparseProbe.Params(threads=threads, **params)).select(X, y, [3])[3].details
               for threads in (2, 1, 2)]
    assert all(d["status"] == "optimal" and d["master_solves"] >= 1 for d in results)
    assert results[0]["objective"] == pytest.approx(results[1]["objective"]) == pytest.approx(results[2]["objective"])


def test_tiny_objectives_of_a_weak_ridge_are_certified_exactly(exact_svm) -> None:
    """Separable classes and gamma = 1e6 make objectives of about 1e-7: the bound must stay below the optimum (a
    solved support's objective is an upper bound only) and the proof must still close."""
    rng = np.random.default_rng(0)
    n, p, gamma = 200, 8, 1e6
    y = rng.random(n) < 0.5
    X = rng.standard_normal((n, p))
    X[:, 0] += 8 * np.where(y, 1, -1)
    X[:, 1] += 6 * np.where(y, 1, -1)
    selections = OptimalSparseProbe(OptimalSparseProbe.Params(scaling="standardize", gamma=gamma, candidates=p,
                                                              time_limit=20)).select(X, y, [1, 2, 3])
    Xs, c, labels = X / feature_scale(X, "standardize"), class_weights(y, "balanced"), np.where(y, 1.0, -1.0)
    for k, selection in selections.items():
        # the reference solves the same problem scaled by gamma (weights gamma c, gamma 1): the same minimiser
        optimum = min(exact_svm(Xs[:, list(s)], labels, gamma * c, 1.0) / gamma
                      for s in itertools.combinations(range(p), k))
        details = selection.details
        assert details["status"] == "optimal"
        assert details["objective"] == pytest.approx(optimum, rel=1e-6)
        assert details["lower_bound"] <= optimum * (1 + 1e-9)
