"""Neuron activations streamed over a corpus with bounded memory: every real token position, a chunk of sequences
at a time, only the inspected neurons' columns kept; and a feature's site activations, from the activation cache
when a run already extracted them.

Running summaries (:class:`RunningTop`, :class:`Reservoir`) fold the stream batch by batch, so their memory does not
grow with the corpus.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from probekit.cache import ActivationCache, CacheKey
from probekit.contracts import ModelAdapter, ProbeSites, ProbingDataset
from probekit.extraction import iter_activation_batches
from probekit.inspection.neurons import NeuronId

#: tokens per chunk of the corpus handed to the extraction engine (bounds the site arrays of one chunk)
CHUNK_TOKENS = 1 << 16


@dataclass(frozen=True)
class TokenActivations:
    """One batch of the stream: where each token is, its id, and the neurons' activations there ([tokens, neurons],
    columns in the order the neurons were given)."""

    sequence: np.ndarray
    position: np.ndarray
    token: np.ndarray
    values: np.ndarray


def special_ids(tokenizer: object) -> np.ndarray:
    return np.asarray(sorted(set(getattr(tokenizer, "all_special_ids", None) or [])), dtype=np.int64)


def stream_tokens(
    adapter: ModelAdapter,
    sequences: Sequence[np.ndarray],
    neurons: Sequence[NeuronId],
    batch_tokens: int = 4096,
    include_special: bool = False,
    on_tokens: Callable[[int], None] | None = None,
) -> Iterator[TokenActivations]:
    """The neurons' activations at every position of ``sequences`` (special tokens such as [CLS] left out unless
    ``include_special``), in batches; ``on_tokens(n)`` reports progress."""
    layers = sorted({neuron.layer for neuron in neurons})
    specials = special_ids(adapter.tokenizer)
    first = 0
    while first < len(sequences):
        last, tokens = first, 0
        while last < len(sequences) and (last == first or tokens + len(sequences[last]) <= CHUNK_TOKENS):
            tokens += len(sequences[last])
            last += 1
        chunk = [np.asarray(ids, dtype=np.int64) for ids in sequences[first:last]]
        ids = np.concatenate(chunk)
        sequence = np.repeat(np.arange(len(chunk)), [len(c) for c in chunk])
        position = np.concatenate([np.arange(len(c)) for c in chunk])
        keep = np.ones(len(ids), dtype=bool) if include_special else ~np.isin(ids, specials)
        sites = ProbeSites(sequence[keep], position[keep], position[keep] + 1)
        if len(sites):
            dataset = ProbingDataset(chunk, sites, [])
            for index, activations in iter_activation_batches(adapter, dataset, layers, batch_tokens):
                values = np.stack([activations[n.layer][:, n.index] for n in neurons], axis=1)
                yield TokenActivations(first + sites.sequence[index], sites.start[index],
                                       ids[keep][index], values.astype(np.float32))
                if on_tokens is not None:
                    on_tokens(len(index))
        first = last


def site_activations(
    adapter: ModelAdapter,
    dataset: ProbingDataset,
    neurons: Sequence[NeuronId],
    cache: ActivationCache | None,
    batch_tokens: int = 4096,
    on_sites: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, list[int]]:
    """The neurons' activations at every site of ``dataset`` ([sites, neurons]); layers the cache holds for these
    exact sites are read from it (memory-mapped), the others extracted (``on_sites(n)`` reports progress). Also
    returns the layers read from the cache."""
    shape = (len(dataset.sites), adapter.d_mlp)
    values = np.empty((len(dataset.sites), len(neurons)), dtype=np.float32)
    from_cache: list[int] = []
    missing: list[int] = []
    for layer in sorted({n.layer for n in neurons}):
        cached = None if cache is None else cache.load(
            CacheKey(adapter.identity, dataset.activation_fingerprint, layer), shape)
        if cached is None:
            missing.append(layer)
            continue
        from_cache.append(layer)
        for column, neuron in enumerate(neurons):
            if neuron.layer == layer:
                values[:, column] = cached[:, neuron.index]
    if missing:
        for index, activations in iter_activation_batches(adapter, dataset, missing, batch_tokens):
            for column, neuron in enumerate(neurons):
                if neuron.layer in activations:
                    values[index, column] = activations[neuron.layer][:, neuron.index]
            if on_sites is not None:
                on_sites(len(index))
    return values, from_cache


class RunningTop:
    """The ``size`` largest activations of each neuron seen so far, with where they were."""

    def __init__(self, n_neurons: int, size: int) -> None:
        self.size = size
        self.values = [np.zeros(0, dtype=np.float32) for _ in range(n_neurons)]
        self.sequence = [np.zeros(0, dtype=np.int64) for _ in range(n_neurons)]
        self.position = [np.zeros(0, dtype=np.int64) for _ in range(n_neurons)]

    def update(self, batch: TokenActivations) -> None:
        for column in range(len(self.values)):
            values = np.concatenate([self.values[column], batch.values[:, column]])
            sequence = np.concatenate([self.sequence[column], batch.sequence])
            position = np.concatenate([self.position[column], batch.position])
            if len(values) > self.size:  # a tie at the cut keeps the earliest tokens, wherever the batches end
                keep = np.lexsort((position, sequence, -values))[: self.size]
                values, sequence, position = values[keep], sequence[keep], position[keep]
            self.values[column], self.sequence[column], self.position[column] = values, sequence, position

    def ranked(self, column: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(values, sequence, position) of one neuron, largest first (ties by corpus order)."""
        order = np.lexsort((self.position[column], self.sequence[column], -self.values[column]))
        return self.values[column][order], self.sequence[column][order], self.position[column][order]


class Reservoir:
    """A uniform random sample of ``size`` token positions of the stream (each token drawn with the same chance,
    without replacement: the ``size`` smallest of a random key per token), with every neuron's activation there."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.rng = np.random.default_rng(seed)
        self.keys = np.zeros(0)
        self.sequence = np.zeros(0, dtype=np.int64)
        self.position = np.zeros(0, dtype=np.int64)
        self.values: np.ndarray | None = None
        self.seen = 0

    def update(self, batch: TokenActivations) -> None:
        self.seen += len(batch.values)
        keys = np.concatenate([self.keys, self.rng.random(len(batch.values))])
        sequence = np.concatenate([self.sequence, batch.sequence])
        position = np.concatenate([self.position, batch.position])
        values = batch.values if self.values is None else np.concatenate([self.values, batch.values])
        if len(keys) > self.size:
            keep = np.argpartition(keys, self.size - 1)[: self.size]
            keys, sequence, position, values = keys[keep], sequence[keep], position[keep], values[keep]
        self.keys, self.sequence, self.position, self.values = keys, sequence, position, values
