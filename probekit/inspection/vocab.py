"""Activation per vocabulary token (the paper's figure 5a): count, mean, min and max of each neuron's activation
over every occurrence of each token of a corpus, folded batch by batch into running sums (memory: a few arrays of
the vocabulary's size). Optionally split by a feature's label of the text around each token (figure 3, middle:
``return`` in Go against ``return`` in Python): the same token's mean activation inside positive and negative
spans."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from probekit.contracts import Feature, ModelAdapter, ProbingDataset
from probekit.errors import ProbekitError
from probekit.figures import new_figure
from probekit.inspection.neurons import NeuronId
from probekit.inspection.output import Inspection
from probekit.inspection.stream import stream_tokens

#: label of a token outside every span of the split feature
UNLABELLED = -1


class TokenSums:
    """Running count, sum, min and max per (vocabulary token, neuron), and per class of a label when given."""

    def __init__(self, vocab: int, n_neurons: int, n_classes: int = 1) -> None:
        self.count = np.zeros((n_classes, vocab), dtype=np.int64)
        self.total = np.zeros((n_classes, vocab, n_neurons), dtype=np.float64)
        self.low = np.full((vocab, n_neurons), np.inf)
        self.high = np.full((vocab, n_neurons), -np.inf)

    def add(self, tokens: np.ndarray, values: np.ndarray, classes: np.ndarray | None = None) -> None:
        classes = np.zeros(len(tokens), dtype=np.int64) if classes is None else classes
        np.add.at(self.count, (classes, tokens), 1)
        np.add.at(self.total, (classes, tokens), values)
        np.minimum.at(self.low, tokens, values)
        np.maximum.at(self.high, tokens, values)


def vocab(
    adapter: ModelAdapter,
    sequences: Sequence[np.ndarray],
    neurons: Sequence[NeuronId],
    min_count: int = 5,
    top: int = 20,
    split: tuple[ProbingDataset, Feature] | None = None,
    batch_tokens: int = 4096,
    on_tokens: Callable[[int], None] | None = None,
) -> Inspection:
    """Per-token statistics of each neuron over ``sequences``; tokens seen fewer than ``min_count`` times are left
    out of the rankings (not of the saved table). With ``split`` (the dataset the sequences come from and one of its
    features), each token is also counted by the label of the feature's site spanning it."""
    size = max(len(adapter.tokenizer), max(int(np.max(ids)) for ids in sequences) + 1)
    span_labels = _span_labels(split, sequences) if split is not None else None
    starts = np.cumsum([0] + [len(ids) for ids in sequences])
    sums = TokenSums(size, len(neurons), 3 if split is not None else 1)
    for batch in stream_tokens(adapter, sequences, neurons, batch_tokens, on_tokens=on_tokens):
        classes = None
        if span_labels is not None:  # 0: outside every span, 1: negative span, 2: positive span
            classes = span_labels[starts[batch.sequence] + batch.position] + 1
        sums.add(batch.token, batch.values, classes)

    count = sums.count.sum(axis=0)
    seen = np.flatnonzero(count)
    if len(seen) == 0:
        raise ProbekitError("the corpus holds no token to read (only special tokens?)")
    mean = sums.total.sum(axis=0)[seen] / count[seen, None]
    texts = [adapter.tokenizer.decode([int(t)]) for t in seen]
    rows, ranked = [], []
    for column, neuron in enumerate(neurons):
        for i, token in enumerate(seen):
            rows.append({"neuron": str(neuron), "token_id": int(token), "token": texts[i], "count": int(count[token]),
                         "mean": float(mean[i, column]), "min": float(sums.low[token, column]),
                         "max": float(sums.high[token, column])})
        frequent = np.flatnonzero(count[seen] >= min_count)
        order = frequent[np.argsort(-mean[frequent, column], kind="stable")]
        for end, chosen in (("top", order[:top]), ("bottom", order[::-1][:top])):
            ranked += [{"neuron": str(neuron), "end": end, "rank": r, "token": texts[i], "count": int(count[seen[i]]),
                        "mean": float(mean[i, column]), "max": float(sums.high[seen[i], column])}
                       for r, i in enumerate(chosen, start=1)]
    tables = {"ranked": pa.Table.from_pylist(ranked), "tokens": pa.Table.from_pylist(rows)}
    description: dict[str, Any] = {"neurons": [str(n) for n in neurons], "tokens": int(count.sum()),
                                   "distinct_tokens": len(seen), "min_count": min_count, "top": top}
    split_rows: list[dict[str, Any]] = []
    if split is not None:
        split_rows = _split_table(sums, neurons, min_count, adapter.tokenizer)
        tables["split"] = pa.Table.from_pylist(split_rows)
        description["split_feature"] = split[1].name
    return Inspection("vocab", tables, description, _figure(neurons, ranked, split_rows))


