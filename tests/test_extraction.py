"""The extraction engine against plain PyTorch forward hooks on the real MiniLM."""

from __future__ import annotations

import gc

import numpy as np
import pytest
import torch

from probekit.contracts import ProbeSites, ProbingDataset
from probekit.extraction import extract_activations

TEXTS = [
    "The quick brown fox jumps over the lazy dog 42 times.",
    "Short one.",
    "Sparse probing finds neurons that encode features in language models, one layer at a time.",
]


def hooked_activations(model: torch.nn.Module, input_ids: torch.Tensor, mask: torch.Tensor) -> dict[int, torch.Tensor]:
    """Every layer's intermediate GELU output for a padded batch, read with plain forward hooks.

    Positions count from each row's first real token, so left padding does not shift them.
    """
    captured: dict[int, torch.Tensor] = {}
    handles = [
        layer.intermediate.intermediate_act_fn.register_forward_hook(
            lambda module, args, output, index=index: captured.__setitem__(index, output.detach().clone())
        )
        for index, layer in enumerate(model.encoder.layer)
    ]
    try:
        with torch.inference_mode():
            model(input_ids=input_ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0))
    finally:
        for handle in handles:
            handle.remove()
    return captured


def padded(sequences: list[np.ndarray], pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    offsets = []
    for row, sequence in enumerate(sequences):
        offset = width - len(sequence) if left else 0
        ids[row, offset : offset + len(sequence)] = torch.as_tensor(sequence)
        mask[row, offset : offset + len(sequence)] = 1
        offsets.append(offset)
    return ids, mask, offsets


@pytest.fixture
def sequences(minilm) -> list[np.ndarray]:
    return [np.asarray(minilm.tokenizer(text)["input_ids"]) for text in TEXTS]


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_token_sites_equal_plain_hooks_exactly(minilm, sequences, padding_side, monkeypatch) -> None:
    monkeypatch.setattr(minilm, "padding_side", padding_side)
    sites = ProbeSites([0, 0, 1, 2, 2], [1, 5, 2, 3, 10], [2, 6, 3, 4, 11], "token")
    dataset = ProbingDataset(sequences, sites, [])
    layers = [0, 3, 5]
    engine = extract_activations(minilm, dataset, layers, batch_tokens=8 * 64)

    # the engine sorts sequences by length (longest first) into one batch; rebuild that batch by hand
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    ids, mask, offsets = padded([sequences[i] for i in order], minilm.tokenizer.pad_token_id, padding_side == "left")
    reference = hooked_activations(minilm.model, ids, mask)
    for site in range(len(sites)):
        row = order.index(int(sites.sequence[site]))
        position = int(sites.start[site]) + offsets[row]
        for layer in layers:
            np.testing.assert_array_equal(engine[layer][site], reference[layer][row, position].numpy())


def test_mean_max_last_spans_match_unpadded_forward(minilm, sequences) -> None:
    """Span reductions over right-padded batches equal the same reduction of each sequence run alone."""
    starts, ends = [1, 2, 4], [len(s) - 1 for s in sequences]
    for aggregation in ("mean", "max", "last"):
        sites = ProbeSites([0, 1, 2], starts, ends, aggregation)
        engine = extract_activations(minilm, ProbingDataset(sequences, sites, []), [2], batch_tokens=2 * 40)
        for site, sequence in enumerate(sequences):
            alone = hooked_activations(minilm.model, torch.as_tensor(sequence)[None],
                                       torch.ones(1, len(sequence), dtype=torch.long))[2][0]
            span = alone[starts[site] : ends[site]]
            expected = {"mean": span.mean(0), "max": span.amax(0), "last": span[-1]}[aggregation]
            np.testing.assert_allclose(engine[2][site], expected.numpy(), atol=2e-5, rtol=1e-5)


def test_batching_does_not_change_results(minilm, sequences) -> None:
    sites = ProbeSites([0, 1, 2], [3, 2, 7], [4, 3, 8], "token")
    dataset = ProbingDataset(sequences, sites, [])
    one_by_one = extract_activations(minilm, dataset, [1], batch_tokens=1)[1]
    together = extract_activations(minilm, dataset, [1], batch_tokens=3 * 64)[1]
    np.testing.assert_allclose(one_by_one, together, atol=2e-5)
    assert one_by_one.shape == (3, minilm.d_mlp) and one_by_one.dtype == np.float32


def test_each_stopped_forward_pass_is_freed_at_once(minilm, sequences) -> None:
    """``tracer.stop()`` leaves the stopped pass's frames, and its tensors, in a reference cycle; the adapter collects
    it batch by batch, so it is gone even with Python's automatic collection off."""

    def neuron_tensors_alive() -> int:
        # type(), not isinstance(): isinstance asks every object for __class__, and torch's deprecated ones warn
        tensors = (value for value in gc.get_objects() if type(value) is torch.Tensor)
        return sum(tensor.dim() == 3 and tensor.shape[-1] == minilm.d_mlp for tensor in tensors)

    sites = ProbeSites([0, 1, 2], [3, 2, 7], [4, 3, 8], "token")
    gc.collect()
    before = neuron_tensors_alive()
    gc.disable()
    try:
        extract_activations(minilm, ProbingDataset(sequences, sites, []), [1], batch_tokens=1)
        assert neuron_tensors_alive() == before
    finally:
        gc.enable()
