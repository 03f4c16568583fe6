"""latex: character masks from the math state machine and brace groups, tokens labelled by containment,
mirrored negatives, and bad input."""

from __future__ import annotations

import gzip
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from probekit.api import TokenizedDocument, core_spans, mask_labels
from probekit.errors import RunError
from probekit_plugins.datasets import latex as latex_module
from probekit_plugins.datasets.latex import Latex
from probekit_plugins.datasets.latex_markup import LATEX_FEATURES, LatexSyntaxError, latex_masks

FIXTURE = Path(__file__).parent / "fixtures" / "paper.tex"


def runs(text: str, mask: np.ndarray) -> list[str]:
    """The maximal runs of masked characters, as strings."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return [text[a:b] for a, b in zip(edges[::2], edges[1::2])]


def test_character_masks_of_the_fixture() -> None:
    text = FIXTURE.read_text()
    masks = latex_masks(text)
    found = {name: runs(text, masks[name]) for name in LATEX_FEATURES}
    assert found["is_title"] == ["Neurons in a Haystack"]
    assert found["is_author"] == ["Wes Gurnee \\and Neel Nanda"]
    assert found["is_abstract"] == ["\nWe probe sparse neurons of language models.\n"]
    assert found["is_reference"] == ["gurnee2023", "fig:one", "eq:two_parts"]
    assert found["is_inline_math"] == ["\\frac{a+b}{c_d}", "E = m c^{2}", "x_i^2 + y^{n-1}"]
    assert found["is_display_math"] == [" \\sum_{k=1}^{n} k = \\frac{n(n+1)}{2} ",
                                        "\\label{eq:two_parts}\n  f(x) = \\frac12 x^{3} \\text{ for all x_1}\n",
                                        " \\int_0^1 t\\,dt = \\tfrac{1}{2} "]
    assert found["is_math"] == found["is_inline_math"][:3] + found["is_display_math"]
    assert found["is_numerator"] == ["a+b", "n(n+1)", "1", "1"]  # \frac12 has the one-token arguments 1 and 2
    assert found["is_denominator"] == ["c_d", "2", "2", "2"]
    assert found["is_subscript"] == ["d", "i", "k=1", "0"]  # x_1 inside \text{...} is text, not a subscript
    assert found["is_superscript"] == ["2", "2", "n-1", "n", "3", "1"]
    assert np.array_equal(masks["is_frac"], masks["is_numerator"] | masks["is_denominator"])


@pytest.mark.parametrize(
    ("text", "feature", "expected"),
    [
        ("$a$$b$", "is_inline_math", ["a", "b"]),
        ("$$a$$ and $b$", "is_display_math", ["a"]),
        (r"cost \$3 and \verb|$x$| then $y$", "is_inline_math", ["y"]),
        (r"\begin{align*} a &= b_{1} \\[2pt] c &= d \end{align*}", "is_subscript", ["1"]),
        (r"\begin{math}q\end{math}", "is_inline_math", ["q"]),
        (r"$\frac{\frac{1}{x}}{y}$", "is_numerator", ["\\frac{1}{x}"]),
        (r"$\frac{\frac{1}{x}}{y}$", "is_denominator", ["x", "y"]),
        (r"$x_\alpha + e^{i\pi}$", "is_subscript", ["\\alpha"]),
        (r"\citep[see][p.~2]{a,b} and x_1 outside math", "is_reference", ["a,b"]),
        (r"x_1 outside math", "is_subscript", []),
        ("% $not math$\n$m$", "is_math", ["m"]),
        # found in the example's TeX Live documentation: configuration, notes in titles, verbatim output files
        ("\\lstset{language=[LaTeX]{TeX},%\n  alsoletter={*-$},%\n}\n$m$ and $n$", "is_math", ["m", "n"]),
        (r"\newcommand\darg[3]{ \texttt{#1} $q$ } and \lstinline[x]|$a| and $b$", "is_math", ["b"]),
        (r"\title{Big Results\thanks{Funded by $x$ grants}}", "is_title", ["Big Results"]),
        (r"\author{Ann\footnote{Uni}, Bo}", "is_author", ["Ann", ", Bo"]),
        (r"\title{On $n$\thanks{Funded by $x$ grants}}", "is_math", ["n", "x"]),
        ("\\begin{VerbatimOut}[gobble=0]{code.tex}\n$x$\n\\end{VerbatimOut} $y$", "is_math", ["y"]),
    ],
)
def test_character_masks_of_snippets(text: str, feature: str, expected: list[str]) -> None:
    assert runs(text, latex_masks(text)[feature]) == expected


def test_unbalanced_math_reports_the_line() -> None:
    with pytest.raises(LatexSyntaxError, match="line 2: math opened here is never closed"):
        latex_masks("fine $x$\nbroken $y\nmore text")
    with pytest.raises(LatexSyntaxError, match="line 1: brace opened here is never closed"):
        latex_masks(r"\title{no end")


def test_tokens_inside_outside_and_straddling() -> None:
    text = "x_{ab} y\n"
    spans = np.asarray([(0, 1), (1, 4), (4, 5), (5, 6), (6, 8), (8, 9)])  # x | _{a | b | } | " y" | "\n"
    document = TokenizedDocument(text, np.arange(6), spans, core_spans(text, spans), np.ones(6, dtype=bool))
    assert document.core.tolist() == [[0, 1], [1, 4], [4, 5], [5, 6], [7, 8], [8, 9]]
    subscript = latex_masks("$" + text + "$")["is_subscript"][1:-1]
    assert mask_labels(document, subscript).tolist() == [0, -1, 1, 0, 0, 0]  # "_{a" holds a delimiter: neither
    everything = np.ones(len(text), dtype=bool)
    assert mask_labels(document, everything).tolist() == [1] * 6


def build(tokenizer, path: Path = FIXTURE, **overrides):
    params = {"path": str(path), "sequence_length": 2048, "max_examples": 1000, "positive_fraction": (0.01, 0.99),
              **overrides}
    return Latex(Latex.Params.model_validate(params)).build(tokenizer)


def decoded_spans(tokenizer, ids: np.ndarray) -> list[tuple[int, int]]:
    """Each token's character span from the lengths of decoded prefixes (byte-level BPE decodes losslessly)."""
    lengths = [len(tokenizer.decode(ids[:k])) for k in range(len(ids) + 1)]
    return list(zip(lengths[:-1], lengths[1:]))


