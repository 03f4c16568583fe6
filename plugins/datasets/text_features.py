"""The paper's 11 plain-text features of a token's string, labelled on the model's own tokens of a text source."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np
from pydantic import Field

from probekit.api import (
    DatasetPlugin,
    FeatureDraw,
    ProbingDataset,
    RunError,
    SamplingParams,
    SkipFirst,
    SkippedFeature,
    StdlibSource,
    TextSource,
    WindowParams,
    assemble_dataset,
    content_length,
    cut_windows,
    read_documents,
    sample_balanced,
    special_frame,
    tokenize_lazily,
    window_sites,
)


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

FeatureName = Literal[tuple(TEXT_FEATURES)]  # type: ignore[valid-type]


class TextFeaturesParams(WindowParams, SamplingParams):
    source: TextSource = Field(default_factory=StdlibSource, description="where the text comes from")
    features: list[FeatureName] | None = Field(None, description="subset of the 11 features (default: all)")
    max_sequences: int = Field(400, ge=1, description="number of sequences cut from the source")
    windows_per_document: int | None = Field(
        4, ge=1, description="sequences cut from one document at most (its first ones), so they come from many "
        "documents: the split keeps each document on one side; null: as many as fit")
    skip_first: SkipFirst = 10
    min_positive_rate: float = Field(0.05, ge=0, lt=1, description="skip features rarer than this among tokens")


class TextFeatures(DatasetPlugin):
    """Token-string features (capitals, digits, whitespace, ...) on the model's tokens of real text."""

    Params = TextFeaturesParams
    params: TextFeaturesParams

    def build(self, tokenizer: Any) -> ProbingDataset:
        p = self.params
        frame = special_frame(tokenizer)
        content = content_length(tokenizer, frame, p.sequence_length)
        windows = list(cut_windows(tokenize_lazily(tokenizer, read_documents(p.source, p.seed)), content,
                                   p.max_sequences, p.windows_per_document))
        if not windows:
            raise RunError("text_features: the text source yielded no text")
        tokens = [window.tokens(frame, p.skip_first) for window in windows]
        raw = [window.document.text[start:end] for window, own in zip(windows, tokens)
               for start, end in window.document.offsets[own]]
        if not raw:
            raise RunError(
                f"text_features: no token lies past the first {p.skip_first} positions; lower skip_first or "
                "use longer sequences"
            )
        normalizer = getattr(getattr(tokenizer, "backend_tokenizer", None), "normalizer", None)
        strings = [model_view(text, normalizer) for text in raw]

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
        candidates = window_sites(windows, frame, tokens)  # each window's document is its group
        return assemble_dataset([window.input_ids(frame) for window in windows], candidates, draws, "token", skipped)


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
