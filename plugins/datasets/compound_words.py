"""Compound words (Gurnee et al. 2023, section 5.1): does the last token close the bigram "X Y" (e.g. "social
security"), or is it Y without X before it, or the token after an X that Y does not follow?"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from probekit.api import (
    CandidateSites,
    DatasetPlugin,
    FeatureDraw,
    ProbingDataset,
    RunError,
    SamplingParams,
    SkippedFeature,
    StdlibSource,
    TextSource,
    TokenizedDocument,
    assemble_windows,
    content_length,
    read_documents,
    sample_with_negative_pools,
    special_frame,
    tokenize_documents,
    tokens_containing,
    visible_tokens,
)

#: the paper's 21 compound words (appendix B.2, table 2), each "X Y"
PAPER_BIGRAMS = (
    "high school", "living room", "social security", "credit card", "blood pressure", "prime factors",
    "social media", "gene expression", "control group", "magnetic field", "cell lines", "trial court",
    "second derivative", "north america", "human rights", "side effects", "public health", "federal government",
    "third party", "clinical trials", "mental health",
)

#: what may separate X and Y: spaces or tabs, at most one line break (a blank line ends the phrase)
SEPARATOR = r"[^\S\n]*\n?[^\S\n]*"
WORD = re.compile(r"\w+")


class CompoundWordsParams(SamplingParams):
    source: TextSource = Field(default_factory=StdlibSource, description="where the text comes from")
    bigrams: list[str] = Field(list(PAPER_BIGRAMS), min_length=1,
                               description="compound words, each two words 'X Y' (default: the paper's 21)")
    case_sensitive: bool = Field(False, description="match X and Y with their case (default: any case)")
    window_length: int = Field(24, ge=2, description="tokens per sequence, special tokens included; the window "
                               "ends at the probed token")
    max_documents: int | None = Field(None, ge=1, description="read at most this many documents of the source")

    @field_validator("bigrams")
    @classmethod
    def _two_words(cls, bigrams: list[str]) -> list[str]:
        for bigram in bigrams:
            if len(bigram.split()) != 2:
                raise ValueError(f"{bigram!r} is not two words 'X Y'")
        if len({feature_name(b) for b in bigrams}) != len(bigrams):
            raise ValueError("bigrams must be distinct")
        return bigrams



def feature_name(bigram: str) -> str:
    """'social security' -> 'social_security'."""
    return "_".join(bigram.lower().split())


class CompoundWords(DatasetPlugin):
    """Compound words XY vs Y without X and X without Y, probed at the last token of a 24-token window."""

    Params = CompoundWordsParams
    params: CompoundWordsParams

    def build(self, tokenizer: Any) -> ProbingDataset:
        p = self.params
        frame = special_frame(tokenizer)
        content = content_length(tokenizer, frame, p.window_length)
        texts = list(_limited(read_documents(p.source, p.seed), p.max_documents))
        if not texts:
            raise RunError("compound_words: the text source yielded no text")
        flags = 0 if p.case_sensitive else re.IGNORECASE
        fold = (lambda word: word) if p.case_sensitive else str.lower
        wanted = {piece for bigram in p.bigrams for piece in WORD.findall(fold(bigram))}
        vocabularies = [wanted.intersection(map(fold, WORD.findall(t))) for t in texts]
        relevant = [i for i, v in enumerate(vocabularies) if v]
        documents = tokenize_documents(tokenizer, [texts[i] for i in relevant])
        vocabularies = [vocabularies[i] for i in relevant]

        sites = SiteIndex()
        rng = np.random.default_rng(p.seed)
        draws: list[FeatureDraw] = []
        skipped: list[SkippedFeature] = []
        for bigram in p.bigrams:
            name = feature_name(bigram)
            first, second = (set(WORD.findall(fold(word))) for word in bigram.split())
            present = [i for i, v in enumerate(vocabularies) if first <= v or second <= v]
            positives, without_first, without_second = bigram_sites(documents, present, bigram, flags, sites)
            if len(positives) == 0:
                skipped.append(SkippedFeature(name, f"'{bigram}' does not occur in the text source "
                                                    f"({len(texts)} documents)"))
                continue
            if len(without_first) + len(without_second) == 0:
                skipped.append(SkippedFeature(name, f"every occurrence of its words is the bigram '{bigram}': "
                                                    "no negatives"))
                continue
            picked, labels = sample_with_negative_pools(
                positives, [without_first, without_second], p.max_examples, p.positive_fraction, rng)
            # the classes of the paper's figure 2b: the bigram XY, X without Y (XZ), Y without X (WY); a token in both
            # pools (a Y right after an X that does not form the bigram, e.g. across a line break) is "XZ+WY"
            after_x, y_alone = np.isin(picked, without_second), np.isin(picked, without_first)
            kinds = np.where(labels, "XY", np.where(after_x & y_alone, "XZ+WY", np.where(after_x, "XZ", "WY")))
            draws.append(FeatureDraw(name, picked, labels, kinds))
        return assemble_windows(documents, frame, content, sites.candidates(), draws, "token", skipped)


def _limited(documents: Iterator[str], limit: int | None) -> Iterator[str]:
    for count, document in enumerate(documents):
        if limit is not None and count >= limit:
            return
        yield document


class SiteIndex:
    """Probed tokens (document, token) shared by every bigram, numbered in order of first use."""

    def __init__(self) -> None:
        self._index: dict[tuple[int, int], int] = {}

    def ids(self, document: int, tokens: np.ndarray) -> list[int]:
        return [self._index.setdefault((document, int(t)), len(self._index)) for t in tokens]

    def candidates(self) -> CandidateSites:
        keys = np.asarray(list(self._index), dtype=np.int64).reshape(-1, 2)
        return CandidateSites(keys[:, 0], keys[:, 1], keys[:, 1] + 1)


def bigram_sites(
    documents: list[TokenizedDocument], present: list[int], bigram: str, flags: int, sites: SiteIndex
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Site ids of the bigram's three kinds of probed token in the ``present`` documents (those holding X or Y).

    positives: the token holding the last character of Y when X comes right before it;
    without_first: the same for Y without X before it ("WY");
    without_second: the first token with a visible character after X when Y does not follow ("XW"; the paper's
    figure 2b calls it "XZ", as the features' ``kinds`` do).
    A variant of the compound (hyphenated "X-Y", plural or possessive "X Ys", "X Y's") is neither: it is the
    compound, so it never serves as a negative.
    """
    first, second = (re.escape(w) for w in bigram.split())
    x_pattern = re.compile(rf"(?<!\w){first}(?!\w)", flags)
    y_pattern = re.compile(rf"(?<!\w){second}(?!\w)", flags)
    pair = re.compile(rf"(?<!\w){first}{SEPARATOR}{second}(?!\w)", flags)
    variant = re.compile(rf"(?<!\w){first}(?:{SEPARATOR}|-){second}(?:s|es|'s|s')?(?!\w)", flags)
    kinds: tuple[list[int], list[int], list[int]] = ([], [], [])
    for index in present:
        document = documents[index]
        text = document.text
        pairs = [m.span() for m in pair.finditer(text)]
        pair_ends = [end for _, end in pairs]
        variants = [m.span() for m in variant.finditer(text)]  # the exact pairs included
        variant_starts = {start for start, _ in variants}
        y_ends = np.asarray([m.end() for m in y_pattern.finditer(text)], dtype=np.int64)
        x_matches = [m for m in x_pattern.finditer(text) if m.start() not in variant_starts]
        if len(y_ends):
            tokens = tokens_containing(document, y_ends - 1)
            is_pair = np.isin(y_ends, pair_ends)
            in_variant = np.asarray([any(start < end <= stop for start, stop in variants) for end in y_ends.tolist()],
                                    dtype=bool)
            kinds[0].extend(sites.ids(index, tokens[is_pair & (tokens >= 0)]))
            kinds[1].extend(sites.ids(index, tokens[~is_pair & ~in_variant & (tokens >= 0)]))
        if x_matches:
            x_last = tokens_containing(document, np.asarray([m.end() - 1 for m in x_matches], dtype=np.int64))
            visible = np.flatnonzero(visible_tokens(document))
            following = np.searchsorted(visible, x_last, side="right")
            valid = (x_last >= 0) & (following < len(visible))
            kinds[2].extend(sites.ids(index, visible[following[valid]]))
    return tuple(np.unique(np.asarray(k, dtype=np.int64)) for k in kinds)  # type: ignore[return-value]
