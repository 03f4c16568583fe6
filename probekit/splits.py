"""Train/test splits that cannot leak: sites that share a source (a document, a person, a page) or the very same text
stay on one side, the classes keep their proportions, and F1 gets a bootstrap interval over the test groups.

A probe scored on a test site whose document, entity or identical window was also in training can be right by
memorising the source (in the paper's people data a surname's training label alone gives test F1 0.9-1.0). So by
default (``split.by: group``) every group lands whole on one side; ``split.by: site`` keeps the plain stratified split
of earlier versions, for reproducing old results.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from probekit.contracts import ProbingDataset
from probekit.probing import stratified_split

#: bootstrap resamples behind every F1 interval
RESAMPLES = 1000


class SplitError(ValueError):
    """A feature that cannot be split soundly (a class too small once groups stay whole); the message says why."""


@dataclass(frozen=True)
class Split:
    """Train and test positions into a feature's sites, and the group of every test site (for the bootstrap)."""

    train: np.ndarray
    test: np.ndarray
    test_groups: np.ndarray
    n_train_groups: int
    n_test_groups: int


def site_groups(dataset: ProbingDataset) -> np.ndarray:
    """One group id per site: the dataset's own groups (each site alone when it gives none), merged across sites
    whose sequences hold exactly the same tokens, so the same text is never on both sides of a split."""
    n_sites = len(dataset.sites)
    declared = dataset.groups if dataset.groups is not None else np.arange(n_sites)
    _, declared = np.unique(declared, return_inverse=True)
    _, content = np.unique([np.asarray(ids, dtype=np.int64).tobytes() for ids in dataset.sequences],
                           return_inverse=True)
    site_content = content[dataset.sites.sequence]
    # a graph linking each declared group to the token contents of its sites; its components are the groups
    n_declared = int(declared.max()) + 1 if n_sites else 0
    size = n_declared + int(content.max()) + 1 if n_sites else 0
    graph = coo_matrix((np.ones(n_sites), (declared, n_declared + site_content)), shape=(size, size))
    _, component = connected_components(graph, directed=False)
    return component[declared]


def split_feature(labels: np.ndarray, groups: np.ndarray, test_fraction: float, seed: int, by: str) -> Split:
    """Stratified train/test split of one feature's sites; with ``by == "group"`` no group is on both sides.

    Raises :class:`SplitError` when a side would lack a class."""
    labels = np.asarray(labels, dtype=bool)
    if by == "site":
        train, test = stratified_split(labels, test_fraction, seed)
        return Split(train, test, test, len(train), len(test))
    in_test = _assign_groups(labels, groups, test_fraction, seed)
    train, test = np.flatnonzero(~in_test), np.flatnonzero(in_test)
    for side, name, least in ((train, "training", 2), (test, "test", 1)):
        positives = int(labels[side].sum())
        if positives < least or len(side) - positives < least:
            raise SplitError(
                f"keeping each of its {len(np.unique(groups))} groups (source documents, entities, identical texts) "
                f"on one side leaves {positives} positive / {len(side) - positives} negative sites for {name}; "
                "it needs more sources per class (or split.by: site, which lets a source leak into the test score)")
    return Split(train, test, groups[test], len(np.unique(groups[train])), len(np.unique(groups[test])))


def _assign_groups(labels: np.ndarray, groups: np.ndarray, test_fraction: float, seed: int) -> np.ndarray:
    """Whether each site is in the test split: whole groups, largest first (random order among equal sizes), each
    put on the side that brings the test split's positive and negative counts closer to ``test_fraction`` of each;
    then any group whose move to the other side brings them closer still is moved, until none does."""
    ids, inverse = np.unique(groups, return_inverse=True)
    counts = np.stack([np.bincount(inverse, weights=labels, minlength=len(ids)),
                       np.bincount(inverse, weights=~labels, minlength=len(ids))], axis=1)
    totals = counts.sum(axis=0)
    target = test_fraction * totals
    scale = 1 / np.maximum(totals, 1)
    order = np.random.default_rng(seed).permutation(len(ids))
    order = order[np.argsort(-counts[order].sum(axis=1), kind="stable")]
    filled = np.zeros(2)
    group_in_test = np.zeros(len(ids), dtype=bool)

    def cost(test_counts: np.ndarray) -> float:
        return float(np.sum(((test_counts - target) * scale) ** 2))

    for group in order:
        if cost(filled + counts[group]) < cost(filled):
            group_in_test[group] = True
            filled = filled + counts[group]
    moved = True
    while moved:
        moved = False
        for group in order:
            change = -counts[group] if group_in_test[group] else counts[group]
            if cost(filled + change) < cost(filled) - 1e-12:
                group_in_test[group] = not group_in_test[group]
                filled = filled + change
                moved = True
    return group_in_test[inverse]


def f1_interval(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, seed: int,
                level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of F1, resampling whole test groups (each test site alone under a site split):
    ``RESAMPLES`` draws, seeded, so every cell of a feature is resampled alike. NaN when the test split holds one
    group: resampling it says nothing about the variation between sources. Several predictions of the same test
    sites: :class:`F1Bootstrap`, which draws the resamples once."""
    return F1Bootstrap(y_true, groups, seed).interval(y_pred, level)


class F1Bootstrap:
    """:func:`f1_interval` for any number of predictions of one feature's test sites: the resamples (the costly
    part, a multinomial draw per resample) are drawn once, here, and every :meth:`interval` gives the numbers
    ``f1_interval`` gives."""

    def __init__(self, y_true: np.ndarray, groups: np.ndarray, seed: int) -> None:
        self.y_true = np.asarray(y_true, dtype=bool)
        ids, self.inverse = np.unique(groups, return_inverse=True)
        self.n_groups = len(ids)
        # how often each resample draws each group; float64 holds the counts exactly, and the products below
        # (sums of integer counts) are exact, so they equal the integer matrix product
        self.draws = None if self.n_groups < 2 else np.random.default_rng(seed).multinomial(
            self.n_groups, np.full(self.n_groups, 1 / self.n_groups), size=RESAMPLES).astype(np.float64)

    def interval(self, y_pred: np.ndarray, level: float = 0.95) -> tuple[float, float]:
        """The percentile interval of F1 of ``y_pred`` (NaN, NaN with fewer than two test groups)."""
        if self.draws is None:
            return float("nan"), float("nan")
        y_true, y_pred, groups = self.y_true, np.asarray(y_pred, dtype=bool), self.n_groups
        per_group = np.stack([np.bincount(self.inverse, weights=y_true & y_pred, minlength=groups),  # true positives
                              np.bincount(self.inverse, weights=~y_true & y_pred, minlength=groups),  # false pos.
                              np.bincount(self.inverse, weights=y_true & ~y_pred, minlength=groups)], axis=1)
        tp, fp, fn = (self.draws @ per_group).T
        denominator = 2 * tp + fp + fn
        f1 = np.divide(2 * tp, denominator, out=np.zeros_like(denominator), where=denominator > 0)
        low, high = np.quantile(f1, [(1 - level) / 2, (1 + level) / 2])
        return float(low), float(high)
