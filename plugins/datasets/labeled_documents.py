"""Sequence-level features from labelled documents: natural language, code language, data subset, or any labels.

Each document gives one random contiguous window of model tokens; its representation is the mean activation over
the window's real tokens after skipping the first N (the paper's released code skipped 1 for Europarl, 100 for code
files, 25 for Pile documents; its text says 50 for code). Every label becomes a one-vs-rest binary feature with
balanced sampling; a document's origin (file, page, row) is its group in the split.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
from pydantic import Field

from probekit.api import (
    CandidateSites,
    DatasetPlugin,
    FeatureDraw,
    GnomeHelpSource,
    LabeledDocument,
    LabeledSource,
    MixtureSource,
    PositiveShare,
    ProbingDataset,
    PythonCodeSource,
    RunError,
    SamplingParams,
    SequenceLength,
    SkipFirst,
    SkippedFeature,
    SpecialFrame,
    StdlibSource,
    SystemFilesSource,
    TokenizedDocument,
    WindowParams,
    assemble_dataset,
    content_length,
    documents_by_label,
    sample_balanced,
    special_frame,
    tokenize_documents,
)
from probekit_plugins.datasets.code_boilerplate import code_start

log = logging.getLogger("probekit.plugins.labeled_documents")  # under 'probekit': shown as a warning line


class LabeledDocumentsParams(WindowParams, SamplingParams):
    source: LabeledSource = Field(description="where the labelled documents come from")
    labels: list[str] | None = Field(None, description="labels to probe (default: every label found)")
    documents_per_label: int = Field(200, ge=1, description="documents read per label")
    positive_fraction: PositiveShare = (0.1, 0.5)


def build_labeled_sequences(tokenizer: Any, p: LabeledDocumentsParams,
                            prepare: Callable[[str], str] | None = None) -> ProbingDataset:
    """One random window per document (``prepare`` may cut its text first), the mean over the window's tokens after
    the first ``skip_first``, one one-vs-rest feature per label; a document's origin is its group."""
    grouped = documents_by_label(p.source, p.documents_per_label, p.seed)
    for label, found in grouped.items():
        if len(found) < p.documents_per_label / 2:
            log.warning("label '%s' has %d of the %d documents asked for (documents_per_label)", label,
                        len(found), p.documents_per_label)
    if p.labels is not None:
        unknown = sorted(set(p.labels) - set(grouped))
        if unknown:
            raise RunError(f"labels {unknown} do not occur in the source (found: {', '.join(grouped)})")
        grouped = {label: grouped[label] for label in p.labels}
    documents: list[LabeledDocument] = [document for own in grouped.values() for document in own]
    if not documents:
        raise RunError("the source yielded no labelled document")

    frame = special_frame(tokenizer)
    content = content_length(tokenizer, frame, p.sequence_length)
    texts = [prepare(document.text) if prepare else document.text for document in documents]
    rng = np.random.default_rng(p.seed)
    sequences, spans, kept, origins = [], [], [], []
    for document, tokens in zip(documents, tokenize_documents(tokenizer, texts)):
        window = random_window(tokens, frame, content, p.skip_first, rng)
        if window is not None:
            sequences.append(window[0])
            spans.append(window[1:])
            kept.append(document.label)
            origins.append(document.origin)
    labels = np.asarray(kept)
    skipped = [SkippedFeature(label, f"no document of it has more than {p.skip_first} tokens")
               for label in grouped if label not in set(kept)]
    draws = []
    for label in grouped:
        is_positive = labels == label
        if not is_positive.any():
            continue
        if is_positive.all():
            skipped.append(SkippedFeature(label, "the only label present: no negatives"))
            continue
        picked = sample_balanced(is_positive, p.max_examples, p.positive_fraction, rng)
        draws.append(FeatureDraw(label, picked, is_positive[picked]))
    bounds = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    _, source = np.unique(np.asarray(origins, dtype=str), return_inverse=True)  # a file or page: one group
    candidates = CandidateSites(np.arange(len(sequences)), bounds[:, 0], bounds[:, 1], source.astype(np.int64))
    return assemble_dataset(sequences, candidates, draws, "mean", skipped)


