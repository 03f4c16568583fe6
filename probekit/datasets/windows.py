"""Model inputs cut from a document's own tokens: the model's special tokens around a slice of the document.

Slicing the tokens of the whole document (instead of re-tokenising a piece of its text) keeps every token exactly as
the model sees it in context, so labels computed on the document's characters stay aligned. Two shapes: consecutive
windows covering documents (:func:`cut_windows`), and one window ending at each probed span
(:func:`assemble_windows`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from probekit.contracts import Aggregation, ProbingDataset, SkippedFeature
from probekit.datasets.alignment import TokenizedDocument
from probekit.datasets.sampling import CandidateSites, FeatureDraw, assemble_dataset
from probekit.errors import RunError


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


@dataclass(frozen=True, eq=False)
class Window:
    """Tokens ``first <= t < last`` of a document, the model's special tokens around them; ``source`` numbers the
    document in reading order (the window's group: windows of one document stay on one side of the split)."""

    document: TokenizedDocument
    source: int
    first: int
    last: int

    def input_ids(self, frame: SpecialFrame) -> np.ndarray:
        """The model input: the window's tokens in ``frame``."""
        return frame.wrap(self.document.ids[self.first : self.last])

    def position(self, frame: SpecialFrame, tokens: np.ndarray) -> np.ndarray:
        """Where document tokens of this window sit in the model input."""
        return len(frame.prefix) + np.asarray(tokens, dtype=np.int64) - self.first

    def tokens(self, frame: SpecialFrame, skip_first: int = 0) -> np.ndarray:
        """The document tokens of the window that can be probed (not special, not empty) and sit at input position
        ``skip_first`` or later."""
        tokens = np.arange(self.first, self.last)
        return tokens[self.document.probeable[tokens] & (self.position(frame, tokens) >= skip_first)]


def cut_windows(documents: Iterable[TokenizedDocument], content: int, limit: int | None = None,
                per_document: int | None = None) -> Iterator[Window]:
    """Consecutive windows of at most ``content`` tokens over each document in turn (read lazily: reading stops at
    ``limit`` windows), at most ``per_document`` from one document (its first ones)."""
    if limit is not None and limit < 1:
        return
    count = 0
    for source, document in enumerate(documents):
        for first in range(0, len(document), content)[:per_document]:
            yield Window(document, source, first, min(first + content, len(document)))
            count += 1
            if count == limit:
                return  # before the next document is even read


def window_sites(windows: list[Window], frame: SpecialFrame, tokens: list[np.ndarray]) -> CandidateSites:
    """Token sites of ``windows``: for window ``i``, its document tokens ``tokens[i]``, at their input positions, each
    in its window's source group."""
    sequence = np.concatenate([np.full(len(t), i, dtype=np.int64) for i, t in enumerate(tokens)] or [np.zeros(0, int)])
    position = np.concatenate([w.position(frame, t) for w, t in zip(windows, tokens)] or [np.zeros(0, int)])
    group = np.asarray([windows[i].source for i in sequence], dtype=np.int64)
    return CandidateSites(sequence, position, position + 1, group)


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
    remapped = [FeatureDraw(d.name, np.searchsorted(used, d.candidates), d.labels, d.kinds) for d in draws]
    return assemble_dataset(sequences, windows, remapped, aggregation, skipped)
