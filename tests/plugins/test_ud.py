"""ud: a strict CoNLL-U reader, words aligned to BPE and WordPiece tokens, sentence packing, restricted negatives."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import pytest

from probekit.errors import RunError
from probekit_plugins.datasets.conllu import read_conllu
from probekit_plugins.datasets.ud import UniversalDependencies

FIXTURE = Path(__file__).parent / "fixtures" / "ud_small.conllu"


def build(tokenizer, path: Path = FIXTURE, **overrides):
    params = {"path": str(path), "min_count": 2, "sequence_length": 24, **overrides}
    return UniversalDependencies(UniversalDependencies.Params.model_validate(params)).build(tokenizer)


def test_text_is_rebuilt_from_forms_and_space_after() -> None:
    first, second = read_conllu(FIXTURE)
    assert first.name == "ud_small.conllu#email-001" and second.name == "ud_small.conllu#review-002"
    assert first.text == ("I can't believe the cats ran home. She won't send the e-mail today.\n"  # newpar
                          "The old dogs walked slowly to the park.")
    spans = {(w.form, first.text[w.start : w.end]) for w in first.words}
    assert {("ca", "ca"), ("n't", "n't")} <= spans  # "can't" = "ca" + "n't": each word gets its own part
    assert {("will", "won't"), ("n't", "won't")} <= spans  # "won't" is not spelled "will"+"n't": shared span
    assert "went" not in {w.form for w in first.words}  # the empty node 4.1 is ignored
    assert [first.text[a:b] for a, b in first.sentences][2] == "The old dogs walked slowly to the park."
    assert len(second.words) == 29


def compact(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


def expected_upos(tokenizer, dataset, wordpiece: bool) -> dict[int, str]:
    """UPOS of each site from an alignment that ignores offsets: walk the non-space characters of the decoded
    tokens along the non-space characters of the document text, take the word under the token's first character."""
    documents = read_conllu(FIXTURE)
    texts = [compact(d.text) for d in documents]
    expected = {}
    for index, ids in enumerate(dataset.sequences):
        pieces = [tokenizer.convert_ids_to_tokens(int(i)).removeprefix("##") if wordpiece
                  else tokenizer.decode([int(i)]) for i in ids]
        content = [k for k, i in enumerate(ids) if int(i) not in tokenizer.all_special_ids]
        joined = "".join(compact(pieces[k]) for k in content)
        document = next(d for d, t in zip(documents, texts) if joined in t)
        solid = [c for c, ch in enumerate(document.text) if not ch.isspace()]
        cursor = compact(document.text).index(joined)
        for k in content:
            if not compact(pieces[k]):  # a whitespace token (the paragraph break) belongs to no word
                continue
            char = solid[cursor]
            word = next(w for w in document.words if w.start <= char < w.end)
            expected[(index, k)] = word.upos
            cursor += len(compact(pieces[k]))
    return expected


@pytest.mark.parametrize("which", ["bpe", "wordpiece"])
def test_tokens_take_the_labels_of_their_first_word(which: str, bpe_tokenizer, minilm) -> None:
    tokenizer = bpe_tokenizer if which == "bpe" else minilm.tokenizer
    dataset = build(tokenizer, max_examples=1000, positive_fraction=(0.01, 0.99), features=["upos"])
    truth = expected_upos(tokenizer, dataset, wordpiece=which == "wordpiece")
    checked = 0
    for feature in dataset.features:
        tag = feature.name.removeprefix("upos_")
        for site, label in zip(feature.sites, feature.labels):
            key = (int(dataset.sites.sequence[site]), int(dataset.sites.start[site]))
            assert label == (truth[key] == tag), (feature.name, key, truth[key])
            checked += 1
    assert checked > 200
    sites = {(int(s), int(p)) for s, p in zip(dataset.sites.sequence, dataset.sites.start)}
    assert sites == set(truth)  # every token with a visible character is labelled


