"""LaTeX features of tokens in .tex sources (Gurnee et al. 2023, appendix B.2): math (inline / display), fractions
(numerator / denominator), sub- and superscripts, title, author, abstract and references."""

from __future__ import annotations

import glob
import gzip
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from probekit.contracts import DatasetPlugin, InputPath, PluginParams, ProbingDataset, SkippedFeature
from probekit.errors import RunError
from probekit_plugins.datasets.document_windows import content_length, special_frame
from probekit_plugins.datasets.latex_markup import LATEX_FEATURES, MIRRORS, LatexSyntaxError, latex_masks
from probekit_plugins.datasets.negative_pools import sample_with_negative_pools
from probekit_plugins.datasets.sampling import CandidateSites, FeatureDraw, PositiveFraction, assemble_dataset
from probekit_plugins.datasets.span_alignment import INSIDE, OUTSIDE, mask_labels, tokenize_documents

log = logging.getLogger("probekit.plugins.latex")  # under 'probekit': the CLI prints it as a warning line

#: Debian's TeX Live documentation (texlive-science-doc, texlive-publishers-doc, ...): real .tex files, offline
TEXLIVE_DOCS = "/usr/share/doc/texlive-doc/latex"

LatexFeature = Literal[
    "is_frac", "is_numerator", "is_denominator", "is_title", "is_abstract", "is_author", "is_subscript",
    "is_superscript", "is_reference", "is_math", "is_inline_math", "is_display_math",
]


class LatexParams(PluginParams):
    path: InputPath = Field(TEXLIVE_DOCS, description="a .tex / .tex.gz file, a directory searched recursively, or a "
                      "glob (default: Debian's TeX Live documentation)")
    features: list[LatexFeature] | None = Field(None, description="subset of the 12 features (default: all)")
    sequence_length: int = Field(512, ge=8, description="tokens per sequence, special tokens included; each "
                                 "document is cut into consecutive sequences")
    max_sequences: int = Field(1000, ge=1, description="stop reading files once this many sequences are cut")
    skip_first: int = Field(0, ge=0, description="positions at the start of each sequence never probed")
    max_examples: int = Field(2000, ge=10, description="probe sites sampled per feature")
    positive_fraction: PositiveFraction = Field(
        (0.2, 0.5), description="sampled positive share is the natural rate clipped to [low, high] (paper: 0.25)"
    )
    seed: int = Field(0, description="seed for file order and sampling")



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
    ``p.max_sequences``) and label their tokens by the character masks of ``features``."""
    frame = special_frame(tokenizer)
    content = content_length(tokenizer, frame, p.sequence_length)
    sequences: list[np.ndarray] = []
    sequence, position = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    source: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]  # the file of every candidate: its group
    labels: dict[str, list[np.ndarray]] = {name: [np.zeros(0, dtype=np.int8)] for name in features}
    broken: list[str] = []
    files = 0
    for path, text in tex_documents(p.path, p.seed):
        if len(sequences) == p.max_sequences:
            break
        try:
            masks = latex_masks(text)
        except LatexSyntaxError as error:
            broken.append(f"{path}:{error.line}: {error.message}")
            continue
        files += 1
        (document,) = tokenize_documents(tokenizer, [text])
        token_labels = {name: mask_labels(document, masks[name]) for name in features}
        for first in range(0, len(document), content):
            if len(sequences) == p.max_sequences:
                break
            tokens = np.arange(first, min(first + content, len(document)))
            tokens = tokens[document.probeable[tokens] & (len(frame.prefix) + tokens - first >= p.skip_first)]
            sequence.append(np.full(len(tokens), len(sequences), dtype=np.int64))
            source.append(np.full(len(tokens), files, dtype=np.int64))
            position.append(len(frame.prefix) + tokens - first)
            for name in features:
                labels[name].append(token_labels[name][tokens])
            sequences.append(frame.wrap(document.ids[first : first + content]))
    positions = np.concatenate(position)
    return LabelledTokens(sequences, CandidateSites(np.concatenate(sequence), positions, positions + 1,
                                                    np.concatenate(source)),
                          {name: np.concatenate(values) for name, values in labels.items()}, files, broken)


def tex_files(pattern: str) -> list[Path]:
    """A .tex(.gz) file, every .tex / .tex.gz file under a directory, or the files matching a glob."""
    path = Path(pattern)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(f for f in path.rglob("*") if f.is_file() and f.name.endswith((".tex", ".tex.gz")))
    else:
        files = sorted(Path(f) for f in glob.glob(pattern, recursive=True) if Path(f).is_file())
    if not files:
        hint = (" (install Debian's TeX Live documentation: apt-get install texlive-science-doc)"
                if pattern == TEXLIVE_DOCS else "")
        raise RunError(f"latex source '{pattern}': no .tex or .tex.gz files{hint}")
    return files


def tex_documents(pattern: str, seed: int) -> Iterator[tuple[Path, str]]:
    """(path, text) of every non-empty .tex file, in an order shuffled by ``seed``; non-UTF-8 files are read as
    Latin-1 (common for older TeX sources)."""
    files = tex_files(pattern)
    random.Random(seed).shuffle(files)
    for path in files:
        opener = gzip.open if path.name.endswith(".gz") else open
        try:
            with opener(path, "rb") as handle:  # type: ignore[operator]
                raw = handle.read()
        except (OSError, EOFError) as error:
            raise RunError(f"{path}: cannot read ({error})") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        if text.strip():
            yield path, text
