"""Cut documents into windows of at most ``length`` model tokens, keeping each token's character span."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from probekit.errors import RunError


@dataclass(frozen=True)
class TextWindow:
    """One model input: its text, token ids (special tokens included), character spans and special-token mask."""

    text: str
    input_ids: np.ndarray
    offsets: np.ndarray  # [n_tokens, 2] character spans into ``text``; (0, 0) for special tokens
    special: np.ndarray  # bool [n_tokens]
    document: int = 0  # index of the source document
    start_char: int = 0  # where ``text`` starts in that document


def token_windows(tokenizer: Any, documents: Iterable[str], length: int, limit: int,
                  per_document: int | None = None) -> list[TextWindow]:
    """Up to ``limit`` windows of at most ``length`` tokens each, in document order, at most ``per_document`` from
    each document (its first ones; None: all), so the windows come from many sources.

    Each document is tokenised once to find window boundaries on token edges; every window's text is then
    tokenised on its own with the model's special tokens, so ids and offsets are exactly what the model sees.
    """
    max_length = getattr(tokenizer, "model_max_length", None) or length
    if length > max_length:
        raise RunError(f"sequence length {length} exceeds the model's maximum of {max_length} tokens")
    content = length - tokenizer.num_special_tokens_to_add()
    if content < 1:
        raise RunError(f"sequence length {length} leaves no room next to the model's special tokens")
    windows: list[TextWindow] = []
    for number, document in enumerate(documents):
        spans = tokenizer(document, add_special_tokens=False, return_offsets_mapping=True, verbose=False)[
            "offset_mapping"
        ]
        for first in range(0, len(spans), content)[:per_document]:
            chunk = spans[first : first + content]
            text = document[chunk[0][0] : chunk[-1][1]]
            encoded = tokenizer(
                text,
                truncation=True,
                max_length=length,
                return_offsets_mapping=True,
                return_special_tokens_mask=True,
            )
            windows.append(
                TextWindow(
                    text=text,
                    input_ids=np.asarray(encoded["input_ids"], dtype=np.int64),
                    offsets=np.asarray(encoded["offset_mapping"], dtype=np.int64).reshape(-1, 2),
                    special=np.asarray(encoded["special_tokens_mask"], dtype=bool),
                    document=number,
                    start_char=chunk[0][0],
                )
            )
            if len(windows) == limit:
                return windows
    return windows
