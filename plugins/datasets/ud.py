"""Part of speech, dependency relation and morphology of words (Universal Dependencies CoNLL-U, e.g. English EWT),
aligned to the model's tokens through character offsets: a token takes the labels of its first aligned word."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import Field

from probekit.api import (
    CandidateSites,
    DatasetPlugin,
    FeatureDraw,
    InputPath,
    ProbingDataset,
    RunError,
    SamplingParams,
    SequenceLength,
    SkippedFeature,
    SpecialFrame,
    TokenizedDocument,
    WindowParams,
    assemble_dataset,
    content_length,
    first_overlapping,
    sample_balanced,
    special_frame,
    tokenize_documents,
)
from probekit_plugins.datasets.conllu import Document, read_conllu_documents

Group = Literal["upos", "dep", "morph"]


class UDParams(WindowParams, SamplingParams):
    path: InputPath = Field(description="a .conllu(.gz) file, a directory of them, or a glob (e.g. UD English-EWT)")
    features: list[Group] = Field(["upos", "dep", "morph"], min_length=1,
                                  description="feature groups: upos (upos_NOUN), dep (dep_nsubj), morph (Tense_Past)")
    dep_subtypes: bool = Field(True, description="keep relation subtypes (acl:relcl); false folds them (acl)")
    morph_negatives: Literal["word_class", "same_feature", "any"] = Field(
        "word_class", description="negatives of a morphology feature: tokens of the word classes (UPOS) that carry "
        "the feature at all (Tense_Past vs other verbs and auxiliaries), tokens with another value of the same "
        "feature, or any token")
    sequence_length: SequenceLength = 512  # whole sentences of one document are packed up to this length
    max_sequences: int | None = Field(None, ge=1, description="use at most this many sequences")
    min_count: int = Field(20, ge=1, description="tokens a label needs (positives and negatives) to be a feature")



@dataclass(frozen=True)
class TokenLabels:
    """The labels of every probe-able token: its sequence and position, and its first aligned word's labels."""

    sequence: np.ndarray
    position: np.ndarray
    upos: np.ndarray  # str objects
    deprel: np.ndarray
    feats: list[dict[str, tuple[str, ...]]]


class UniversalDependencies(DatasetPlugin):
    """Part of speech, dependency relation and morphology from CoNLL-U, on the model's tokens."""

    Params = UDParams
    params: UDParams

    def build(self, tokenizer: Any) -> ProbingDataset:
        p = self.params
        frame = special_frame(tokenizer)
        content = content_length(tokenizer, frame, p.sequence_length)
        documents = list(read_conllu_documents(p.path))
        tokenized = tokenize_documents(tokenizer, [d.text for d in documents])
        sequences, labels, source = pack_documents(documents, tokenized, frame, content, p.max_sequences)
        keep = labels.position >= p.skip_first
        labels = TokenLabels(labels.sequence[keep], labels.position[keep], labels.upos[keep], labels.deprel[keep],
                             [f for f, k in zip(labels.feats, keep) if k])
        if len(labels.sequence) == 0:
            raise RunError(f"ud: no word of '{p.path}' aligns to a model token past position {p.skip_first}")

        rng = np.random.default_rng(p.seed)
        draws: list[FeatureDraw] = []
        skipped: list[SkippedFeature] = []
        for name, positive, negative in feature_masks(labels, p):
            n_positive, n_negative = int(positive.sum()), int(negative.sum())
            if min(n_positive, n_negative) < p.min_count:
                skipped.append(SkippedFeature(name, f"{n_positive} positive / {n_negative} negative tokens; "
                                                    f"min_count is {p.min_count}"))
                continue
            pool = np.flatnonzero(positive | negative)
            picked = pool[sample_balanced(positive[pool], p.max_examples, p.positive_fraction, rng)]
            draws.append(FeatureDraw(name, picked, positive[picked]))
        candidates = CandidateSites(labels.sequence, labels.position, labels.position + 1, source[labels.sequence])
        return assemble_dataset(sequences, candidates, draws, "token", skipped)