def _span_labels(split: tuple[ProbingDataset, Feature], sequences: Sequence[np.ndarray]) -> np.ndarray:
    """Per position of the concatenated sequences: the label of the feature's site covering it (1 / 0), else
    ``UNLABELLED``; a position that sites of both labels cover stays unlabelled."""
    dataset, feature = split
    if len(sequences) != len(dataset.sequences):
        raise ProbekitError("--split-by needs the dataset's own sequences as the corpus (not --text)")
    positive = [np.zeros(len(ids), dtype=bool) for ids in sequences]
    negative = [np.zeros(len(ids), dtype=bool) for ids in sequences]
    sites = dataset.sites
    for site, label in zip(feature.sites, feature.labels):
        target = positive if label else negative
        target[int(sites.sequence[site])][int(sites.start[site]) : int(sites.end[site])] = True
    is_positive, is_negative = np.concatenate(positive), np.concatenate(negative)
    return np.where(is_positive & ~is_negative, 1, np.where(is_negative & ~is_positive, 0, UNLABELLED))


def _split_table(sums: TokenSums, neurons: Sequence[NeuronId], min_count: int, tokenizer: Any) -> list[dict[str, Any]]:
    """Tokens seen ``min_count`` times both in positive and in negative spans, by the difference of their means."""
    negative, positive = sums.count[1], sums.count[2]
    both = np.flatnonzero((negative >= min_count) & (positive >= min_count))
    rows = []
    for column, neuron in enumerate(neurons):
        mean_positive = sums.total[2, both, column] / positive[both]
        mean_negative = sums.total[1, both, column] / negative[both]
        for i in np.argsort(-(mean_positive - mean_negative), kind="stable"):
            token = int(both[i])
            rows.append({"neuron": str(neuron), "token": tokenizer.decode([token]), "token_id": token,
                         "count_positive": int(positive[token]), "mean_positive": float(mean_positive[i]),
                         "count_negative": int(negative[token]), "mean_negative": float(mean_negative[i]),
                         "difference": float(mean_positive[i] - mean_negative[i])})
    return rows


def _figure(neurons: Sequence[NeuronId], ranked: list[dict[str, Any]], split_rows: list[dict[str, Any]]) -> Any:
    columns = 2 if split_rows else 1
    figure, axes = new_figure(len(neurons), columns, height=4.5)
    for row, neuron in enumerate(neurons):
        own = [r for r in ranked if r["neuron"] == str(neuron)]
        shown = [r for r in own if r["end"] == "top"][:10] + [r for r in own if r["end"] == "bottom"][:10][::-1]
        ax = axes[row, 0]
        ax.barh([f"{r['token']!r}" for r in shown][::-1], [r["mean"] for r in shown][::-1],
                color=["tab:blue" if r["end"] == "top" else "tab:red" for r in shown][::-1])
        ax.set_title(f"{neuron}: mean activation per token (top and bottom)")
        ax.set_xlabel("mean activation")
        if split_rows:
            ax = axes[row, 1]
            rows = [r for r in split_rows if r["neuron"] == str(neuron)]
            ax.scatter([r["mean_negative"] for r in rows], [r["mean_positive"] for r in rows], s=8)
            for r in rows[:5] + rows[-3:]:
                ax.annotate(repr(r["token"]), (r["mean_negative"], r["mean_positive"]), fontsize="small")
            ax.set_xlabel("mean activation in negative spans")
            ax.set_ylabel("mean activation in positive spans")
            ax.set_title(f"{neuron}: the same token by the feature's label")
    return figure
