"""Sequence-level datasets: random windows, skip-first-N mean spans, one-vs-rest features, offline defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from probekit.errors import RunError
from probekit_plugins.datasets.labeled_documents import CodeLanguage, DataSubset, LabeledSequences, NaturalLanguage

TOPICS = {
    "weather": "The forecast says rain tomorrow, with strong winds and cold air from the north. ",
    "cooking": "Chop the onions, fry them in butter, then add the tomatoes and simmer slowly. ",
    "sport": "The striker scored twice before half time and the home team won the final. ",
}


@pytest.fixture
def table(tmp_path: Path) -> Path:
    path = tmp_path / "docs.jsonl"
    rows = [{"text": text * (1 + i % 5), "label": label} for label, text in TOPICS.items() for i in range(20)]
    path.write_text("\n".join(json.dumps(row) for row in rows))
    return path


def build(tokenizer, table: Path, **params):
    merged = {"source": {"kind": "table", "path": str(table)}, "sequence_length": 32, "skip_first": 3, **params}
    return LabeledSequences(LabeledSequences.Params.model_validate(merged)).build(tokenizer)


@pytest.mark.parametrize("tokenizer_name", ["bpe_tokenizer", "minilm"])
def test_windows_spans_and_labels(request, table: Path, tokenizer_name: str) -> None:
    fixture = request.getfixturevalue(tokenizer_name)
    tokenizer = getattr(fixture, "tokenizer", fixture)
    dataset = build(tokenizer, table)
    assert dataset.sites.aggregation == "mean" and len(dataset.sequences) == 60
    assert [f.name for f in dataset.features] == ["cooking", "sport", "weather"]
    special = set(tokenizer.all_special_ids)
    for sequence, start, end in zip(dataset.sites.sequence, dataset.sites.start, dataset.sites.end):
        ids = dataset.sequences[sequence]
        real = [i for i, token in enumerate(ids) if int(token) not in special]
        assert len(ids) <= 32 and (start, end) == (real[3], real[-1] + 1)  # first 3 real tokens skipped
    for feature in dataset.features:
        texts = [tokenizer.decode(dataset.sequences[dataset.sites.sequence[s]], skip_special_tokens=True)
                 for s in feature.sites]
        # the topic whose words the window shares most decides the label
        vocabulary = {topic: set(text.lower().replace(",", "").split()) for topic, text in TOPICS.items()}
        topics = [max(vocabulary, key=lambda t: len(vocabulary[t] & set(text.lower().replace(",", "").split())))
                  for text in texts]
        assert [topic == feature.name for topic in topics] == feature.labels.tolist()
        assert 0.3 <= feature.labels.mean() <= 0.5 + 1e-9


def test_deterministic_and_filtered(minilm, table: Path) -> None:
    assert build(minilm.tokenizer, table).fingerprint == build(minilm.tokenizer, table).fingerprint
    assert build(minilm.tokenizer, table).fingerprint != build(minilm.tokenizer, table, seed=3).fingerprint
    assert [f.name for f in build(minilm.tokenizer, table, labels=["sport", "weather"]).features] == [
        "sport", "weather"]
    with pytest.raises(RunError, match=r"labels \['golf'\] do not occur in the source"):
        build(minilm.tokenizer, table, labels=["golf"])


def test_too_short_documents_are_reported(minilm, table: Path) -> None:
    dataset = build(minilm.tokenizer, table, skip_first=200)
    assert dataset.features == [] and {s.name for s in dataset.skipped} == set(TOPICS)


@pytest.mark.parametrize("plugin, skip", [(NaturalLanguage, 1), (CodeLanguage, 50), (DataSubset, 25)])
def test_defaults_follow_the_paper(plugin, skip: int) -> None:
    params = plugin.Params()
    assert params.skip_first == skip and params.source.kind in ("gnome_help", "mixture")


@pytest.mark.skipif(not Path("/usr/share/help/C/gnome-help").is_dir(), reason="apt-get install gnome-user-docs")
def test_natural_language_on_real_help_pages(minilm) -> None:
    params = NaturalLanguage.Params(documents_per_label=6, sequence_length=48)
    dataset = NaturalLanguage(params).build(minilm.tokenizer)
    assert [f.name for f in dataset.features] == ["en", "de", "fr", "es", "it", "nl", "pt", "sv", "el"]
    text = minilm.tokenizer.decode(dataset.sequences[0], skip_special_tokens=True)
    assert len(text.split()) > 10


@pytest.mark.parametrize(("text", "code"), [
    ("/* Copyright 2020\n * GPL v2\n */\n\n// more notes\n#include <stdio.h>\nint main() {}", "#include <stdio.h>"),
    ("#!/usr/bin/env python3\n# -*- coding: utf-8 -*-\n\"\"\"Module docs.\"\"\"\n\nimport os\n", "import os"),
    ("<?xml version=\"1.0\"?>\n<!-- licence -->\n<!DOCTYPE page>\n<page/>", "<page/>"),
    ("<?php declare(strict_types=1);\n\n/*\n * (c) someone\n */\n\nnamespace Composer;", "namespace Composer;"),
    ("package main\n\n// a comment after code stays\n", "package main"),
])
def test_code_starts_after_the_leading_comments(text: str, code: str) -> None:
    from probekit_plugins.datasets.code_boilerplate import code_start

    assert text[code_start(text):].startswith(code)


def test_a_label_far_below_its_request_is_reported(minilm, table: Path, caplog) -> None:
    with caplog.at_level("WARNING", logger="probekit"):
        build(minilm.tokenizer, table, documents_per_label=50)  # 20 documents per topic exist
    assert "label 'cooking' has 20 of the 50 documents asked for" in caplog.text


@pytest.mark.skipif(not Path("/usr/share/doc/python3.11/html").is_dir() or not Path("/usr/share/help/C").is_dir(),
                    reason="the example's corpora (bash .ci/example-data) are not installed")
def test_a_mixture_gives_each_module_to_one_label_only() -> None:
    """data_subset: python_docstrings and python_code read the same stdlib modules (96 of 100 documents)."""
    from probekit.api import documents_by_label

    grouped = documents_by_label(DataSubset.Params().source, 100, seed=0)
    code = "\n".join(document.text for document in grouped["python_code"])
    assert len(grouped["python_code"]) == len(grouped["python_docstrings"]) == 100

    def mostly_in_code(document) -> bool:  # most of its longer lines occur verbatim in the code documents
        lines = [line.strip() for line in document.text.split("\n") if len(line.strip()) > 30]
        return bool(lines) and sum(line in code for line in lines) / len(lines) > 0.5

    shared = [d.origin for d in grouped["python_docstrings"] if mostly_in_code(d)]
    # measured: 89 of 100 before; now only generated codec tables, whose comments repeat across encodings/*.py
    assert len(shared) <= 15 and all(origin.startswith("encodings/") for origin in shared), shared


CODE_PACKAGES = ("/usr/share/doc/libcurl4/examples", "/usr/src/googletest", "/usr/share/php/Composer")


@pytest.mark.slow
@pytest.mark.skipif(not all(Path(p).is_dir() for p in CODE_PACKAGES),
                    reason="the example's code corpora (bash .ci/example-data) are not installed")
def test_code_windows_average_code_not_licence_headers(minilm) -> None:
    """examples/code_language.yaml: C and C++ windows were often mostly licence header (21 of 100 averaged spans
    held licence text with skip_first 100 and no stripping)."""
    import re

    dataset = CodeLanguage(CodeLanguage.Params(documents_per_label=100, labels=["c", "cpp", "php"])).build(
        minilm.tokenizer)
    for feature in dataset.features:
        spans = [minilm.tokenizer.decode(dataset.sequences[dataset.sites.sequence[site]]
                                         [dataset.sites.start[site] : dataset.sites.end[site]]).lower()
                 for site in feature.sites[feature.labels]]
        licence = [span for span in spans if re.search(r"copyright|licen[cs]e|warranty", span)]
        assert len(spans) > 50 and len(licence) <= 0.03 * len(spans), (feature.name, len(licence))
