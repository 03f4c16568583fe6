"""Leakage-free splits: groups never straddle train and test, identical texts are one group, classes keep their
proportions, and F1 intervals agree with a plain bootstrap written out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from probekit.contracts import Feature, ProbeSites, ProbingDataset
from probekit.splits import SplitError, f1_interval, site_groups, split_feature


def union_find_groups(declared: list[int], sequences: list[tuple[int, ...]], site_sequence: list[int]) -> list[int]:
    """The same grouping by hand: sites are linked when they share a declared group or identical token content."""
    parent = list(range(len(declared)))

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for a in range(len(declared)):
        for b in range(a):
            if declared[a] == declared[b] or sequences[site_sequence[a]] == sequences[site_sequence[b]]:
                parent[find(a)] = find(b)
    return [find(i) for i in range(len(declared))]


def same_partition(a, b) -> bool:
    pairs = {(x, y) for x, y in zip(a, b)}
    return len(pairs) == len(set(a)) == len(set(b))


def test_site_groups_merge_declared_groups_and_identical_texts() -> None:
    rng = np.random.default_rng(0)
    sequences = [tuple(rng.integers(0, 3, 2)) for _ in range(12)]  # short: many identical sequences
    site_sequence = rng.integers(0, 12, 40)
    declared = rng.integers(0, 15, 40)
    dataset = ProbingDataset([np.asarray(s) for s in sequences], ProbeSites(site_sequence, np.zeros(40), np.ones(40)),
                             [Feature("f", np.arange(40), np.arange(40) % 2)], groups=declared)
    expected = union_find_groups(declared.tolist(), sequences, site_sequence.tolist())
    assert same_partition(site_groups(dataset).tolist(), expected)
    alone = ProbingDataset(dataset.sequences, dataset.sites, dataset.features)  # no declared groups
    assert same_partition(site_groups(alone).tolist(),
                          union_find_groups(list(range(40)), sequences, site_sequence.tolist()))


def test_group_split_keeps_groups_whole_and_classes_balanced() -> None:
    rng = np.random.default_rng(1)
    groups = rng.integers(0, 150, 1200)
    labels = rng.random(1200) < 0.3
    split = split_feature(labels, groups, 0.3, seed=5, by="group")
    assert not set(groups[split.train]) & set(groups[split.test])
    assert sorted(np.concatenate([split.train, split.test]).tolist()) == list(range(1200))
    for cls in (True, False):
        share = (labels[split.test] == cls).sum() / (labels == cls).sum()
        assert share == pytest.approx(0.3, abs=0.03)
    assert (split.n_train_groups, split.n_test_groups) == (len(set(groups[split.train])), len(set(groups[split.test])))
    np.testing.assert_array_equal(split.test_groups, groups[split.test])
    again = split_feature(labels, groups, 0.3, seed=5, by="group")
    np.testing.assert_array_equal(again.test, split.test)
    assert not np.array_equal(split_feature(labels, groups, 0.3, seed=6, by="group").test, split.test)


def test_singleton_groups_give_the_stratified_proportions() -> None:
    labels = np.arange(1000) % 4 == 0
    split = split_feature(labels, np.arange(1000), 0.3, seed=0, by="group")
    assert labels[split.test].sum() == 75 and (~labels[split.test]).sum() == 225


def test_site_split_is_the_plain_stratified_split() -> None:
    from sklearn.model_selection import train_test_split

    labels = np.arange(300) % 3 == 0
    split = split_feature(labels, np.zeros(300, dtype=int), 0.3, seed=42, by="site")  # groups ignored
    _, test = train_test_split(np.arange(300), test_size=0.3, random_state=42, stratify=labels)
    np.testing.assert_array_equal(split.test, np.sort(test))


def test_a_class_held_by_one_source_cannot_be_split() -> None:
    labels = np.r_[np.ones(30, bool), np.zeros(100, bool)]
    groups = np.r_[np.zeros(30, int), np.arange(1, 101)]  # every positive comes from one document
    with pytest.raises(SplitError, match="leaves 0 positive / .* negative sites for (test|training)"):
        split_feature(labels, groups, 0.3, seed=0, by="group")


def hand_bootstrap(y_true, y_pred, groups, resamples: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    ids = np.unique(groups)
    members = {g: np.flatnonzero(groups == g) for g in ids}
    scores = []
    for _ in range(resamples):
        rows = np.concatenate([members[g] for g in rng.choice(ids, len(ids), replace=True)])
        truth, predicted = y_true[rows], y_pred[rows]
        tp, fp, fn = (truth & predicted).sum(), (~truth & predicted).sum(), (truth & ~predicted).sum()
        scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return tuple(np.quantile(scores, [0.025, 0.975]))


@pytest.mark.parametrize("grouped", [False, True])
def test_f1_interval_agrees_with_a_bootstrap_by_hand(grouped: bool) -> None:
    rng = np.random.default_rng(2)
    n = 300
    groups = rng.integers(0, 60, n) if grouped else np.arange(n)
    y_true = rng.random(n) < 0.4
    y_pred = np.where(rng.random(n) < 0.8, y_true, ~y_true)
    low, high = f1_interval(y_true, y_pred, groups, seed=0)
    by_hand = hand_bootstrap(y_true, y_pred, groups, 4000, seed=1)
    assert low == pytest.approx(by_hand[0], abs=0.02) and high == pytest.approx(by_hand[1], abs=0.02)
    assert low < f1_score(y_true, y_pred) < high
    assert f1_interval(y_true, y_pred, groups, seed=0) == (low, high)  # seeded


def test_few_test_sites_give_a_wide_interval() -> None:
    y_true = np.array([True, True, True, True, False, False, False, False])
    y_pred = np.array([True, True, True, False, False, False, False, True])  # F1 0.75 on 4 positives
    low, high = f1_interval(y_true, y_pred, np.arange(8), seed=0)
    assert high - low > 0.5
    low, high = f1_interval(np.tile(y_true, 100), np.tile(y_pred, 100), np.arange(800), seed=0)
    assert high - low < 0.1 and low < 0.75 < high


def test_one_test_source_has_no_interval() -> None:
    y = np.array([True, False, True, False])
    low, high = f1_interval(y, y, np.zeros(4, dtype=int), seed=0)
    assert np.isnan(low) and np.isnan(high)
