"""Token-level features from your own JSONL: a text and labelled character spans per line, no plugin to write.

Each line is ``{"text": "...", "spans": [{"start": 4, "end": 9, "label": "is_name"}, ...]}``. A token is positive
for a label when its character span overlaps a span with that label; every other token is a negative.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from probekit.contracts import DatasetPlugin, InputPath, PluginParams, ProbingDataset, SkippedFeature
from probekit.errors import RunError
from probekit_plugins.datasets.sampling import (
    CandidateSites,
    FeatureDraw,
    PositiveFraction,
    assemble_dataset,
    sample_balanced,
)
from probekit_plugins.datasets.token_windows import token_windows


class LabeledTokensParams(PluginParams):
    path: InputPath = Field(description="JSONL file: one text with labelled character spans per line")
    text_field: str = Field("text", description="field holding the text")
    spans_field: str = Field("spans", description="field holding the list of {start, end, label} spans")
    labels: list[str] | None = Field(None, description="labels to probe (default: every label found)")
    sequence_length: int = Field(128, ge=8, description="tokens per sequence; longer texts are cut into windows")
    max_sequences: int = Field(2000, ge=1, description="sequences at most")
    skip_first: int = Field(0, ge=0, description="positions at the start of each sequence never probed")
    max_examples: int = Field(2000, ge=10, description="tokens sampled per feature")
    positive_fraction: PositiveFraction = Field(
        (0.1, 0.5), description="sampled positive share is the natural rate clipped to [low, high]"
    )
    seed: int = Field(0, description="seed for sampling")



@dataclass(frozen=True)
class Span:
    start: int
    end: int
    label: str
    origin: str  # file:line


def read_labeled_spans(path: Path, text_field: str, spans_field: str) -> tuple[list[str], list[list[Span]]]:
    """Texts and their spans, validated (bounds, types) with file:line in every message."""
    if not path.is_file():
        raise RunError(f"labeled_tokens: no such file '{path}'")
    texts, spans = [], []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise RunError(f"{where}: not valid JSON ({error.msg})") from None
            text = record.get(text_field) if isinstance(record, dict) else None
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
        windows = token_windows(tokenizer, texts, p.sequence_length, p.max_sequences)

        sequence, position, token_labels = [], [], []
        for index, window in enumerate(windows):
            own = spans[window.document]
            for pos in range(p.skip_first, len(window.input_ids)):
                start, end = window.offsets[pos] + window.start_char
                if window.special[pos] or end <= start:
                    continue
                sequence.append(index)
                position.append(pos)
                token_labels.append({s.label for s in own if s.start < end and start < s.end})
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
        position_array = np.asarray(position, dtype=np.int64)
        document = np.asarray([w.document for w in windows], dtype=np.int64)  # windows of a line: one group
        sequence_array = np.asarray(sequence, dtype=np.int64)
        candidates = CandidateSites(sequence_array, position_array, position_array + 1, document[sequence_array])
        return assemble_dataset([w.input_ids for w in windows], candidates, draws, "token", skipped)
