"""Token features from regular expressions, one feature per named pattern, on any text source: a dataset written
only against probekit.api (sources, windows, sampling and assembly are its building blocks)."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from pydantic import Field

import probekit.api as pk


class RegexTokensParams(pk.WindowParams, pk.SamplingParams):
    source: pk.TextSource = Field(default_factory=pk.StdlibSource, description="where the text comes from")
    patterns: dict[str, str] = Field({"is_number": r"\d+", "is_identifier": r"[a-z]+_[a-z_]+"}, min_length=1,
                                     description="feature name -> regular expression the token's text fully matches")
    max_sequences: int = Field(200, ge=1, description="sequences cut from the source")


class RegexTokens(pk.DatasetPlugin):
    """Token-level features: does the token's text fully match a regular expression?"""

    Params = RegexTokensParams
    params: RegexTokensParams

    def build(self, tokenizer: Any) -> pk.ProbingDataset:
        p = self.params
        frame = pk.special_frame(tokenizer)
        documents = pk.tokenize_lazily(tokenizer, pk.read_documents(p.source, p.seed))
        content = pk.content_length(tokenizer, frame, p.sequence_length)
        windows = list(pk.cut_windows(documents, content, p.max_sequences))
        tokens = [window.tokens(frame, p.skip_first) for window in windows]
        strings = [w.document.text[a:b].strip() for w, own in zip(windows, tokens) for a, b in w.document.offsets[own]]
        if not strings:
            raise pk.RunError("regex_tokens: the text source yielded no token")
        rng = np.random.default_rng(p.seed)
        draws, skipped = [], []
        for name, pattern in p.patterns.items():
            is_positive = np.array([re.fullmatch(pattern, text) is not None for text in strings])
            if is_positive.all() or not is_positive.any():
                skipped.append(pk.SkippedFeature(name, f"{int(is_positive.sum())} of {len(strings)} tokens match"))
                continue
            picked = pk.sample_balanced(is_positive, p.max_examples, p.positive_fraction, rng)
            draws.append(pk.FeatureDraw(name, picked, is_positive[picked]))
        sequences = [window.input_ids(frame) for window in windows]
        return pk.assemble_dataset(sequences, pk.window_sites(windows, frame, tokens), draws, "token", skipped)