def test_contractions_on_wordpiece(minilm) -> None:
    dataset = build(minilm.tokenizer, max_examples=1000, positive_fraction=(0.01, 0.99), features=["upos"])
    tokenizer = minilm.tokenizer
    first = dataset.sequences[0]
    tokens = tokenizer.convert_ids_to_tokens(first.tolist())
    assert tokens[:13] == ["[CLS]", "i", "can", "'", "t", "believe", "the", "cats", "ran", "home", ".", "she", "won"]
    upos = {}
    for feature in dataset.features:
        for site, label in zip(feature.sites, feature.labels):
            if label and dataset.sites.sequence[site] == 0:
                upos[int(dataset.sites.start[site])] = feature.name.removeprefix("upos_")
    # can't = ca (AUX) + n't (PART): "can" starts in "ca"; "'" and "t" lie in "n't"
    assert [upos[p] for p in (2, 3, 4)] == ["AUX", "PART", "PART"]
    # won't = will + n't sharing the surface span: every token takes the first word, "will" (AUX)
    assert [upos[p] for p in (12, 13, 14)] == ["AUX", "AUX", "AUX"]


@pytest.mark.parametrize("which", ["bpe", "wordpiece"])
def test_whole_sentences_of_one_document_per_sequence(which: str, bpe_tokenizer, minilm) -> None:
    tokenizer = bpe_tokenizer if which == "bpe" else minilm.tokenizer
    dataset = build(tokenizer)
    documents = read_conllu(FIXTURE)
    sentences = [compact(d.text[a:b]) for d in documents for a, b in d.sentences]
    decoded = [compact(tokenizer.decode(ids, skip_special_tokens=True)) for ids in dataset.sequences]
    assert all(len(ids) <= 24 for ids in dataset.sequences)
    for sentence in sentences:
        assert sum(sentence in text for text in decoded) == 1, sentence
    for text in decoded:  # no sequence mixes documents
        assert any(text in compact(d.text) for d in documents)
    assert sum(len(text) for text in decoded) == sum(len(s) for s in sentences)


def test_morphology_negatives_come_from_the_same_word_class(minilm) -> None:
    dataset = build(minilm.tokenizer, max_examples=1000, positive_fraction=(0.01, 0.99))
    truth = expected_upos(minilm.tokenizer, dataset, wordpiece=True)
    past = next(f for f in dataset.features if f.name == "Tense_Past")
    classes = {truth[(int(dataset.sites.sequence[s]), int(dataset.sites.start[s]))] for s in past.sites}
    assert classes == {"VERB", "AUX"}  # Tense occurs on verbs and auxiliaries only
    assert int(past.labels.sum()) == 6  # ran, walked, visited, were, cost, paid
    anything = build(minilm.tokenizer, max_examples=1000, positive_fraction=(0.01, 0.99), morph_negatives="any")
    past_any = next(f for f in anything.features if f.name == "Tense_Past")
    assert len(past_any.labels) > len(past.labels)
    same = build(minilm.tokenizer, max_examples=1000, positive_fraction=(0.01, 0.99), morph_negatives="same_feature")
    past_same = next(f for f in same.features if f.name == "Tense_Past")
    assert int((~past_same.labels).sum()) == 2  # explain, learn (Tense=Pres)


def test_feature_groups_subtypes_and_min_count(bpe_tokenizer) -> None:
    dataset = build(bpe_tokenizer, features=["dep"], min_count=1)
    names = {f.name for f in dataset.features}
    assert "dep_obl:tmod" in names and "dep_nsubj" in names and not any(n.startswith("upos_") for n in names)
    folded = {f.name for f in build(bpe_tokenizer, features=["dep"], min_count=1, dep_subtypes=False).features}
    assert "dep_obl:tmod" not in folded and "dep_obl" in folded
    reasons = {s.name: s.reason for s in build(bpe_tokenizer, min_count=3).skipped}
    assert reasons["upos_ADP"].startswith("1 positive /") and "min_count is 3" in reasons["upos_ADP"]


def test_deterministic_and_gzip(bpe_tokenizer, tmp_path: Path) -> None:
    zipped = tmp_path / "ud.conllu.gz"
    zipped.write_bytes(gzip.compress(FIXTURE.read_bytes()))
    assert build(bpe_tokenizer).fingerprint == build(bpe_tokenizer, zipped).fingerprint
    assert build(bpe_tokenizer, max_examples=10).fingerprint != build(bpe_tokenizer, max_examples=10,
                                                                      seed=3).fingerprint


