"""The example plugins keep probekit's plugin contracts, checked with probekit's conformance kit.

Run with pytest where probekit and this package are installed; ``probekit.testing`` needs no model weights (datasets
are built with its in-memory fake tokenizer).
"""

from __future__ import annotations

from probekit.testing import check_dataset, check_selector
from probekit_example_plugin import KeywordTokens, WelchT


def test_welch_t_keeps_the_selector_contract() -> None:
    check_selector(WelchT())


def test_welch_t_keeps_the_contract_on_a_small_matrix() -> None:
    check_selector(WelchT(), n_samples=30, n_columns=4, seed=1)


def test_keyword_tokens_keeps_the_dataset_contract() -> None:
    dataset = check_dataset(KeywordTokens())
    assert [feature.name for feature in dataset.features] == ["is_keyword"]


def test_keyword_tokens_keeps_the_contract_with_other_params() -> None:
    check_dataset(KeywordTokens(KeywordTokens.Params(keywords=["def", "return", "None"], max_examples=20, seed=5)))
