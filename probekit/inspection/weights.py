"""Weight statistics of every neuron of some layers (the paper's figure 2c and figure 8): input weight norm
``||W_in[n]||``, input bias ``b_in[n]``, their product (large norms with large negative biases are the fingerprint
of superposition in early layers) and output norm ``||W_out[:, n]||``; inspected neurons placed in their layer's
distribution (the share of the layer's neurons at or below them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from probekit.contracts import ModelAdapter
from probekit.errors import ProbekitError
from probekit.figures import new_figure
from probekit.inspection.neurons import NeuronId
from probekit.inspection.output import Inspection

STATISTICS = ("input_norm", "input_bias", "norm_times_bias", "output_norm")


def layer_statistics(adapter: ModelAdapter, layer: int) -> dict[str, np.ndarray | None]:
    """The four statistics of each neuron of ``layer`` (bias and product None when the MLP has no input bias)."""
    try:
        weights = adapter.weights(layer)
    except NotImplementedError as error:
        raise ProbekitError(f"weights needs an adapter that exposes its MLP weights: {error}") from None
    W_in = np.asarray(weights.W_in, dtype=np.float64)
    input_norm = np.linalg.norm(W_in, axis=1)
    bias = None if weights.b_in is None else np.asarray(weights.b_in, dtype=np.float64)
    return {"input_norm": input_norm, "input_bias": bias,
            "norm_times_bias": None if bias is None else input_norm * bias,
            "output_norm": np.linalg.norm(np.asarray(weights.W_out, dtype=np.float64), axis=0)}


def weights(adapter: ModelAdapter, layers: Sequence[int], neurons: Sequence[NeuronId] = ()) -> Inspection:
    """Per-neuron statistics of ``layers`` (saved for every neuron), per-layer quantiles, and the ``neurons``'
    values with their percentile in their layer."""
    layers = sorted(set(layers) | {n.layer for n in neurons})
    every, summary, placed = [], [], []
    product_by_layer: dict[int, np.ndarray] = {}
    for layer in layers:
        stats = layer_statistics(adapter, layer)
        present = {name: values for name, values in stats.items() if values is not None}
        size = len(stats["input_norm"])  # type: ignore[arg-type]
        every += [{"layer": layer, "neuron": index, **{name: float(values[index]) for name, values in present.items()}}
                  for index in range(size)]
        for name, values in present.items():
            q = np.quantile(values, [0.01, 0.1, 0.5, 0.9, 0.99])
            summary.append({"layer": layer, "statistic": name, "mean": float(values.mean()), "q01": float(q[0]),
                            "q10": float(q[1]), "median": float(q[2]), "q90": float(q[3]), "q99": float(q[4])})
        if "norm_times_bias" in present:
            product_by_layer[layer] = present["norm_times_bias"]
        for neuron in neurons:
            if neuron.layer == layer:
                row: dict[str, Any] = {"neuron": str(neuron)}
                for name, values in present.items():
                    row[name] = float(values[neuron.index])
                    row[f"{name}_percentile"] = float(100 * np.mean(values <= values[neuron.index]))
                placed.append(row)
    tables = {"layers": pa.Table.from_pylist(summary), "neurons": pa.Table.from_pylist(every)}
    if placed:
        tables = {"inspected": pa.Table.from_pylist(placed), **tables}
    notes = [] if product_by_layer else ["the MLP has no input bias: the norm x bias fingerprint is undefined"]
    description = {"layers": layers, "neurons": [str(n) for n in neurons], "statistics": list(STATISTICS)}
    return Inspection("weights", tables, description, _figure(product_by_layer, every, neurons), notes)


def _figure(product_by_layer: dict[int, np.ndarray], every: list[dict[str, Any]], neurons: Sequence[NeuronId]) -> Any:
    figure, axes = new_figure(1, 2, width=6.0, height=4.0)
    ax = axes[0, 0]
    if product_by_layer:
        layers = sorted(product_by_layer)
        ax.violinplot([product_by_layer[layer] for layer in layers], positions=layers, showmedians=True)
        for neuron in neurons:
            if neuron.layer in product_by_layer:
                ax.scatter([neuron.layer], [product_by_layer[neuron.layer][neuron.index]], color="tab:red",
                           zorder=3)
                ax.annotate(str(neuron), (neuron.layer, product_by_layer[neuron.layer][neuron.index]),
                            fontsize="small")
        ax.set_xlabel("layer")
        ax.set_ylabel("||W_in[n]|| x b_in[n]")
        ax.set_title("superposition fingerprint per layer")
    ax = axes[0, 1]
    ax.scatter([r["input_norm"] for r in every], [r.get("input_bias", 0.0) for r in every],
               c=[r["layer"] for r in every], s=2, cmap="viridis")
    ax.set_xlabel("input weight norm")
    ax.set_ylabel("input bias")
    ax.set_title("every neuron (colour: layer)")
    return figure
