"""The extraction engine: sort sequences by length, pad them into batches of bounded size, ask the adapter for
every requested layer in one pass per batch, and hand out the activations at the dataset's probe sites.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from probekit.contracts import BatchSites, ModelAdapter, ProbingDataset, TokenBatch
from probekit.errors import RunError


def length_batches(lengths: np.ndarray, sequences: np.ndarray, batch_tokens: int) -> Iterator[np.ndarray]:
    """Split ``sequences`` (longest first) into batches whose padded size stays within ``batch_tokens``.

    A single sequence longer than the budget still gets a batch of its own.
    """
    ordered = sequences[np.argsort(-lengths[sequences], kind="stable")]
    first = 0
    while first < len(ordered):
        width = int(lengths[ordered[first]])
        size = max(1, batch_tokens // max(width, 1))
        yield ordered[first : first + size]
        first += size


def iter_activation_batches(
    adapter: ModelAdapter, dataset: ProbingDataset, layers: Sequence[int], batch_tokens: int
) -> Iterator[tuple[np.ndarray, dict[int, np.ndarray]]]:
    """Yield ``(site_indices, {layer: float32 [len(site_indices), d_mlp]})`` batch by batch."""
    sites = dataset.sites
    lengths = np.array([len(ids) for ids in dataset.sequences], dtype=np.int64)
    if len(sites) and (sites.sequence.max() >= len(lengths) or np.any(sites.end > lengths[sites.sequence])):
        raise RunError("the dataset has probe sites beyond the end of their sequence")
    order = np.argsort(sites.sequence, kind="stable")  # site indices grouped by sequence
    bounds = np.searchsorted(sites.sequence[order], np.arange(len(lengths) + 1))
    left_padding = adapter.padding_side == "left"
    pad_id = pad_token_id(adapter.tokenizer)

    for members in length_batches(lengths, np.unique(sites.sequence), batch_tokens):
        batch, offsets = pad_batch([dataset.sequences[sequence] for sequence in members], pad_id, left_padding)
        site_index, rows, shifts = [], [], []
        for row, sequence in enumerate(members):
            own_sites = order[bounds[sequence] : bounds[sequence + 1]]
            site_index.append(own_sites)
            rows.append(np.full(len(own_sites), row))
            shifts.append(np.full(len(own_sites), offsets[row]))
        index = np.concatenate(site_index)
        shift = np.concatenate(shifts)
        batch_sites = BatchSites(
            row=torch.as_tensor(np.concatenate(rows)),
            start=torch.as_tensor(sites.start[index] + shift),
            end=torch.as_tensor(sites.end[index] + shift),
            aggregation=sites.aggregation,
        )
        yield index, adapter.activations(batch, layers, batch_sites)


def pad_batch(sequences: Sequence[np.ndarray], pad_id: int, left: bool) -> tuple[TokenBatch, np.ndarray]:
    """Pad token sequences into one batch (on the left or the right); also returns each row's offset, the position
    of its first token."""
    width = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    offsets = np.zeros(len(sequences), dtype=np.int64)
    for row, ids in enumerate(sequences):
        offsets[row] = width - len(ids) if left else 0
        input_ids[row, offsets[row] : offsets[row] + len(ids)] = torch.as_tensor(np.asarray(ids, dtype=np.int64))
        attention_mask[row, offsets[row] : offsets[row] + len(ids)] = 1
    return TokenBatch(input_ids, attention_mask), offsets


def extract_activations(
    adapter: ModelAdapter,
    dataset: ProbingDataset,
    layers: Sequence[int],
    batch_tokens: int = 4096,
    on_batch: Callable[[int], None] | None = None,
) -> dict[int, np.ndarray]:
    """``{layer: float32 [n_sites, d_mlp]}`` for every site of ``dataset``, in site order, held in memory.

    ``on_batch(n_sites)`` reports progress. The sweep streams to the on-disk cache instead (probekit.cache).
    """
    output = {layer: np.empty((len(dataset.sites), adapter.d_mlp), dtype=np.float32) for layer in layers}
    for index, activations in iter_activation_batches(adapter, dataset, layers, batch_tokens):
        for layer in layers:
            output[layer][index] = activations[layer]
        if on_batch is not None:
            on_batch(len(index))
    return output


def pad_token_id(tokenizer: object) -> int:
    """The tokenizer's pad id, else its end-of-sequence id, else 0 (padded positions are masked anyway)."""
    for attribute in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, attribute, None)
        if value is not None:
            return int(value)
    return 0