def random_window(document: TokenizedDocument, frame: SpecialFrame, content: int, skip_first: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, int, int] | None:
    """(token ids, span start, span end) of a random window of at most ``content`` of the document's own tokens,
    or None when nothing is left after ``skip_first``. The span covers the window's tokens but the first
    ``skip_first`` (the special tokens around them are never in it)."""
    if len(document) == 0:
        return None
    first = int(rng.integers(0, len(document) - content + 1)) if len(document) > content else 0
    last = min(first + content, len(document))
    if last - first <= skip_first:
        return None
    return frame.wrap(document.ids[first:last]), len(frame.prefix) + skip_first, len(frame.prefix) + last - first


class LabeledSequences(DatasetPlugin):
    """Sequence-level features from your own labelled documents (JSONL / CSV / Parquet table, or any source)."""

    Params = LabeledDocumentsParams
    params: LabeledDocumentsParams

    def build(self, tokenizer: Any) -> ProbingDataset:
        return build_labeled_sequences(tokenizer, self.params)


class NaturalLanguageParams(LabeledDocumentsParams):
    source: LabeledSource = Field(default_factory=lambda: GnomeHelpSource(kind="gnome_help"),
                                  description="default: GNOME help pages in 9 languages (Debian gnome-user-docs)")
    skip_first: SkipFirst = 1


class NaturalLanguage(DatasetPlugin):
    """Which natural language a text is in (one-vs-rest), by default on GNOME help pages in 9 languages."""

    Params = NaturalLanguageParams
    params: NaturalLanguageParams

    def build(self, tokenizer: Any) -> ProbingDataset:
        return build_labeled_sequences(tokenizer, self.params)


#: label -> (glob, Debian package) of the offline code corpus; Python comes from the standard library
CODE_FILES = {
    "go": ("/usr/share/go-1.19/src/**/*.go", "golang-1.19-src"),
    "javascript": ("/usr/share/nodejs/lodash/**/*.js", "node-lodash"),
    "php": ("/usr/share/php/Composer/**/*.php", "composer"),
    "c": ("/usr/share/doc/libcurl4/examples/*.c", "libcurl4-doc"),
    "cpp": ("/usr/src/googletest/**/*.cc", "googletest"),
    "html": ("/usr/share/doc/python3.11/html/**/*.html", "python3.11-doc"),
    "xml": ("/usr/share/help/C/gnome-help/*.page", "gnome-user-docs"),
}


def offline_code_mixture() -> MixtureSource:
    parts: dict[str, Any] = {"python": PythonCodeSource(kind="python_code")}
    parts.update({label: SystemFilesSource(kind="system", glob=pattern, package=package)
                  for label, (pattern, package) in CODE_FILES.items()})
    return MixtureSource(kind="mixture", parts=parts)


class CodeLanguageParams(LabeledDocumentsParams):
    source: LabeledSource = Field(default_factory=offline_code_mixture,
                                  description="default: 8 languages from Python's stdlib and Debian packages")
    strip_leading_comments: bool = Field(True, description="cut each file's licence header and other leading "
                                         "comments (and a Python module docstring) before windows are placed")
    skip_first: SkipFirst = 50  # the paper's appendix B.2; its released code used 100
    sequence_length: SequenceLength = 256


class CodeLanguage(DatasetPlugin):
    """Which programming language a source file is in (one-vs-rest), by default on 8 offline code corpora."""

    Params = CodeLanguageParams
    params: CodeLanguageParams

    def build(self, tokenizer: Any) -> ProbingDataset:
        strip = (lambda text: text[code_start(text):]) if self.params.strip_leading_comments else None
        return build_labeled_sequences(tokenizer, self.params, strip)


def offline_subset_mixture() -> MixtureSource:
    return MixtureSource(kind="mixture", parts={
        "python_docstrings": StdlibSource(),
        "python_code": PythonCodeSource(kind="python_code"),
        "help_pages": SystemFilesSource(kind="system", glob="/usr/share/help/C/gnome-help/*.page",
                                        package="gnome-user-docs"),
        "html_docs": SystemFilesSource(kind="system", glob="/usr/share/doc/python3.11/html/**/*.html",
                                       package="python3.11-doc"),
    })


class DataSubsetParams(LabeledDocumentsParams):
    source: LabeledSource = Field(default_factory=offline_subset_mixture,
                                  description="default: 4 offline corpora standing in for Pile subsets")
    skip_first: SkipFirst = 25


class DataSubset(DatasetPlugin):
    """Which corpus (data subset) a document comes from, one-vs-rest; the paper used Pile subsets."""

    Params = DataSubsetParams
    params: DataSubsetParams

    def build(self, tokenizer: Any) -> ProbingDataset:
        return build_labeled_sequences(tokenizer, self.params)
