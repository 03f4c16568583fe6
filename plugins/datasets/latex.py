"""LaTeX features of tokens in .tex sources (Gurnee et al. 2023, appendix B.2): math (inline / display), fractions
(numerator / denominator), sub- and superscripts, title, author, abstract and references."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from probekit.api import (
    INSIDE,
    OUTSIDE,
    CandidateSites,
    DatasetPlugin,
    FeatureDraw,
    InputPath,
    ProbingDataset,
    RunError,
    SamplingParams,
    SequenceLength,
    SkippedFeature,
    TokenizedDocument,
    WindowParams,
    assemble_dataset,
    content_length,
    cut_windows,
    mask_labels,
    read_text,
    resolve_files,
    sample_with_negative_pools,
    special_frame,
    tokenize_documents,
    window_sites,
)
from probekit_plugins.datasets.latex_markup import LATEX_FEATURES, MIRRORS, LatexSyntaxError, latex_masks

log = logging.getLogger("probekit.plugins.latex")  # under 'probekit': the CLI prints it as a warning line

#: Debian's TeX Live documentation (texlive-science-doc, texlive-publishers-doc, ...): real .tex files, offline
TEXLIVE_DOCS = "/usr/share/doc/texlive-doc/latex"

LatexFeature = Literal[LATEX_FEATURES]  # type: ignore[valid-type]


class LatexParams(WindowParams, SamplingParams):
    path: InputPath = Field(TEXLIVE_DOCS, description="a .tex / .tex.gz file, a directory searched recursively, or a "
                      "glob (default: Debian's TeX Live documentation)")
    features: list[LatexFeature] | None = Field(None, description="subset of the 12 features (default: all)")
    sequence_length: SequenceLength = 512  # each document is cut into consecutive sequences
    max_sequences: int = Field(1000, ge=1, description="stop reading files once this many sequences are cut")


class Latex(DatasetPlugin):
    """The paper's 12 LaTeX features (math, fractions, scripts, title, author, abstract, references) on .tex files."""

    Params = LatexParams
    params: LatexParams

    def build(self, tokenizer: Any) -> ProbingDataset:
        p = self.params
        names = list(p.features or LATEX_FEATURES)
        wanted = sorted(set(names) | {MIRRORS[n] for n in names if n in MIRRORS})
        corpus = labelled_sequences(tokenizer, p, wanted)
        if corpus.broken:
            log.warning("latex: skipped %d file(s) with unbalanced math or braces, e.g. %s", len(corpus.broken),
                        corpus.broken[0])
        if not corpus.sequences:
            reason = f"; {corpus.broken[0]}" if corpus.broken else ""
            raise RunError(f"latex: no usable .tex text under '{p.path}'{reason}")

        rng = np.random.default_rng(p.seed)
        draws: list[FeatureDraw] = []
        skipped: list[SkippedFeature] = []
        for name in names:
            labels = corpus.labels[name]
            positives, outside = np.flatnonzero(labels == INSIDE), np.flatnonzero(labels == OUTSIDE)
            if len(positives) == 0 or len(outside) == 0:
                side = "inside" if len(positives) == 0 else "outside"
                skipped.append(SkippedFeature(name, f"no token lies {side} it in {len(corpus.sequences)} sequences "
                                                    f"of {corpus.files} file(s)"))
                continue
            pools = [outside]
            if name in MIRRORS:  # half of the negatives from the mirror feature, half random
                pools = [np.flatnonzero((corpus.labels[MIRRORS[name]] == INSIDE) & (labels == OUTSIDE)), outside]
            picked, picked_labels = sample_with_negative_pools(positives, pools, p.max_examples,
                                                               p.positive_fraction, rng)
            draws.append(FeatureDraw(name, picked, picked_labels))
        return assemble_dataset(corpus.sequences, corpus.candidates, draws, "token", skipped)


@dataclass
class LabelledTokens:
    """Sequences cut from the usable files, every probe-able token as a candidate site, and each feature's token
    labels (INSIDE / OUTSIDE / STRADDLES) per candidate; ``broken`` names the skipped files with file:line."""

    sequences: list[np.ndarray]
    candidates: CandidateSites
    labels: dict[str, np.ndarray]
    files: int
    broken: list[str]


def labelled_sequences(tokenizer: Any, p: LatexParams, features: list[str]) -> LabelledTokens:
    """Cut each usable .tex file into consecutive sequences of ``p.sequence_length`` tokens (until
    ``p.max_sequences``) and label their tokens by the character masks of ``features``; a file is a group."""
    frame = special_frame(tokenizer)
    broken: list[str] = []
    token_labels: list[dict[str, np.ndarray]] = []  # per usable file

    def usable_documents() -> Iterator[TokenizedDocument]:
        for path, text in tex_documents(p.path, p.seed):
            try:
                masks = latex_masks(text)
            except LatexSyntaxError as error:
                broken.append(f"{path}:{error.line}: {error.message}")
                continue
            (document,) = tokenize_documents(tokenizer, [text])
            token_labels.append({name: mask_labels(document, masks[name]) for name in features})
            yield document

    windows = list(cut_windows(usable_documents(), content_length(tokenizer, frame, p.sequence_length),
                               p.max_sequences))
    tokens = [window.tokens(frame, p.skip_first) for window in windows]
    labels = {name: np.concatenate([token_labels[w.source][name][t] for w, t in zip(windows, tokens)]
                                   or [np.zeros(0, dtype=np.int8)]) for name in features}
    return LabelledTokens([window.input_ids(frame) for window in windows], window_sites(windows, frame, tokens),
                          labels, len(token_labels), broken)


def tex_files(pattern: str) -> list[Path]:
    """A .tex(.gz) file, every .tex / .tex.gz file under a directory, or the files matching a glob."""
    try:
        return resolve_files(pattern, (".tex", ".tex.gz"), what="latex source")
    except RunError:
        if pattern != TEXLIVE_DOCS:
            raise
        raise RunError(f"latex source '{pattern}': no .tex or .tex.gz files (install Debian's TeX Live documentation: "
                       "apt-get install texlive-science-doc)") from None


def tex_documents(pattern: str, seed: int) -> Iterator[tuple[Path, str]]:
    """(path, text) of every non-empty .tex file, in an order shuffled by ``seed``; non-UTF-8 files are read as
    Latin-1 (common for older TeX sources)."""
    files = tex_files(pattern)
    random.Random(seed).shuffle(files)
    for path in files:
        text = read_text(path, fallback="latin-1")
        if text.strip():
            yield path, text
