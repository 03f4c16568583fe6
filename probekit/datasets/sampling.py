"""Balanced sampling of probe sites (optionally with negatives in equal shares from several pools, the paper's paired
negatives) and assembly of sampled features into one :class:`ProbingDataset`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from pydantic import AfterValidator

from probekit.contracts import Aggregation, Feature, ProbeSites, ProbingDataset, SkippedFeature


def _check_fraction(value: tuple[float, float]) -> tuple[float, float]:
    low, high = value
    if not 0 < low <= high < 1:
        raise ValueError("positive_fraction must satisfy 0 < low <= high < 1")
    return value


#: a (low, high) bound on the positive share of a feature's sample, validated in every plugin's Params
PositiveFraction = Annotated[tuple[float, float], AfterValidator(_check_fraction)]


def sample_balanced(
    is_positive: np.ndarray, max_examples: int, fraction: tuple[float, float], rng: np.random.Generator
) -> np.ndarray:
    """Sorted indices of at most ``max_examples`` items whose positive share is the natural rate clipped to
    ``fraction`` (the paper keeps positives between 20 % and 50 %)."""
    positives = np.flatnonzero(is_positive)
    negatives = np.flatnonzero(~is_positive)
    share = float(np.clip(is_positive.mean(), *fraction))
    total = int(np.floor(min(max_examples, len(positives) / share, len(negatives) / (1 - share)) + 1e-9))
    n_positive = min(len(positives), max(1, round(share * total)))
    n_negative = min(len(negatives), max(1, total - n_positive))
    picked = np.concatenate(
        [rng.choice(positives, n_positive, replace=False), rng.choice(negatives, n_negative, replace=False)]
    )
    return np.sort(picked)


def sample_with_negative_pools(
    positives: np.ndarray,
    pools: Sequence[np.ndarray],
    max_examples: int,
    fraction: tuple[float, float],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted candidate indices and their labels: positives and negatives in the proportions of
    :func:`sample_balanced` (natural rate clipped to ``fraction``, negatives = union of ``pools``), the negatives
    split evenly over ``pools``. Pools may overlap; a pool that runs short leaves its share to the others.
    """
    positives = np.asarray(positives, dtype=np.int64)
    pools = [np.asarray(pool, dtype=np.int64) for pool in pools]
    size = 1 + max([int(a.max()) for a in (positives, *pools) if len(a)], default=-1)
    is_positive_index = _mask(positives, size)
    pool_masks = [_mask(pool, size) & ~is_positive_index for pool in pools]
    positives = np.flatnonzero(is_positive_index)
    union = np.flatnonzero(np.logical_or.reduce(pool_masks)) if pool_masks else np.zeros(0, dtype=np.int64)
    is_positive = np.concatenate([np.ones(len(positives), dtype=bool), np.zeros(len(union), dtype=bool)])
    picked = sample_balanced(is_positive, max_examples, fraction, rng)
    chosen_positives = positives[picked[picked < len(positives)]]
    wanted = int(np.sum(picked >= len(positives)))

    chosen: list[np.ndarray] = []
    taken = np.zeros(size, dtype=bool)
    active = [np.flatnonzero(mask) for mask in pool_masks]
    while wanted > 0 and active:
        still_active = []
        quotas = [wanted // len(active) + (1 if i < wanted % len(active) else 0) for i in range(len(active))]
        for pool, quota in zip(active, quotas):
            available = pool[~taken[pool]]
            take = min(quota, len(available))
            if take:
                draw = rng.choice(available, take, replace=False)
                chosen.append(draw)
                taken[draw] = True
                wanted -= take
            if len(available) > quota:
                still_active.append(pool)
        active = still_active
    negatives = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
    indices = np.concatenate([chosen_positives, negatives])
    labels = np.concatenate([np.ones(len(chosen_positives), dtype=bool), np.zeros(len(negatives), dtype=bool)])
    order = np.argsort(indices, kind="stable")
    return indices[order], labels[order]


def _mask(indices: np.ndarray, size: int) -> np.ndarray:
    mask = np.zeros(size, dtype=bool)
    mask[indices] = True
    return mask


@dataclass(frozen=True)
class CandidateSites:
    """Every place a dataset could probe: sequence, span start and end (exclusive), one entry per candidate, and
    optionally its group (its source document or entity; see ``ProbingDataset.groups``)."""

    sequence: np.ndarray
    start: np.ndarray
    end: np.ndarray
    group: np.ndarray | None = None


@dataclass(frozen=True)
class FeatureDraw:
    """A feature's sampled candidates (indices into :class:`CandidateSites`) and their labels."""

    name: str
    candidates: np.ndarray
    labels: np.ndarray
    kinds: np.ndarray | None = None  # optional finer class per candidate (see Feature.kinds)


def assemble_dataset(
    sequences: list[np.ndarray],
    candidates: CandidateSites,
    draws: list[FeatureDraw],
    aggregation: Aggregation = "token",
    skipped: list[SkippedFeature] | None = None,
) -> ProbingDataset:
    """One probe site per candidate used by any feature (so activations are read once), features indexing them."""
    used = (np.unique(np.concatenate([d.candidates for d in draws])) if draws
            else np.zeros(0, dtype=np.int64))
    sites = ProbeSites(candidates.sequence[used], candidates.start[used], candidates.end[used], aggregation)
    features = [Feature(d.name, np.searchsorted(used, d.candidates), d.labels, d.kinds) for d in draws]
    groups = None if candidates.group is None else np.asarray(candidates.group, dtype=np.int64)[used]
    return ProbingDataset(sequences, sites, features, skipped or [], groups)