def test_skip_first_and_max_sequences(minilm) -> None:
    dataset = build(minilm.tokenizer, skip_first=3, max_sequences=2)
    assert len(dataset.sequences) == 2
    assert dataset.sites.start.min() >= 3 and dataset.sites.sequence.max() <= 1


GOOD = "1\tHi\thi\tINTJ\tUH\t_\t0\troot\t_\t_\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (GOOD + "2\tthere\tthere\tADV\n", r":2: expected 10 tab-separated fields, found 4"),
        (GOOD + "3\tthere\tthere\tADV\tRB\t_\t1\tadvmod\t_\t_\n", r":2: word ID 3 out of order \(expected 2"),
        (GOOD + "2\tthere\tthere\tADV\tRB\tDegree\t1\tadvmod\t_\t_\n", r":2: malformed FEATS item 'Degree'"),
        (GOOD + "2-3\tgonna\t_\t_\t_\t_\t_\t_\t_\t_\n2\tgon\tgo\tVERB\tVBG\t_\t1\tdep\t_\t_\n\n",
         r":4: multiword token 2-3 lacks its words"),
        (GOOD + "x\tthere\tthere\tADV\tRB\t_\t1\tadvmod\t_\t_\n", r":2: ID 'x' is neither"),
        (GOOD + "2\tthere\tthere\t_\tRB\t_\t1\tadvmod\t_\t_\n", r":2: word 2 lacks a FORM, UPOS or DEPREL"),
        (GOOD + "2\tthere\tthere\tADV\tRB\t_\t1\tadvmod\t_\tSpaceAfter=Maybe\n", r":2: SpaceAfter must be 'No'"),
        ("# just a comment\n\n", r": no sentences"),
    ],
)
def test_malformed_conllu_names_file_and_line(content: str, message: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.conllu"
    path.write_text(content)
    with pytest.raises(RunError, match=re.escape(str(path)) + message):
        read_conllu(path)


def test_missing_source(bpe_tokenizer, tmp_path: Path) -> None:
    with pytest.raises(RunError, match=r"no such file, directory or matching files \(\.conllu, \.conllu\.gz\)"):
        build(bpe_tokenizer, tmp_path / "nothing-here")



@pytest.mark.slow
def test_end_to_end_sweep_with_ud_and_people(tmp_path: Path, minilm) -> None:
    """`probekit run` machinery on the real MiniLM: two token-level datasets, layer 0, k = 1."""
    import pyarrow.parquet as pq

    from probekit.registry import PluginRegistry
    from probekit.spec import validate_spec_text
    from probekit.sweep import run_sweep

    people = Path(__file__).parents[2] / "examples" / "data" / "people.csv"
    spec = (
        "models:\n  - plugin: minilm\n"
        "datasets:\n"
        f"  - plugin: ud\n    params: {{path: '{FIXTURE}', sequence_length: 32, min_count: 5}}\n"
        f"  - plugin: people\n    params: {{table: '{people}', columns: [gender, party]}}\n"
        f"layers: [0]\nselectors:\n  - plugin: mean_diff\nks: [1]\noutput: {tmp_path / 'run'}\ncache: null\n"
    )
    summary = run_sweep(validate_spec_text(spec, "e2e.yaml", PluginRegistry()))
    rows = pq.read_table(tmp_path / "run" / "results").to_pylist()
    assert summary.new_rows == len(rows) > 0
    by_dataset = {(r["dataset"], r["feature"]) for r in rows}
    assert {("ud", "upos_NOUN"), ("ud", "upos_PUNCT"), ("people", "gender=female"),
            ("people", "party=Republican")} <= by_dataset
    assert all(r["layer"] == 0 and r["k"] == 1 and len(r["neuron_indices"]) == 1 for r in rows)
    assert all(0.0 <= r["f1"] <= 1.0 for r in rows)