def test_bpe_token_labels_follow_containment(bpe_tokenizer) -> None:
    dataset = build(bpe_tokenizer)
    (ids,) = dataset.sequences  # the whole file fits in one sequence
    text = FIXTURE.read_text()
    assert bpe_tokenizer.decode(ids) == text
    masks = latex_masks(text)
    spans = decoded_spans(bpe_tokenizer, ids)
    assert {f.name for f in dataset.features} == set(LATEX_FEATURES)
    for feature in dataset.features:
        for site, label in zip(feature.sites, feature.labels):
            start, end = spans[dataset.sites.start[site]]
            piece = text[start:end]
            if piece.strip():  # the token's visible characters decide
                start += len(piece) - len(piece.lstrip())
                end -= len(piece) - len(piece.rstrip())
            inside = masks[feature.name][start:end]
            assert inside.all() if label else not inside.any(), (feature.name, text[start:end], label)
        assert feature.labels.any() and not feature.labels.all()


def test_wordpiece_delimiters_are_never_positive(minilm) -> None:
    dataset = build(minilm.tokenizer, sequence_length=512)
    tokens = {}
    for feature in dataset.features:
        positives = feature.sites[feature.labels]
        tokens[feature.name] = [minilm.tokenizer.convert_ids_to_tokens(int(dataset.sequences[s][p]))
                                for s, p in zip(dataset.sites.sequence[positives], dataset.sites.start[positives])]
    # WordPiece splits words alone as in context: the title's and author's own tokens, nothing around them
    assert tokens["is_title"] == minilm.tokenizer.tokenize("Neurons in a Haystack")
    assert tokens["is_author"] == minilm.tokenizer.tokenize("Wes Gurnee \\and Neel Nanda")
    for name in ("is_title", "is_author", "is_reference", "is_abstract"):
        assert not {"{", "}"} & set(tokens[name]), name
    assert "$" not in tokens["is_inline_math"] and "$" not in tokens["is_display_math"]


