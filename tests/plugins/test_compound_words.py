"""compound_words: bigram XY vs Y without X and X without Y, last token of a window ending at the probed token."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from probekit.api import tokenize_documents
from probekit.cli import app
from probekit.errors import RunError
from probekit_plugins.datasets.compound_words import PAPER_BIGRAMS, CompoundWords, SiteIndex, bigram_sites

FILLER = ("the report says that", "we heard about", "nobody expected", "in the new budget", "a long talk on",
          "her letter mentions", "they voted for", "the committee studied")


def corpus_lines(seed: int = 0) -> list[str]:
    """Documents with a known number of each kind: 'social security' (24), 'security' alone (30), 'social' + another
    word (30), 'prime factors' (12), 'factors' alone (15), 'prime' + another word (15)."""
    rng = random.Random(seed)
    kinds = (["Social security"] * 4 + ["social security"] * 20 + ["network security"] * 15 + ["security"] * 15
             + ["social media"] * 15 + ["social life"] * 15 + ["prime factors"] * 12 + ["many factors"] * 15
             + ["prime minister"] * 15)
    rng.shuffle(kinds)
    sentences = [f"{rng.choice(FILLER)} {phrase} and {rng.choice(FILLER)} the weather." for phrase in kinds]
    return [" ".join(sentences[i : i + 10]) for i in range(0, len(sentences), 10)]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "news.jsonl"
    path.write_text("".join(json.dumps({"text": line}) + "\n" for line in corpus_lines()))
    return path


def build(tokenizer, corpus: Path, **overrides):
    params = {"source": {"kind": "jsonl", "path": str(corpus)}, "bigrams": ["social security", "prime factors",
              "credit card"], "max_examples": 1000, **overrides}
    return CompoundWords(CompoundWords.Params.model_validate(params)).build(tokenizer)


def window_words(tokenizer, ids: np.ndarray) -> list[str]:
    """Words of a window as the tokenizer decodes it (special tokens dropped), lower-cased."""
    return re.findall(r"\w+", tokenizer.decode(ids, skip_special_tokens=True).lower())


@pytest.mark.parametrize("which", ["bpe", "wordpiece"])
def test_labels_and_kinds_match_the_windows_text(which: str, bpe_tokenizer, minilm, corpus: Path) -> None:
    tokenizer = bpe_tokenizer if which == "bpe" else minilm.tokenizer
    suffix = 1 if which == "wordpiece" else 0  # [SEP] follows the probed token
    dataset = build(tokenizer, corpus)
    features = {f.name: f for f in dataset.features}
    assert set(features) == {"social_security", "prime_factors"}
    assert [s.name for s in dataset.skipped] == ["credit_card"]
    assert "does not occur" in dataset.skipped[0].reason

    expected = {"social_security": ("social", "security", 24, 60), "prime_factors": ("prime", "factors", 12, 30)}
    for name, (first, second, n_positive, n_negative) in expected.items():
        feature = features[name]
        kinds = {"XY": 0, "WY": 0, "XW": 0}
        for site, label in zip(feature.sites, feature.labels):
            ids = dataset.sequences[dataset.sites.sequence[site]]
            position = dataset.sites.start[site]
            assert position == len(ids) - 1 - suffix  # the window ends at the probed token
            assert len(ids) <= 24
            words = window_words(tokenizer, ids)
            if words[-2:] == [first, second]:
                kind = "XY"
            elif words[-1] == second:
                kind = "WY"
            else:
                assert words[-2] == first, words[-3:]
                kind = "XW"
            assert label == (kind == "XY")
            kinds[kind] += 1
        # natural positive rate 24/84 lies within [0.2, 0.5]: every site is used; negatives split evenly
        assert kinds == {"XY": n_positive, "WY": n_negative // 2, "XW": n_negative // 2}


def test_negatives_split_evenly_when_positives_are_rare(bpe_tokenizer, corpus: Path) -> None:
    dataset = build(bpe_tokenizer, corpus, bigrams=["prime factors"], positive_fraction=(0.4, 0.5))
    (feature,) = dataset.features
    assert feature.labels.sum() == 12 and len(feature.labels) == 30  # 12 positives at 40 %: 18 negatives
    kinds = {"WY": 0, "XW": 0}
    for site in feature.sites[~feature.labels]:
        words = window_words(bpe_tokenizer, dataset.sequences[dataset.sites.sequence[site]])
        kinds["WY" if words[-1] == "factors" else "XW"] += 1
    assert kinds == {"WY": 9, "XW": 9}


def test_full_windows_of_window_length(bpe_tokenizer, corpus: Path) -> None:
    dataset = build(bpe_tokenizer, corpus, window_length=16)
    documents = corpus_lines()
    for ids in dataset.sequences:
        assert len(ids) <= 16
        if len(ids) < 16:  # only a window that starts at the beginning of its document is shorter
            text = bpe_tokenizer.decode(ids)
            assert any(document.startswith(text) for document in documents), text
    assert len(dataset.sequences) == len(dataset.sites)  # one window per probed token, shared by both features


def test_case_sensitive_matching(bpe_tokenizer, corpus: Path) -> None:
    dataset = build(bpe_tokenizer, corpus, case_sensitive=True, bigrams=["social security"])
    assert int(dataset.features[0].labels.sum()) == 20  # "Social security" no longer counts


def test_deterministic_given_seed(bpe_tokenizer, corpus: Path) -> None:
    assert build(bpe_tokenizer, corpus).fingerprint == build(bpe_tokenizer, corpus).fingerprint
    assert build(bpe_tokenizer, corpus, max_examples=40).fingerprint != build(
        bpe_tokenizer, corpus, max_examples=40, seed=1).fingerprint


def test_paper_bigrams_are_the_default() -> None:
    params = CompoundWords.Params()
    assert params.bigrams == list(PAPER_BIGRAMS) and len(params.bigrams) == 21
    assert params.window_length == 24 and params.source.kind == "stdlib"


def test_bad_params_and_inputs(bpe_tokenizer, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="not two words"):
        CompoundWords.Params(bigrams=["social security number"])
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "social security"}\n{"text": oops}\n')
    with pytest.raises(RunError, match=rf"{broken}:2: not valid JSON"):
        build(bpe_tokenizer, broken)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(RunError, match="yielded no text"):
        build(bpe_tokenizer, empty)


def test_the_token_after_x_skips_whitespace_tokens(bpe_tokenizer) -> None:
    text = "The social\n\n\nclub met, a social  security office and Social\nSecurity."
    documents = tokenize_documents(bpe_tokenizer, [text])
    sites = SiteIndex()
    positives, without_first, without_second = bigram_sites(documents, [0], "social security", re.IGNORECASE, sites)
    tokens = sites.candidates().start
    ids = documents[0].ids
    prefixes = lambda indices: [bpe_tokenizer.decode(ids[: tokens[i] + 1]) for i in indices]  # noqa: E731
    # the probed token closes "security"; any spaces or one line break may separate X and Y
    assert len(positives) == 2 and all(p.lower().endswith("security") for p in prefixes(positives))
    assert len(without_first) == 0
    (club,) = prefixes(without_second)  # the first visible token after "social", not a whitespace token
    assert re.search(r"social\n\n\nc\w*$", club), club


def test_words_with_punctuation(bpe_tokenizer, tmp_path: Path) -> None:
    path = tmp_path / "mail.jsonl"
    path.write_text(json.dumps({"text": "Send the e-mail address and an e-mail now; the address book. " * 5}) + "\n")
    dataset = build(bpe_tokenizer, path, bigrams=["e-mail address"], positive_fraction=(0.2, 0.5))
    (feature,) = dataset.features
    assert feature.name == "e-mail_address"
    # 5 XY, 5 "address" alone, 5 "e-mail now" (sample_balanced may round 15 sites down to 14)
    assert int(feature.labels.sum()) == 5 and len(feature.labels) in (14, 15)


def test_variants_of_the_compound_are_never_negatives(bpe_tokenizer) -> None:
    text = ("Pass a keyword argument here. Keyword arguments go last; a keyword-argument list, and the keyword "
            "argument's name. A keyword list. An argument alone. The keyword arguments.")
    (document,) = tokenize_documents(bpe_tokenizer, [text])
    positives, without_first, without_second = bigram_sites([document], [0], "keyword argument", re.IGNORECASE,
                                                            sites := SiteIndex())
    index = {site: token for (_, token), site in sites._index.items()}
    token_text = [text[start:end] for start, end in document.core]
    negatives = {token_text[index[s]].strip() for s in np.concatenate([without_first, without_second])}
    assert len(positives) == 2  # "keyword argument" here and in "keyword argument's"
    assert negatives == {"list", "argument"}  # "keyword list" (XW) and "An argument alone" (WY), nothing else


@pytest.mark.slow
def test_the_example_has_no_variant_among_its_negatives(minilm) -> None:
    """On the standard library (examples/compound_words.yaml) 'keyword arguments' and 'command-line' were negatives."""
    from probekit.api import StdlibSource, read_documents

    texts = [text for text in read_documents(StdlibSource(), 0) if "keyword" in text.lower()]
    documents = tokenize_documents(minilm.tokenizer, texts)
    sites = SiteIndex()
    _, without_first, without_second = bigram_sites(documents, list(range(len(documents))), "keyword argument",
                                                    re.IGNORECASE, sites)
    where = {site: key for key, site in sites._index.items()}
    variant = re.compile(r"keyword(\s*-\s*|\s+)arguments?('s|s')?(?!\w)")
    checked = 0
    for kind, negatives in (("WY", without_first), ("XW", without_second)):
        for site in negatives:
            document, token = where[int(site)]
            text = documents[document].text.lower()
            start, end = documents[document].core[token]
            if kind == "WY":  # the token ends 'argument': no 'keyword' (or 'keyword-') right before it
                assert not variant.search(text[max(0, end - 40) : end] + " "), text[max(0, end - 60) : end + 20]
            else:  # the token follows 'keyword': what starts at that 'keyword' is not the compound
                x_start = text.rindex("keyword", 0, start)
                assert not variant.match(text, x_start), text[x_start : end + 20]
            checked += 1
    assert checked > 100


def test_kinds_name_the_pool_of_each_site(bpe_tokenizer, corpus: Path) -> None:
    """The classes of the paper's figure 2b: "XY" exactly for positives; a negative is "WY" (Y without X before it)
    or "XZ" (the token after an X that Y does not follow), by the pool it was drawn from."""
    dataset = build(bpe_tokenizer, corpus)
    expected = {"social_security": ("social", "security", {"XY": 24, "WY": 30, "XZ": 30}),
                "prime_factors": ("prime", "factors", {"XY": 12, "WY": 15, "XZ": 15})}
    for feature in dataset.features:
        first, second, counts = expected[feature.name]
        assert feature.kinds is not None and len(feature.kinds) == len(feature.sites)
        assert ((feature.kinds == "XY") == feature.labels).all()
        for site, kind in zip(feature.sites[~feature.labels], feature.kinds[~feature.labels]):
            words = window_words(bpe_tokenizer, dataset.sequences[dataset.sites.sequence[site]])
            if words[-1] == second:
                assert kind == "WY" and words[-2] != first, words[-3:]
            else:
                assert kind == "XZ" and words[-2] == first, words[-3:]
        assert {kind: int((feature.kinds == kind).sum()) for kind in counts} == counts


def test_inspect_by_class_shows_the_kinds(fake_model_plugin: str, corpus: Path) -> None:
    params = json.dumps({"source": {"kind": "jsonl", "path": str(corpus)}, "bigrams": ["social security"]})
    result = CliRunner().invoke(app, ["inspect", "by-class", "L0.N3", "L1.N7", "--model", "fake", "--dataset",
                                      "compound_words", "--dataset-params", params, "--feature", "social_security",
                                      "--output", "out"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for kind, n in (("XY", 24), ("WY", 30), ("XZ", 30)):
        assert re.search(rf"│ sum of 2 *│ kind {kind} *│ {n} *│", result.stdout), result.stdout
    rows = pq.read_table(Path("out") / "by-class.parquet").to_pylist()
    classes = ["positive", "negative", "kind WY", "kind XY", "kind XZ"]
    assert [(r["series"], r["class"]) for r in rows] == [(s, c) for s in ("L0.N3", "L1.N7", "sum of 2")
                                                        for c in classes]
    by_class = {r["class"]: r["n"] for r in rows}
    assert by_class["positive"] == by_class["kind XY"] == 24
    assert by_class["negative"] == by_class["kind WY"] + by_class["kind XZ"] == 60
    histogram = pq.read_table(Path("out") / "by-class-histogram.parquet").to_pylist()
    assert {r["class"] for r in histogram} == set(classes)
