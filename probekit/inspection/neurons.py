"""Neuron ids as the results table writes them (``L1.N111``: layer 1, neuron 111), parsed and checked."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from probekit.errors import ProbekitError

_NEURON = re.compile(r"L(\d+)\.N(\d+)")


@dataclass(frozen=True, order=True)
class NeuronId:
    """One MLP neuron: its layer and its index in the layer."""

    layer: int
    index: int

    def __str__(self) -> str:
        return f"L{self.layer}.N{self.index}"


def parse_neurons(texts: Iterable[str]) -> list[NeuronId]:
    """Neuron ids from arguments such as ``L0.N787`` (several may be separated by commas, as in a results row's list
    of a k-sparse probe's neurons); duplicates are dropped, order kept."""
    neurons: list[NeuronId] = []
    for text in texts:
        for part in re.split(r"[,\s]+", text.strip().strip("[]")):
            part = part.strip("'\"")
            if not part:
                continue
            match = _NEURON.fullmatch(part)
            if match is None:
                raise ProbekitError(f"'{part}' is not a neuron id: write it as in the results table, L<layer>.N<index> "
                                    "(e.g. L0.N787)")
            neuron = NeuronId(int(match.group(1)), int(match.group(2)))
            if neuron not in neurons:
                neurons.append(neuron)
    if not neurons:
        raise ProbekitError("name at least one neuron, e.g. L0.N787")
    return neurons


def check_neurons(neurons: Iterable[NeuronId], n_layers: int, d_mlp: int, model: str) -> None:
    """Stop with the valid ranges when a neuron does not exist in the model."""
    for neuron in neurons:
        if not 0 <= neuron.layer < n_layers:
            raise ProbekitError(f"neuron {neuron}: model '{model}' has layers 0-{n_layers - 1}")
        if not 0 <= neuron.index < d_mlp:
            raise ProbekitError(f"neuron {neuron}: model '{model}' has neurons 0-{d_mlp - 1} in each layer")


def by_layer(neurons: Iterable[NeuronId]) -> dict[int, list[int]]:
    """``{layer: [neuron index, ...]}`` in layer order."""
    grouped: dict[int, list[int]] = {}
    for neuron in sorted(neurons):
        grouped.setdefault(neuron.layer, []).append(neuron.index)
    return grouped
