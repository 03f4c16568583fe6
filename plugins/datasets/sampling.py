"""Balanced sampling of probe sites and assembly of sampled features into one :class:`ProbingDataset`."""

from __future__ import annotations

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
    features = [Feature(d.name, np.searchsorted(used, d.candidates), d.labels) for d in draws]
    groups = None if candidates.group is None else np.asarray(candidates.group, dtype=np.int64)[used]
    return ProbingDataset(sequences, sites, features, skipped or [], groups)
