"""Sequence-level features from labelled documents: natural language, code language, data subset, or any labels.

Each document gives one random contiguous window of model tokens; its representation is the mean activation over
the window's real tokens after skipping the first N (the paper's released code skipped 1 for Europarl, 100 for code
files, 25 for Pile documents; its text says 50 for code). Every label becomes a one-vs-rest binary feature with
balanced sampling; a document's origin (file, page, row) is its group in the split.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np
from pydantic import Field

from probekit.contracts import DatasetPlugin, PluginParams, ProbingDataset, SkippedFeature
from probekit.errors import RunError
from probekit_plugins.datasets.code_boilerplate import code_start
from probekit_plugins.datasets.labeled_sources import (
    GnomeHelpSource,
    LabeledDocument,
    LabeledSource,
    MixtureSource,
    documents_by_label,
)
from probekit_plugins.datasets.sampling import (
    CandidateSites,
    FeatureDraw,
    PositiveFraction,
    assemble_dataset,
    sample_balanced,
)
from probekit_plugins.datasets.text_sources import PythonCodeSource, StdlibSource, SystemFilesSource

log = logging.getLogger("probekit.plugins.labeled_documents")  # under 'probekit': shown as a warning line


class LabeledDocumentsParams(PluginParams):
    source: LabeledSource = Field(description="where the labelled documents come from")
    labels: list[str] | None = Field(None, description="labels to probe (default: every label found)")
    sequence_length: int = Field(128, ge=8, description="tokens per window, special tokens included")
    skip_first: int = Field(0, ge=0, description="tokens at the start of each window left out of the mean")
    documents_per_label: int = Field(200, ge=1, description="documents read per label")
    max_examples: int = Field(2000, ge=10, description="documents sampled per feature")
    positive_fraction: PositiveFraction = Field(
        (0.1, 0.5), description="sampled positive share is the natural rate clipped to [low, high]"
    )
    seed: int = Field(0, description="seed for document choice, window placement and sampling")



class LabeledSequences(DatasetPlugin):
    """Sequence-level features from your own labelled documents (JSONL / CSV / Parquet table, or any source)."""

    Params = LabeledDocumentsParams
    params: LabeledDocumentsParams

    def build(self, tokenizer: Any) -> ProbingDataset:
        p = self.params
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
        documents = [self.prepare(document) for label_documents in grouped.values() for document in label_documents]
        if not documents:
            raise RunError("the source yielded no labelled document")

        rng = np.random.default_rng(p.seed)
        sequences, spans, kept, origins = [], [], [], []
        for document in documents:
            window = random_window(tokenizer, document, p.sequence_length, p.skip_first, rng)
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

    def prepare(self, document: LabeledDocument) -> LabeledDocument:
        """The document as windows are cut from it; subclasses strip boilerplate."""
        return document


def random_window(
    tokenizer: Any, document: LabeledDocument, length: int, skip_first: int, rng: np.random.Generator
) -> tuple[np.ndarray, int, int] | None:
    """(token ids, span start, span end) of a random window of the document, or None if nothing is left after
    ``skip_first``. The span covers the window's real (non-special) tokens except the first ``skip_first``."""
    content = length - tokenizer.num_special_tokens_to_add()
    offsets = tokenizer(document.text, add_special_tokens=False, return_offsets_mapping=True,
                        verbose=False)["offset_mapping"]
    if not offsets:
        return None
    first = int(rng.integers(0, len(offsets) - content + 1)) if len(offsets) > content else 0
    chunk = offsets[first : first + content]
    encoded = tokenizer(document.text[chunk[0][0] : chunk[-1][1]], truncation=True, max_length=length,
                        return_special_tokens_mask=True)
    real = np.flatnonzero(~np.asarray(encoded["special_tokens_mask"], dtype=bool))
    real = real[skip_first:]
    if len(real) == 0:
        return None
    return np.asarray(encoded["input_ids"], dtype=np.int64), int(real[0]), int(real[-1]) + 1


class NaturalLanguageParams(LabeledDocumentsParams):
    source: LabeledSource = Field(default_factory=lambda: GnomeHelpSource(kind="gnome_help"),
                                  description="default: GNOME help pages in 9 languages (Debian gnome-user-docs)")
    skip_first: int = Field(1, ge=0, description="tokens at the start of each window left out of the mean")


class NaturalLanguage(LabeledSequences):
    """Which natural language a text is in (one-vs-rest), by default on GNOME help pages in 9 languages."""

    Params = NaturalLanguageParams  # type: ignore[assignment]


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
    skip_first: int = Field(50, ge=0, description="tokens at the start of each window left out of the mean (the "
                            "paper's appendix B.2: 50; its released code used 100)")
    sequence_length: int = Field(256, ge=8, description="tokens per window, special tokens included")


class CodeLanguage(LabeledSequences):
    """Which programming language a source file is in (one-vs-rest), by default on 8 offline code corpora."""

    Params = CodeLanguageParams  # type: ignore[assignment]
    params: CodeLanguageParams

    def prepare(self, document: LabeledDocument) -> LabeledDocument:
        if not self.params.strip_leading_comments:
            return document
        return replace(document, text=document.text[code_start(document.text):])


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
    skip_first: int = Field(25, ge=0, description="tokens at the start of each window left out of the mean")


class DataSubset(LabeledSequences):
    """Which corpus (data subset) a document comes from, one-vs-rest; the paper used Pile subsets."""

    Params = DataSubsetParams  # type: ignore[assignment]
