"""One token-level feature, ``is_keyword``: is the token exactly one of a word list (Python keywords by default)?"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, model_validator

import probekit.api as pk

DEFAULT_KEYWORDS = ["def", "return", "class", "import", "if", "else", "for", "while", "None", "True", "False"]

DEFAULT_TEXTS = [
    "def add(a, b): return a + b",
    "class Stack: pass",
    "import os, sys",
    "if x is None: return False",
    "for item in items: print(item)",
    "while queue: node = queue.pop()",
    "if ready: start() else: wait()",
    "def is_empty(self): return len(self.items) == 0",
    "return True if found else False",
    "for key, value in table.items(): total += value",
    "class Parser(Base): def parse(self, text): return None",
    "import json; data = json.loads(text)",
    "while True: line = stream.readline()",
    "if not line: break",
    "def main(): return run(None)",
    "result = None if error else value",
    "class Config: debug = False",
    "for i in range(10): if i % 2: continue",
    "else: return default",
    "import numpy as np",
    "def close(self): self.open = False",
    "if count > limit: return True",
    "while running and not stopped: step()",
    "class Node: def __init__(self): self.next = None",
    "for word in words: counts[word] += 1",
    "The function returns a value when the loop ends.",
    "A class of students walked to the station.",
    "Import taxes rose while exports fell.",
]


class KeywordTokensParams(pk.SamplingParams):
    """Where the text comes from, which words count as keywords, and how many probe sites to sample."""

    texts: list[str] = Field(default_factory=lambda: list(DEFAULT_TEXTS),
                             description="inline texts (used unless 'path' is given)")
    path: pk.InputPath | None = Field(None, description="a .jsonl file (one object per line, its text under "
                                      "'text_field') or a plain-text file (one text per non-empty line); replaces "
                                      "'texts'")
    text_field: str = Field("text", description="key holding the text in each JSONL object")
    keywords: list[str] = Field(default_factory=lambda: list(DEFAULT_KEYWORDS), min_length=1,
                                description="a token is positive when its text span is exactly one of these")
    max_texts: int = Field(1000, ge=1, description="texts read at most")
    max_length: int = Field(64, ge=4, description="tokens per text, special tokens included (longer texts are cut)")
    max_examples: pk.MaxExamples = 400
    positive_fraction: pk.PositiveShare = (0.5, 0.5)

    @model_validator(mode="after")
    def _one_source(self) -> KeywordTokensParams:
        if self.path is not None and "texts" in self.model_fields_set:
            raise ValueError("give either 'texts' or 'path', not both")
        return self


class KeywordTokens(pk.DatasetPlugin):
    """Token-level 'is_keyword': is the token exactly one of a word list (Python keywords by default)?"""

    Params = KeywordTokensParams
    params: KeywordTokensParams

    def build(self, tokenizer: Any) -> pk.ProbingDataset:
        p = self.params
        texts = read_texts(Path(p.path), p.text_field, p.max_texts) if p.path is not None else p.texts[: p.max_texts]
        frame = pk.special_frame(tokenizer)
        content = pk.content_length(tokenizer, frame, p.max_length)
        windows = list(pk.cut_windows(pk.tokenize_documents(tokenizer, texts), content, per_document=1))
        tokens = [window.tokens(frame) for window in windows]
        keywords = set(p.keywords)
        labels = np.asarray([is_keyword(window.document.text, start, end, keywords)
                             for window, own in zip(windows, tokens) for start, end in window.document.offsets[own]],
                            dtype=bool)
        if min(labels.sum(), (~labels).sum()) < 5:
            raise pk.RunError(f"keyword_tokens: the texts have {labels.sum()} keyword and {(~labels).sum()} other "
                              "tokens; need at least 5 of each (add texts or keywords)")
        picked = pk.sample_balanced(labels, p.max_examples, p.positive_fraction, np.random.default_rng(p.seed))
        draws = [pk.FeatureDraw("is_keyword", picked, labels[picked])]
        sequences = [window.input_ids(frame) for window in windows]
        return pk.assemble_dataset(sequences, pk.window_sites(windows, frame, tokens), draws)


def is_keyword(text: str, start: int, end: int, keywords: set[str]) -> bool:
    """Whether ``text[start:end]`` (surrounding whitespace stripped) is a keyword and a whole word, not a word piece.

    The whole-word check keeps a keyword-shaped piece of a longer word negative (e.g. 'if' of 'x_if', or 'def' when
    a tokenizer splits 'defer' into 'def' + 'er').
    """
    span = text[start:end]
    start, end = start + len(span) - len(span.lstrip()), end - len(span) + len(span.rstrip())
    if text[start:end] not in keywords:
        return False
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    return not (before.isalnum() or before == "_" or after.isalnum() or after == "_")


def read_texts(path: Path, text_field: str, limit: int) -> list[str]:
    """Texts from a JSONL file (one object per line) or a plain-text file (one text per non-empty line)."""
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        texts = []
        for origin, record in pk.jsonl_records(path):
            if not isinstance(record.get(text_field), str):
                raise pk.RunError(f"keyword_tokens: {origin} has no string '{text_field}'")
            texts.append(record[text_field])
    else:
        texts = [line for line in pk.read_text(path).splitlines() if line.strip()]
    if not texts:
        raise pk.RunError(f"keyword_tokens: {path} holds no text")
    return texts[:limit]
