"""No leakage on the examples' real data: for every built-in dataset of every example spec, no source group and no
identical token window lies on both sides of any feature's split, and no person's surname either (people)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from probekit.errors import RunError
from probekit.registry import PluginRegistry
from probekit.spec import load_spec
from probekit.splits import SplitError, site_groups, split_feature

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
#: selectors.yaml is the quickstart's data; paper.yaml reads the hub (its plugins are those of the other examples)
DATASET_EXAMPLES = [path for path in sorted(EXAMPLES.glob("*.yaml")) if path.stem not in {"selectors", "paper"}]


@pytest.mark.slow
@pytest.mark.parametrize("spec", DATASET_EXAMPLES, ids=lambda path: path.stem)
def test_no_source_and_no_window_on_both_sides(spec: Path, minilm) -> None:
    validated = load_spec(spec, PluginRegistry())
    [dataset_ref] = validated.datasets
    try:
        dataset = dataset_ref.instantiate().build(minilm.tokenizer)
    except RunError as error:  # a corpus from Debian that is not installed (bash .ci/example-data installs them)
        pytest.skip(f"{spec.stem}: {error}")
    groups = site_groups(dataset)
    windows = np.unique([ids.tobytes() for ids in dataset.sequences], return_inverse=True)[1][dataset.sites.sequence]
    surnames = _surnames(dataset, minilm.tokenizer) if dataset_ref.name == "people" else None
    split_settings = validated.spec.split
    probed = 0
    for feature in dataset.features:
        try:
            split = split_feature(feature.labels, groups[feature.sites], split_settings.test_fraction,
                                  split_settings.seed, split_settings.by)
        except SplitError:
            continue  # skipped by the sweep, with its reason
        train, test = feature.sites[split.train], feature.sites[split.test]
        assert not set(groups[train]) & set(groups[test]), feature.name
        assert not set(windows[train]) & set(windows[test]), feature.name  # identical token windows
        if surnames is not None:
            assert not {surnames[s] for s in train} & {surnames[s] for s in test}, feature.name
        probed += 1
    assert probed > 0


def _surnames(dataset, tokenizer) -> dict[int, str]:
    """The decoded surname tokens of every site, computed from the tokens alone."""
    return {site: tokenizer.decode(dataset.sequences[dataset.sites.sequence[site]]
                                   [dataset.sites.start[site] : dataset.sites.end[site]]).strip().lower()
            for site in range(len(dataset.sites))}
