"""A base for adapters built on nnsight: one trace per batch reads every requested layer's neurons, reduces them to
the probe sites inside the trace, and stops the forward pass after the last requested layer.
"""

from __future__ import annotations

import gc
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, Literal

import nnsight
import numpy as np
import torch

from probekit.contracts import AblationResult, BatchSites, ModelAdapter, TokenBatch
from probekit.sites import reduce_to_sites


class NNsightAdapter(ModelAdapter):
    """Model adapter traced with nnsight; weights load on first use.

    Subclasses say how to load the model (``load_model``), how to wrap it (``wrap``) and where a layer's neurons
    live inside a trace (``neuron_value``).
    """

    _model: torch.nn.Module | None = None
    _traced: Any = None

    @abstractmethod
    def load_model(self) -> torch.nn.Module:
        """Load the weights (called once, on first use), in eval mode on the target device."""

    @abstractmethod
    def wrap(self, model: torch.nn.Module) -> Any:
        """The nnsight wrapper used for tracing ``model``."""

    @abstractmethod
    def neuron_value(self, layer: int) -> Any:
        """Inside a trace: layer ``layer``'s neuron activations, [batch, length, d_mlp] (assignable in place)."""

    @property
    def model(self) -> torch.nn.Module:
        """The plain torch model (loaded on first access)."""
        if self._model is None:
            self._model = self.load_model()
        return self._model

    @property
    def traced(self) -> Any:
        """The nnsight wrapper of :attr:`model`."""
        if self._traced is None:
            self._traced = self.wrap(self.model)
        return self._traced

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _inputs(self, batch: TokenBatch) -> dict[str, torch.Tensor]:
        device = self.device
        inputs = {"input_ids": batch.input_ids.to(device), "attention_mask": batch.attention_mask.to(device)}
        if self.padding_side == "left":  # count positions from each row's first real token
            inputs["position_ids"] = (inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        return inputs

    def activations(self, batch: TokenBatch, layers: Sequence[int], sites: BatchSites) -> dict[int, np.ndarray]:
        """Post-nonlinearity MLP activations at ``sites`` for ``layers``, read in one traced forward pass."""
        ordered = sorted(layers)  # nnsight requires modules to be read in execution order
        inputs = self._inputs(batch)
        device = inputs["input_ids"].device
        sites = BatchSites(sites.row.to(device), sites.start.to(device), sites.end.to(device), sites.aggregation)
        with torch.inference_mode(), self.traced.trace(inputs) as tracer:
            reduced = nnsight.save([reduce_to_sites(self.neuron_value(layer), sites) for layer in ordered])
            tracer.stop()  # never compute the layers above, nor the language-model head
        # nnsight stops the forward pass with an exception whose traceback keeps the stopped pass's frames, and with
        # them its tensors (200 MB for 32 x 128 tokens of pythia-70m), in a reference cycle. Collect it now (it is
        # young: generation 0, about 0.1 ms), not at one of Python's later collections: meanwhile memory would pile up
        # batch after batch, and the next batches would fault in fresh pages.
        gc.collect(0)
        return {layer: values.float().cpu().numpy() for layer, values in zip(ordered, reduced)}

    def ablate(
        self, neurons: Sequence[tuple[int, int]], batch: TokenBatch, mode: Literal["zero", "mean"] = "zero",
        *, means: Sequence[float] | None = None,
    ) -> AblationResult:
        """Per-sequence loss with the (layer, neuron) pairs fixed to 0, or to a mean: ``means`` (one per pair) when
        given, else their mean over the batch's real tokens."""
        by_layer: dict[int, list[int]] = {}
        for layer, neuron in neurons:
            by_layer.setdefault(int(layer), []).append(int(neuron))
        if means is not None and len(means) != len(neurons):
            raise ValueError(f"ablate: {len(means)} means for {len(neurons)} neurons")
        given = {(int(layer), int(neuron)): float(mean) for (layer, neuron), mean in zip(neurons, means or [])}
        inputs = self._inputs(batch)
        mask = inputs["attention_mask"].bool()
        with torch.inference_mode():
            with self.traced.trace(inputs):
                batch_means = nnsight.save(
                    [self.neuron_value(layer)[..., by_layer[layer]][mask].mean(dim=0) for layer in sorted(by_layer)]
                )
                clean_logits = nnsight.save(self.traced.output.logits)
            replacement = dict(zip(sorted(by_layer), batch_means))
            if given:
                replacement = {layer: torch.tensor([given[layer, n] for n in by_layer[layer]]) for layer in by_layer}
            with self.traced.trace(inputs):
                for layer in sorted(by_layer):
                    value = self.neuron_value(layer)
                    value[..., by_layer[layer]] = (0.0 if mode == "zero"
                                                   else replacement[layer].to(value.device, value.dtype))
                ablated_logits = nnsight.save(self.traced.output.logits)
        ids = inputs["input_ids"]
        return AblationResult(sequence_loss(clean_logits, ids, mask), sequence_loss(ablated_logits, ids, mask))


def sequence_loss(logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """Mean next-token cross-entropy per sequence over positions whose token and successor are both real."""
    log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    nll = -log_probs.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    valid = (mask[:, :-1] & mask[:, 1:]).float()
    return ((nll * valid).sum(dim=1) / valid.sum(dim=1).clamp(min=1)).cpu().numpy()
