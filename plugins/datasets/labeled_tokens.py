"""Token-level features from your own JSONL: a text and labelled character spans per line, no plugin to write.

Each line is ``{"text": "...", "spans": [{"start": 4, "end": 9, "label": "is_name"}, ...]}``. A token is positive
for a label when its character span overlaps a span with that label; every other token is a negative.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from probekit.api import (
    DatasetPlugin,
    FeatureDraw,
    InputPath,
    PositiveShare,
    ProbingDataset,
    RunError,
    SamplingParams,
    SkippedFeature,
    WindowParams,
    assemble_dataset,
    content_length,
    cut_windows,
    jsonl_records,
    sample_balanced,
    special_frame,
    tokenize_documents,
    window_sites,
)


class LabeledTokensParams(WindowParams, SamplingParams):
    path: InputPath = Field(description="JSONL file: one text with labelled character spans per line")
    text_field: str = Field("text", description="field holding the text")
    spans_field: str = Field("spans", description="field holding the list of {start, end, label} spans")
    labels: list[str] | None = Field(None, description="labels to probe (default: every label found)")
    max_sequences: int = Field(2000, ge=1, description="sequences at most; longer texts are cut into windows")
    positive_fraction: PositiveShare = (0.1, 0.5)


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    label: str
    origin: str  # file:line


def read_labeled_spans(path: Path, text_field: str, spans_field: str) -> tuple[list[str], list[list[Span]]]:
    """Texts and their spans, validated (bounds, types) with file:line in every message."""
    texts, spans = [], []
    for where, record in jsonl_records(path):
        text = record.get(text_field)
        if not isinstance(text, str):
            raise RunError(f"{where}: no string field '{text_field}'")
        raw = record.get(spans_field, [])
        if not isinstance(raw, list):
            raise RunError(f"{where}: '{spans_field}' must be a list of {{start, end, label}}")
        own = []
        for entry in raw:
            try:
                span = Span(int(entry["start"]), int(entry["end"]), str(entry["label"]), where)
            except (KeyError, TypeError, ValueError):
                raise RunError(f"{where}: span {entry!r} needs integer 'start', 'end' and a 'label'") from None
            if not 0 <= span.start < span.end <= len(text):
                raise RunError(f"{where}: span [{span.start}, {span.end}) '{span.label}' lies outside the text "
                               f"(length {len(text)})")
            if not text[span.start : span.end].strip():
                raise RunError(f"{where}: span [{span.start}, {span.end}) '{span.label}' covers only whitespace, "
                               "so no token can carry it")
            own.append(span)
        texts.append(text)
        spans.append(own)
    if not texts:
        raise RunError(f"labeled_tokens: '{path}' holds no text")
    if not any(spans):
        raise RunError(f"labeled_tokens: '{path}' holds no labelled span (field '{spans_field}' is empty or missing "
                       "on every line), so there is nothing to probe")
    return texts, spans


class LabeledTokens(DatasetPlugin):
    """Token-level features from labelled character spans in your own JSONL."""

    Params = LabeledTokensParams
    params: LabeledTokensParams

    def build(self, tokenizer: Any) -> ProbingDataset:
        p = self.params
        texts, spans = read_labeled_spans(Path(p.path), p.text_field, p.spans_field)
        found = sorted({span.label for own in spans for span in own})
        labels = p.labels if p.labels is not None else found
        frame = special_frame(tokenizer)
        windows = list(cut_windows(tokenize_documents(tokenizer, texts), content_length(tokenizer, frame,
                                                                                     p.sequence_length),
                                   p.max_sequences))
        tokens = [window.tokens(frame, p.skip_first) for window in windows]
        token_labels = [{s.label for s in spans[window.source] if s.start < end and start < s.end}
                        for window, own in zip(windows, tokens) for start, end in window.document.offsets[own]]
        rng = np.random.default_rng(p.seed)
        draws, skipped = [], []
        for label in labels:
            is_positive = np.array([label in carried for carried in token_labels], dtype=bool)
            if label not in found or not is_positive.any():
                skipped.append(SkippedFeature(label, "no token carries this label"))
            elif is_positive.all():
                skipped.append(SkippedFeature(label, "every token carries this label: no negatives"))
            else:
                picked = sample_balanced(is_positive, p.max_examples, p.positive_fraction, rng)
                draws.append(FeatureDraw(label, picked, is_positive[picked]))
        candidates = window_sites(windows, frame, tokens)  # windows of one line (text) are one group
        return assemble_dataset([window.input_ids(frame) for window in windows], candidates, draws, "token", skipped)