def test_mirrored_features_take_half_their_negatives_from_the_mirror(bpe_tokenizer) -> None:
    dataset = build(bpe_tokenizer, positive_fraction=(0.2, 0.3))
    text = FIXTURE.read_text()
    masks = latex_masks(text)
    spans = decoded_spans(bpe_tokenizer, dataset.sequences[0])

    def inside(name: str, span: tuple[int, int]) -> np.ndarray:
        start, end = span
        piece = text[start:end]
        if piece.strip():
            start, end = start + len(piece) - len(piece.lstrip()), end - len(piece) + len(piece.rstrip())
        return masks[name][start:end]

    for name, mirror in [("is_numerator", "is_denominator"), ("is_inline_math", "is_display_math"),
                         ("is_subscript", "is_superscript")]:
        feature = next(f for f in dataset.features if f.name == name)
        negatives = feature.sites[~feature.labels]
        from_mirror = sum(inside(mirror, spans[dataset.sites.start[s]]).all() for s in negatives)
        pool = sum(inside(mirror, span).all() and not inside(name, span).any() for span in spans)
        # half the negatives (rounded up) from the mirror when it has that many, else all of the mirror;
        # random negatives may land in the mirror too
        assert from_mirror >= min(pool, (len(negatives) + 1) // 2), (name, from_mirror, pool, len(negatives))
        assert from_mirror < len(negatives)


def test_features_subset_and_missing_features(bpe_tokenizer, tmp_path: Path) -> None:
    plain = tmp_path / "plain.tex"
    plain.write_text("Only text here, and $x^2$ once, with more words after it.\n")
    dataset = build(bpe_tokenizer, plain, features=["is_title", "is_superscript"])
    assert [f.name for f in dataset.features] == ["is_superscript"]
    assert [s.name for s in dataset.skipped] == ["is_title"]
    assert "no token lies inside it" in dataset.skipped[0].reason


def test_directory_gzip_and_broken_files(bpe_tokenizer, tmp_path: Path, caplog) -> None:
    corpus = tmp_path / "tex"
    corpus.mkdir()
    (corpus / "paper.tex.gz").write_bytes(gzip.compress(FIXTURE.read_bytes()))
    (corpus / "notes.txt").write_text("$ not a tex file")
    (corpus / "broken.tex").write_text("good $x$\nunclosed $y and the rest\n")
    with caplog.at_level("WARNING", logger="probekit"):
        from_dir = build(bpe_tokenizer, corpus)
    assert re.search(r"skipped 1 file\(s\).*broken\.tex:2: math opened here is never closed", caplog.text)
    assert from_dir.fingerprint == build(bpe_tokenizer).fingerprint
    with pytest.raises(RunError, match=r"broken\.tex:2: math opened here"):
        build(bpe_tokenizer, corpus / "broken.tex")


def test_missing_source_names_the_debian_package(bpe_tokenizer, tmp_path: Path, monkeypatch) -> None:
    missing = str(tmp_path / "texlive-doc")
    monkeypatch.setattr(latex_module, "TEXLIVE_DOCS", missing)
    with pytest.raises(RunError, match=re.escape("apt-get install texlive-science-doc")):
        build(bpe_tokenizer, Path(missing))
    with pytest.raises(RunError, match=r"no such file, directory or matching files \(\.tex, \.tex\.gz\)$"):
        build(bpe_tokenizer, tmp_path / "elsewhere")


def test_sequences_cut_and_deterministic(bpe_tokenizer, tmp_path: Path) -> None:
    for copy in range(3):
        shutil.copy(FIXTURE, tmp_path / f"copy{copy}.tex")
    settings = {"sequence_length": 64, "max_sequences": 12, "skip_first": 2, "max_examples": 10,
                "positive_fraction": (0.2, 0.5)}
    dataset = build(bpe_tokenizer, tmp_path, **settings)
    assert len(dataset.sequences) == 12 and all(len(s) <= 64 for s in dataset.sequences)
    assert dataset.sites.start.min() >= 2
    again = build(bpe_tokenizer, tmp_path, **settings)
    other = build(bpe_tokenizer, tmp_path, **settings, seed=5)
    assert dataset.fingerprint == again.fingerprint != other.fingerprint


TEXLIVE = Path("/usr/share/doc/texlive-doc/latex")


@pytest.mark.skipif(not TEXLIVE.is_dir(), reason="the example's .tex files (Debian texlive-science-doc; .ci/run "
                                                  "extracts them) are not installed")
def test_the_example_documents_have_no_configuration_math_and_no_notes_in_titles() -> None:
    """On examples/latex.yaml's files: every '$' of a \\lstset is outside math, no \\thanks/\\footnote text counts as
    title or author, nothing inside a VerbatimOut counts as math."""
    from probekit_plugins.datasets.latex import tex_documents

    checked = {"lstset": 0, "note": 0, "VerbatimOut": 0}
    for path, text in tex_documents(str(TEXLIVE), 0):
        try:
            masks = latex_masks(text)
        except LatexSyntaxError:
            continue
        for match in re.finditer(r"\\lstset\{", text):
            span = slice(match.start(), text.find("\n\n", match.start()))
            assert not masks["is_math"][span].any(), path
            checked["lstset"] += 1
        for match in re.finditer(r"\\(thanks|footnote)\{", text):
            end = text.find("}", match.end())
            assert not (masks["is_title"] | masks["is_author"])[match.start() : end].any(), path
            checked["note"] += 1
        for match in re.finditer(r"\\begin\{VerbatimOut\}", text):
            end = text.find("\\end{VerbatimOut}", match.end())
            assert not masks["is_math"][match.start() : end].any(), path
            checked["VerbatimOut"] += 1
    assert min(checked.values()) > 0, checked
