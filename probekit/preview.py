"""Render a dataset the way a model sees it: class counts per feature and examples with the probed tokens marked."""

from __future__ import annotations

from typing import Any

import numpy as np
from rich.table import Table
from rich.text import Text

from probekit.contracts import ProbingDataset
from probekit.splits import site_groups

POSITIVE, NEGATIVE = "bold black on green", "black on bright_red"


def class_counts(dataset: ProbingDataset) -> Table:
    """Sites, positives, negatives and source groups per feature (what the split keeps whole), then the skipped
    features with their reasons."""
    groups = site_groups(dataset)
    table = Table(title=f"{len(dataset.sequences)} sequences, {len(dataset.sites)} probe sites "
                        f"({dataset.sites.aggregation}), {len(np.unique(groups))} source groups")
    for column in ("feature", "sites", "positive", "negative", "groups", "note"):
        table.add_column(column, justify="left" if column in ("feature", "note") else "right")
    for feature in dataset.features:
        positives = int(feature.labels.sum())
        table.add_row(feature.name, str(len(feature.labels)), str(positives), str(len(feature.labels) - positives),
                      str(len(np.unique(groups[feature.sites]))), "")
    for skipped in dataset.skipped:
        table.add_row(skipped.name, "-", "-", "-", "-", Text(f"skipped: {skipped.reason}", style="dim"))
    return table


def feature_examples(dataset: ProbingDataset, tokenizer: Any, feature: str, count: int, seed: int = 0) -> list[Text]:
    """Up to ``count`` sequences holding sites of ``feature``, positive sites on green and negative on red."""
    chosen = next(f for f in dataset.features if f.name == feature)
    sites = dataset.sites
    by_sequence: dict[int, list[tuple[int, int, bool]]] = {}
    for site, label in zip(chosen.sites, chosen.labels):
        by_sequence.setdefault(int(sites.sequence[site]), []).append(
            (int(sites.start[site]), int(sites.end[site]), bool(label)))
    rng = np.random.default_rng(seed)
    sequences = sorted(by_sequence)
    picked = sorted(rng.choice(sequences, size=min(count, len(sequences)), replace=False)) if sequences else []
    rendered = []
    for sequence in picked:
        styles: dict[int, str] = {}
        for start, end, label in by_sequence[sequence]:
            for position in range(start, end):
                styles[position] = POSITIVE if label else NEGATIVE
        text = Text(f"#{sequence}: ", style="dim")
        ids = [int(token) for token in dataset.sequences[sequence]]
        decoded = ""
        for position in range(len(ids)):  # decode growing prefixes, so spacing is the tokenizer's own
            longer = tokenizer.decode(ids[: position + 1])
            piece = longer[len(decoded) :] if longer.startswith(decoded) else tokenizer.decode([ids[position]])
            text.append(piece, style=styles.get(position, ""))
            decoded = longer
        rendered.append(text)
    return rendered
