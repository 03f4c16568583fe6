"""The paper's 11 plain-text features of a token's string, labelled on the model's own tokens of a text source."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from pydantic import Field

from probekit.contracts import DatasetPlugin, PluginParams, ProbingDataset, SkippedFeature
from probekit.errors import RunError
from probekit_plugins.datasets.sampling import (
    CandidateSites,
    FeatureDraw,
    PositiveFraction,
    assemble_dataset,
    sample_balanced,
)
from probekit_plugins.datasets.text_sources import StdlibSource, TextSource, read_documents
from probekit_plugins.datasets.token_windows import TextWindow, token_windows


def _core(token: str) -> str:
    return token.lstrip()


#: feature name -> predicate on the token's string as the model sees it (its own span of the text, normalised by the
#: tokenizer, leading whitespace included when the tokenizer's span includes it, as in byte-level BPE)
TEXT_FEATURES: dict[str, Callable[[str], bool]] = {
    "leading_capital": lambda s: _core(s)[:1].isupper(),
    "no_leading_space_and_loweralpha": lambda s: not s[:1].isspace() and s[:1].isalpha() and s[:1].islower(),
    "all_digits": lambda s: _core(s).isdigit(),
    "is_not_ascii": lambda s: not s.isascii(),
    "has_leading_space": lambda s: s[:1] == " ",
    "contains_all_whitespace": lambda s: s != "" and s.isspace(),
    "all_capitals": lambda s: _core(s).isalpha() and _core(s).isupper(),
    "is_not_alphanumeric": lambda s: _core(s) != "" and not _core(s).isalnum(),
    "contains_whitespace": lambda s: any(c.isspace() for c in s),
    "contains_capital": lambda s: any(c.isupper() for c in s),
    "contains_digit": lambda s: any(c.isdigit() for c in s),
}

FeatureName = Literal[
    "leading_capital",
    "no_leading_space_and_loweralpha",
    "all_digits",
    "is_not_ascii",
    "has_leading_space",
    "contains_all_whitespace",
    "all_capitals",
    "is_not_alphanumeric",
    "contains_whitespace",
    "contains_capital",
    "contains_digit",
]


class TextFeaturesParams(PluginParams):
    source: TextSource = Field(default_factory=StdlibSource, description="where the text comes from")
    features: list[FeatureName] | None = Field(None, description="subset of the 11 features (default: all)")
    sequence_length: int = Field(128, ge=8, description="tokens per sequence, special tokens included")
    max_sequences: int = Field(400, ge=1, description="number of sequences cut from the source")
    windows_per_document: int | None = Field(
        4, ge=1, description="sequences cut from one document at most (its first ones), so they come from many "
        "documents: the split keeps each document on one side; null: as many as fit")
    max_examples: int = Field(2000, ge=10, description="probe sites sampled per feature")
    skip_first: int = Field(10, ge=0, description="positions at the start of each sequence never probed")
    min_positive_rate: float = Field(0.05, ge=0, lt=1, description="skip features rarer than this among tokens")
    positive_fraction: PositiveFraction = Field(
        (0.2, 0.5), description="sampled positive share is the natural rate clipped to [low, high]"
    )
    seed: int = Field(0, description="seed for document order and sampling")



class TextFeatures(DatasetPlugin):
    """Token-string features (capitals, digits, whitespace, ...) on the model's tokens of real text."""

    Params = TextFeaturesParams
    params: TextFeaturesParams

    def build(self, tokenizer: Any) -> ProbingDataset:
        p = self.params
        documents = read_documents(p.source, p.seed)
        windows = token_windows(tokenizer, documents, p.sequence_length, p.max_sequences, p.windows_per_document)
        if not windows:
            raise RunError("text_features: the text source yielded no text")
        sequence, position, raw, strings = eligible_tokens(windows, tokenizer, p.skip_first)
        if len(sequence) == 0:
            raise RunError(
                f"text_features: no token lies past the first {p.skip_first} positions; lower skip_first or "
                "use longer sequences"
            )

        rng = np.random.default_rng(p.seed)
        draws: list[FeatureDraw] = []
        skipped: list[SkippedFeature] = []
        for name in p.features or list(TEXT_FEATURES):
            is_positive = np.fromiter((TEXT_FEATURES[name](s) for s in strings), dtype=bool, count=len(strings))
            rate = is_positive.mean()
            if rate in (0.0, 1.0):
                varies_in_text = len({TEXT_FEATURES[name](s) for s in raw}) == 2
                skipped.append(SkippedFeature(name, "the tokenizer normalises it away (uncased or accent-stripping "
                                              "model)" if varies_in_text else "constant on this model's tokens"))
                continue
            if rate < p.min_positive_rate:
                skipped.append(SkippedFeature(name, f"only {rate:.1%} of tokens are positive "
                                                    f"(min_positive_rate {p.min_positive_rate:.0%})"))
                continue
            picked = sample_balanced(is_positive, p.max_examples, p.positive_fraction, rng)
            draws.append(FeatureDraw(name, picked, is_positive[picked]))

        document = np.asarray([w.document for w in windows], dtype=np.int64)  # windows of a document: one group
        candidates = CandidateSites(sequence, position, position + 1, document[sequence])
        return assemble_dataset([w.input_ids for w in windows], candidates, draws, "token", skipped)


def eligible_tokens(
    windows: list[TextWindow], tokenizer: Any, skip_first: int
) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """(sequence, position, raw string, model-view string) of every non-special token at position >= ``skip_first``.

    The token string is the token's own span of the window text, passed through the tokenizer's normaliser
    (lower-casing and accent stripping for uncased models), so each feature means what the model can see.
    """
    normalizer = getattr(getattr(tokenizer, "backend_tokenizer", None), "normalizer", None)
    sequence, position, raw, strings = [], [], [], []
    for index, window in enumerate(windows):
        for pos in range(skip_first, len(window.input_ids)):
            start, end = window.offsets[pos]
            if window.special[pos] or end <= start:
                continue
            text = window.text[start:end]
            sequence.append(index)
            position.append(pos)
            raw.append(text)
            strings.append(model_view(text, normalizer))
    return np.asarray(sequence, dtype=np.int64), np.asarray(position, dtype=np.int64), raw, strings


def model_view(text: str, normalizer: Any) -> str:
    """The token's text as the model sees it: normalised, without whitespace the normaliser itself added (BERT
    pads CJK characters with spaces)."""
    if normalizer is None:
        return text
    view = normalizer.normalize_str(text)
    if not text[:1].isspace():
        view = view.lstrip()
    if not text[-1:].isspace():
        view = view.rstrip()
    return view
