"""Model inputs cut from a document's own tokens: the model's special tokens around a slice of the document.

Slicing the tokens of the whole document (instead of re-tokenising a piece of its text) keeps every token exactly as
the model sees it in context, so labels computed on the document's characters stay aligned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from probekit.contracts import Aggregation, ProbingDataset, SkippedFeature
from probekit.errors import RunError
from probekit_plugins.datasets.sampling import CandidateSites, FeatureDraw, assemble_dataset
from probekit_plugins.datasets.span_alignment import TokenizedDocument


@dataclass(frozen=True)
class SpecialFrame:
    """The special tokens the model's tokenizer puts before and after a text (e.g. BERT's [CLS] ... [SEP])."""

    prefix: np.ndarray
    suffix: np.ndarray

    def wrap(self, ids: np.ndarray) -> np.ndarray:
        """``ids`` with the special tokens around them."""
        return np.concatenate([self.prefix, np.asarray(ids, dtype=np.int64), self.suffix])


def special_frame(tokenizer: Any) -> SpecialFrame:
    """Find the tokenizer's special-token frame by encoding a probe text with and without special tokens."""
    plain = list(tokenizer("a", add_special_tokens=False)["input_ids"])
    framed = list(tokenizer("a")["input_ids"])
    for first in range(len(framed) - len(plain) + 1):
        if framed[first : first + len(plain)] == plain:
            return SpecialFrame(np.asarray(framed[:first], dtype=np.int64),
                                np.asarray(framed[first + len(plain) :], dtype=np.int64))
    raise RunError("cannot tell where this tokenizer puts its special tokens (its output with special tokens does "
                   "not contain its output without them)")


def content_length(tokenizer: Any, frame: SpecialFrame, length: int) -> int:
    """Document tokens that fit in a sequence of ``length`` tokens (special tokens included)."""
    max_length = getattr(tokenizer, "model_max_length", None) or length
    if length > max_length:
        raise RunError(f"sequence length {length} exceeds the model's maximum of {max_length} tokens")
    content = length - len(frame.prefix) - len(frame.suffix)
    if content < 1:
        raise RunError(f"sequence length {length} leaves no room next to the model's special tokens")
    return content


def assemble_windows(
    documents: list[TokenizedDocument],
    frame: SpecialFrame,
    content: int,
    candidates: CandidateSites,
    draws: list[FeatureDraw],
    aggregation: Aggregation,
    skipped: list[SkippedFeature],
) -> ProbingDataset:
    """One sequence per candidate used by a draw: the document's tokens ending with the candidate's span.

    ``candidates`` here index documents (``sequence``) and document tokens (``start``/``end``); a candidate's span
    must fit in ``content`` tokens. The window holds up to ``content`` tokens ending at the span's last token. Each
    site's group is its candidate's (default: its document), so windows of one document never straddle a split.
    """
    used = (np.unique(np.concatenate([d.candidates for d in draws])) if draws
            else np.zeros(0, dtype=np.int64))
    sequences, starts, ends = [], [], []
    for index in used:
        document = documents[int(candidates.sequence[index])]
        start, end = int(candidates.start[index]), int(candidates.end[index])
        first = max(0, end - content)
        if start < first:
            raise ValueError("a probe span is longer than the window")
        sequences.append(frame.wrap(document.ids[first:end]))
        starts.append(len(frame.prefix) + start - first)
        ends.append(len(frame.prefix) + end - first)
    groups = candidates.sequence if candidates.group is None else candidates.group
    windows = CandidateSites(np.arange(len(used), dtype=np.int64), np.asarray(starts, dtype=np.int64),
                             np.asarray(ends, dtype=np.int64), np.asarray(groups, dtype=np.int64)[used])
    remapped = [FeatureDraw(d.name, np.searchsorted(used, d.candidates), d.labels) for d in draws]
    return assemble_dataset(sequences, windows, remapped, aggregation, skipped)