def pack_documents(
    documents: list[Document],
    tokenized: list[TokenizedDocument],
    frame: SpecialFrame,
    content: int,
    max_sequences: int | None,
) -> tuple[list[np.ndarray], TokenLabels, np.ndarray]:
    """Pack whole sentences of each document into sequences of at most ``content`` document tokens (a sentence
    longer than that is cut), and label every token aligned to a word; also the document of every sequence."""
    sequences: list[np.ndarray] = []
    source: list[int] = []
    seq, pos, upos, deprel, feats = [], [], [], [], []
    for number, (document, tokens) in enumerate(zip(documents, tokenized)):
        starts = np.asarray([w.start for w in document.words], dtype=np.int64)
        ends = np.asarray([w.end for w in document.words], dtype=np.int64)
        word_of = first_overlapping(tokens, starts, ends)
        for first, last in _packed_ranges(document, tokens, content):
            if max_sequences is not None and len(sequences) == max_sequences:
                return sequences, _labels(seq, pos, upos, deprel, feats), np.asarray(source, dtype=np.int64)
            index = len(sequences)
            sequences.append(frame.wrap(tokens.ids[first:last]))
            source.append(number)
            for token in range(first, last):
                word = int(word_of[token])
                if word < 0:
                    continue
                labels = document.words[word]
                seq.append(index)
                pos.append(len(frame.prefix) + token - first)
                upos.append(labels.upos)
                deprel.append(labels.deprel)
                feats.append(labels.feats)
    return sequences, _labels(seq, pos, upos, deprel, feats), np.asarray(source, dtype=np.int64)


def _labels(seq: list, pos: list, upos: list, deprel: list, feats: list) -> TokenLabels:
    return TokenLabels(np.asarray(seq, dtype=np.int64), np.asarray(pos, dtype=np.int64),
                       np.asarray(upos, dtype=object), np.asarray(deprel, dtype=object), feats)


def _packed_ranges(document: Document, tokens: TokenizedDocument, content: int) -> list[tuple[int, int]]:
    """Token ranges [first, last) of consecutive whole sentences, each at most ``content`` tokens."""
    if len(tokens) == 0:
        return []
    sentence_starts = np.asarray([start for start, _ in document.sentences], dtype=np.int64)
    sentence_of = np.maximum(np.searchsorted(sentence_starts, tokens.core[:, 0], side="right") - 1, 0)
    boundaries = np.flatnonzero(np.diff(sentence_of)) + 1  # first token of each later sentence
    edges = [0, *boundaries.tolist(), len(tokens)]
    ranges: list[tuple[int, int]] = []
    first = 0
    for start, end in zip(edges[:-1], edges[1:]):
        if end - first > content and start > first:  # this sentence does not fit: close the sequence before it
            ranges.append((first, start))
            first = start
        while end - first > content:  # a sentence longer than a sequence is cut
            ranges.append((first, first + content))
            first += content
    if first < len(tokens):
        ranges.append((first, len(tokens)))
    return ranges


def feature_masks(labels: TokenLabels, p: UDParams) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(feature name, positive mask, negative mask) over the labelled tokens for every requested group."""
    masks: list[tuple[str, np.ndarray, np.ndarray]] = []
    if "upos" in p.features:
        for tag in sorted(set(labels.upos)):
            positive = labels.upos == tag
            masks.append((f"upos_{tag}", positive, ~positive))
    if "dep" in p.features:
        relations = labels.deprel if p.dep_subtypes else np.asarray([r.split(":")[0] for r in labels.deprel],
                                                                    dtype=object)
        labelled = relations != "_"
        for relation in sorted(set(relations[labelled])):
            positive = relations == relation
            masks.append((f"dep_{relation}", positive, labelled & ~positive))
    if "morph" in p.features:
        classes: dict[str, set[str]] = defaultdict(set)  # feature -> UPOS tags that carry it
        values: Counter[tuple[str, str]] = Counter()
        for tag, feats in zip(labels.upos, labels.feats):
            for feature, feature_values in feats.items():
                classes[feature].add(tag)
                values.update((feature, v) for v in feature_values)
        for feature, value in sorted(values):
            positive = np.fromiter((value in f.get(feature, ()) for f in labels.feats), dtype=bool,
                                   count=len(labels.feats))
            if p.morph_negatives == "word_class":
                eligible = np.isin(labels.upos, sorted(classes[feature]))
            elif p.morph_negatives == "same_feature":
                eligible = np.fromiter((feature in f for f in labels.feats), dtype=bool, count=len(labels.feats))
            else:
                eligible = np.ones(len(labels.feats), dtype=bool)
            masks.append((f"{feature}_{value}", positive, eligible & ~positive))
    return masks
