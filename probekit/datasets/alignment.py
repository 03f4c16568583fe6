"""Character spans of a document aligned to the model's own tokens through the tokenizer's offsets.

Labels are defined on characters (a word, a name, a LaTeX containment); a token gets a label from the characters it
covers. A token's *core* is its span without surrounding whitespace, so byte-level BPE tokens that carry their
leading space (" security") and WordPiece tokens that carry none ("security", "##ity") are treated alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TokenizedDocument:
    """A document's model tokens, special tokens not added: ids, character spans and core spans.

    ``probeable`` is false for special tokens the text spells literally (e.g. "<|endoftext|>", BERT's [UNK]) and for
    tokens with an empty span: such tokens are never probe sites.
    """

    text: str
    ids: np.ndarray  # int64 [n]
    offsets: np.ndarray  # int64 [n, 2]
    core: np.ndarray  # int64 [n, 2]: span without leading/trailing whitespace (whole span if all whitespace)
    probeable: np.ndarray  # bool [n]

    def __len__(self) -> int:
        return len(self.ids)


def tokenize_documents(tokenizer: Any, texts: Sequence[str]) -> list[TokenizedDocument]:
    """Tokenise whole documents once (no special tokens added), keeping every token's character span."""
    if not texts:
        return []
    encoded = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    special_ids = np.asarray(sorted(set(getattr(tokenizer, "all_special_ids", []) or [])), dtype=np.int64)
    documents = []
    for text, ids, offsets in zip(texts, encoded["input_ids"], encoded["offset_mapping"]):
        ids = np.asarray(ids, dtype=np.int64)
        spans = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
        probeable = ~np.isin(ids, special_ids) & (spans[:, 1] > spans[:, 0])
        documents.append(TokenizedDocument(text, ids, spans, core_spans(text, spans), probeable))
    return documents


def tokenize_lazily(tokenizer: Any, texts: Iterable[str]) -> Iterator[TokenizedDocument]:
    """:func:`tokenize_documents` one text at a time, as they are needed (a large source is read only as far as a
    consumer such as ``cut_windows`` gets)."""
    for text in texts:
        yield from tokenize_documents(tokenizer, [text])


@cache
def _whitespace_codes() -> np.ndarray:
    return np.asarray([code for code in range(0x3100) if chr(code).isspace()], dtype=np.uint32)


def whitespace_mask(text: str) -> np.ndarray:
    """Boolean mask of the whitespace characters of ``text`` (``str.isspace``)."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    return np.isin(codes, _whitespace_codes())


def core_spans(text: str, spans: np.ndarray) -> np.ndarray:
    """Each span trimmed of leading and trailing whitespace; a span of only whitespace is kept whole."""
    if len(spans) == 0:
        return spans.copy()
    solid = np.flatnonzero(~whitespace_mask(text))  # sorted positions of non-whitespace characters
    start, end = spans[:, 0], spans[:, 1]
    first = np.searchsorted(solid, start, side="left")  # first solid character at or after start
    last = np.searchsorted(solid, end, side="left") - 1  # last solid character before end
    core_start = np.where(first < len(solid), solid[np.minimum(first, len(solid) - 1)], end)
    core_end = np.where(last >= 0, solid[np.maximum(last, 0)] + 1, start)
    has_core = core_start < end
    return np.stack([np.where(has_core, core_start, start), np.where(has_core, core_end, end)], axis=1)


INSIDE, OUTSIDE, STRADDLES = 1, 0, -1


def mask_labels(document: TokenizedDocument, mask: np.ndarray) -> np.ndarray:
    """Label tokens by a character mask: INSIDE (1) when every character of the token's core lies in the mask,
    OUTSIDE (0) when none does, STRADDLES (-1) otherwise (e.g. a token "_{a" holding a delimiter and content).

    Tokens that are not probeable are labelled STRADDLES, so they are never positives nor negatives.
    """
    counts = np.concatenate([[0], np.cumsum(mask, dtype=np.int64)])
    start, end = document.core[:, 0], document.core[:, 1]
    inside = counts[end] - counts[start]
    labels = np.where(inside == end - start, INSIDE, np.where(inside == 0, OUTSIDE, STRADDLES)).astype(np.int8)
    labels[~document.probeable] = STRADDLES
    return labels


def tokens_overlapping(document: TokenizedDocument, start: int, end: int) -> np.ndarray:
    """Indices (ascending) of the tokens whose core overlaps characters ``start <= c < end``."""
    core = document.core
    reach = np.maximum.accumulate(core[:, 1]) if len(core) else core[:, 1]  # non-decreasing by construction
    first = int(np.searchsorted(reach, start, side="right"))
    last = int(np.searchsorted(core[:, 0], end, side="left"))  # token spans start in order
    candidates = np.arange(first, max(first, last))
    keep = (core[candidates, 1] > start) & (core[candidates, 0] < end) & (core[candidates, 1] > core[candidates, 0])
    return candidates[keep]


def first_overlapping(document: TokenizedDocument, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """For every token, the index of the first span (``starts``/``ends`` sorted, non-overlapping or repeated) that
    overlaps its core, or -1: a token takes the labels of its first aligned word."""
    core_start, core_end = document.core[:, 0], document.core[:, 1]
    index = np.searchsorted(ends, core_start, side="right")  # first span ending after the token's core starts
    clipped = np.minimum(index, len(starts) - 1) if len(starts) else index
    found = (index < len(starts)) & (core_end > core_start)
    if len(starts):
        found &= starts[clipped] < core_end
    return np.where(found & document.probeable, index, -1)


def tokens_containing(document: TokenizedDocument, chars: np.ndarray) -> np.ndarray:
    """For each character position, the index of the token whose core contains it, or -1 (whitespace between
    tokens, or a token that is not probeable)."""
    chars = np.asarray(chars, dtype=np.int64)
    core = document.core
    index = np.searchsorted(core[:, 0], chars, side="right") - 1  # last token whose core starts at or before
    clipped = np.maximum(index, 0)
    found = (index >= 0) & (core[clipped, 1] > chars) & document.probeable[clipped] if len(core) else index >= 0
    return np.where(found, index, -1)


def visible_tokens(document: TokenizedDocument) -> np.ndarray:
    """Probe-able tokens with at least one non-whitespace character."""
    blank = np.concatenate([[0], np.cumsum(whitespace_mask(document.text), dtype=np.int64)])
    start, end = document.core[:, 0], document.core[:, 1]
    return document.probeable & (blank[end] - blank[start] < end - start)
