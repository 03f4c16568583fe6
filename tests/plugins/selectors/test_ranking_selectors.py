"""Ranking selectors (random, f_stat, mutual_info, l1_logreg) against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.feature_selection import mutual_info_classif
from sklearn.linear_model import LogisticRegression

from probekit.errors import RunError
from probekit_plugins.selectors.f_statistic import FStatistic
from probekit_plugins.selectors.knn_mutual_info import mutual_info_knn
from probekit_plugins.selectors.l1_logistic import L1Logistic, entry_C
from probekit_plugins.selectors.mutual_info import MutualInformation
from probekit_plugins.selectors.random_neurons import RandomNeurons

KS = [1, 2, 3, 5, 8]


def assert_valid(selections: dict, ks: list[int], n_columns: int) -> None:
    for k in ks:
        neurons = np.asarray(selections[k].neurons)
        assert len(neurons) == k == len(set(neurons.tolist()))
        assert neurons.min() >= 0 and neurons.max() < n_columns


def test_random_is_seeded_nested_and_uniform(planted) -> None:
    X, y = planted(200, 40, [3, 7], 2.0, seed=0)
    first = RandomNeurons(RandomNeurons.Params(seed=5)).select(X, y, KS)
    again = RandomNeurons(RandomNeurons.Params(seed=5)).select(X, y, KS)
    assert_valid(first, KS, 40)
    assert all(np.array_equal(first[k].neurons, again[k].neurons) for k in KS)
    assert all(np.array_equal(first[8].neurons[:k], first[k].neurons) for k in KS)  # nested over k
    other = RandomNeurons(RandomNeurons.Params(seed=6)).select(X, y, KS)
    assert not np.array_equal(first[8].neurons, other[8].neurons)
    # every column is equally likely: chi-square over many seeds
    counts = np.bincount([RandomNeurons(RandomNeurons.Params(seed=s)).select(X, y, [1])[1].neurons[0]
                          for s in range(2000)], minlength=40)
    assert stats.chisquare(counts).pvalue > 1e-3


def test_random_within_the_top_of_the_prefilter(planted) -> None:
    X, y = planted(300, 60, [10, 20], 2.0, seed=1)
    gaps = np.abs(X[y].mean(0) - X[~y].mean(0))
    pool = set(np.argsort(-gaps)[:12].tolist())
    for seed in range(20):
        chosen = RandomNeurons(RandomNeurons.Params(seed=seed, pool=12)).select(X, y, [8])[8].neurons
        assert set(chosen.tolist()) <= pool
    with pytest.raises(RunError, match="k = 8 exceeds the 5 neurons"):
        RandomNeurons(RandomNeurons.Params(pool=5)).select(X, y, [8])


def test_f_stat_ranks_by_one_way_anova(planted) -> None:
    X, y = planted(300, 30, [4, 9, 17], 1.5, seed=2)
    X[:, 0] = 1.0  # a constant neuron: F undefined, ranked last
    selections = FStatistic().select(X, y, KS)
    assert_valid(selections, KS, 30)
    reference = np.array([stats.f_oneway(X[y, j], X[~y, j]).statistic if j else -np.inf for j in range(30)])
    for k in KS:
        assert selections[k].neurons.tolist() == np.argsort(-reference, kind="stable")[:k].tolist()
        np.testing.assert_allclose(selections[k].scores, reference[selections[k].neurons], rtol=1e-4)
    assert 0 not in FStatistic().select(X, y, [29])[29].neurons


@pytest.mark.parametrize(("n_neighbors", "seed", "rounding"), [(3, 0, None), (5, 7, 1), (1, 3, None)])
def test_vectorised_mutual_information_equals_scikit_learn(planted, n_neighbors, seed, rounding) -> None:
    X, y = planted(400, 25, [2, 11], 1.5, seed=3)
    if rounding is not None:  # many ties: the tie-breaking noise must match too
        X = np.round(X, rounding)
    ours = mutual_info_knn(X, y, n_neighbors, seed)
    reference = mutual_info_classif(X, y, discrete_features=False, n_neighbors=n_neighbors, random_state=seed)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-12)


def test_mutual_info_selector_ranks_by_the_estimate(planted) -> None:
    X, y = planted(300, 30, [5, 12, 20], 2.0, seed=4)
    fast = MutualInformation(MutualInformation.Params(seed=1)).select(X, y, KS)
    slow = MutualInformation(MutualInformation.Params(seed=1, implementation="sklearn")).select(X, y, KS)
    reference = mutual_info_classif(X, y, random_state=1)
    assert_valid(fast, KS, 30)
    expected = np.argsort(-reference, kind="stable")
    for k in KS:
        assert fast[k].neurons.tolist() == slow[k].neurons.tolist() == expected[:k].tolist()
    assert 5 in fast[3].neurons.tolist()  # the strongest planted neuron


def test_l1_logreg_ranks_by_coefficient_magnitude(planted) -> None:
    X, y = planted(400, 30, [3, 8, 14], 1.5, seed=5)
    selections = L1Logistic(L1Logistic.Params(C=0.5)).select(X, y, KS)
    std = X.std(axis=0)
    reference = LogisticRegression(C=0.5, l1_ratio=1.0, solver="liblinear", class_weight="balanced", tol=1e-3,
                                   max_iter=1000, random_state=0).fit(X / std, y)
    magnitude = np.abs(reference.coef_[0])
    nonzero = int(np.count_nonzero(magnitude))
    assert nonzero >= 8
    for k in KS:
        assert selections[k].neurons.tolist() == np.argsort(-magnitude, kind="stable")[:k].tolist()
        assert selections[k].details["nonzero_coefficients"] == nonzero
    # the planted neurons lead; distractor 0 copies neuron 3's noise, so L1 uses it to cancel that noise
    assert {3, 8} <= set(selections[3].neurons.tolist())


def test_l1_logreg_fills_beyond_the_nonzero_coefficients_by_mean_difference(planted) -> None:
    X, y = planted(400, 30, [3, 8, 14], 1.5, seed=6)
    C = 1.3 * entry_C(X / X.std(axis=0), y)
    selections = L1Logistic(L1Logistic.Params(C=C)).select(X, y, [1, 8, 20])
    nonzero = selections[20].details["nonzero_coefficients"]
    assert 1 <= nonzero < 8
    assert_valid(selections, [1, 8, 20], 30)
    chosen = selections[20].neurons
    gaps = np.abs(X[y].mean(0) - X[~y].mean(0))
    assert np.all(selections[20].scores[:nonzero] > 0) and np.all(selections[20].scores[nonzero:] == 0)
    rest = chosen[nonzero:]
    assert rest.tolist() == [j for j in np.argsort(-gaps, kind="stable") if j not in chosen[:nonzero]][:20 - nonzero]
    assert selections[8].details["filled_by_mean_difference"] == 8 - nonzero


def test_l1_logreg_default_C_sits_above_the_entry_point(planted) -> None:
    X, y = planted(300, 20, [2, 9], 1.5, seed=7)
    Xs = X / X.std(axis=0)

    def nonzero(C: float) -> int:
        fit = LogisticRegression(C=C, l1_ratio=1.0, solver="saga", class_weight="balanced", tol=1e-10,
                                 max_iter=20000).fit(Xs, y)
        return int(np.count_nonzero(fit.coef_))

    assert nonzero(0.95 * entry_C(Xs, y)) == 0 and nonzero(1.05 * entry_C(Xs, y)) >= 1
    details = L1Logistic().select(X, y, [3])[3].details
    assert details["C"] == pytest.approx(20 * entry_C(Xs, y)) and details["nonzero_coefficients"] >= 3


def test_l1_logreg_working_set_reaches_the_fit_on_every_candidate(planted) -> None:
    X, y = planted(600, 300, [3, 80, 150, 222], 1.2, seed=8)
    grown = L1Logistic(L1Logistic.Params(working_set=4, tol=1e-8)).select(X, y, [8])[8]
    everything = L1Logistic(L1Logistic.Params(working_set=300, tol=1e-8)).select(X, y, [8])[8]
    assert 4 < grown.details["working_set"] < 300  # it grew by the neurons whose optimality condition failed
    assert everything.details["working_set"] == 300
    assert grown.details["nonzero_coefficients"] == everything.details["nonzero_coefficients"] >= 8
    assert grown.neurons.tolist() == everything.neurons.tolist()
    np.testing.assert_allclose(grown.scores, everything.scores, rtol=1e-4)
