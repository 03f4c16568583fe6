"""Where each Hugging Face model family keeps its MLP neurons and weights.

A neuron is the post-nonlinearity MLP activation: the output of the activation module for classic MLPs
(GPT-NeoX / Pythia, GPT-2, BERT family), and the input of ``down_proj`` for gated MLPs (Llama, Mistral, Qwen), i.e.
``act(gate(x)) * up(x)``. Module paths are relative to the loaded model (``AutoModelForCausalLM`` for decoders,
``AutoModel`` for encoders) and contain ``{layer}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Architecture:
    """Module paths of one family's neurons and MLP weights."""

    neurons: str
    read: Literal["output", "input"]
    causal: bool
    mlp_in: str | None = None  # Linear producing the pre-activations (the up projection of a gated MLP)
    mlp_out: str | None = None  # Linear reading the neurons
    gate: str | None = None  # gated MLPs: the gate projection
    conv1d: bool = False  # GPT-2 stores its projections as Conv1D, i.e. transposed Linear weights
    final_norm: str | None = None  # causal models: the norm before the unembedding
    final_norm_centered: bool = True  # LayerNorm subtracts the mean; RMSNorm does not


_BERT = Architecture(
    neurons="encoder.layer.{layer}.intermediate.intermediate_act_fn",
    read="output",
    causal=False,
    mlp_in="encoder.layer.{layer}.intermediate.dense",
    mlp_out="encoder.layer.{layer}.output.dense",
)
_GATED = Architecture(
    neurons="model.layers.{layer}.mlp.down_proj",
    read="input",
    causal=True,
    mlp_in="model.layers.{layer}.mlp.up_proj",
    mlp_out="model.layers.{layer}.mlp.down_proj",
    gate="model.layers.{layer}.mlp.gate_proj",
    final_norm="model.norm",
    final_norm_centered=False,
)

#: config.model_type -> architecture
ARCHITECTURES: dict[str, Architecture] = {
    "gpt_neox": Architecture(
        neurons="gpt_neox.layers.{layer}.mlp.act",
        read="output",
        causal=True,
        mlp_in="gpt_neox.layers.{layer}.mlp.dense_h_to_4h",
        mlp_out="gpt_neox.layers.{layer}.mlp.dense_4h_to_h",
        final_norm="gpt_neox.final_layer_norm",
    ),
    "gpt2": Architecture(
        neurons="transformer.h.{layer}.mlp.act",
        read="output",
        causal=True,
        mlp_in="transformer.h.{layer}.mlp.c_fc",
        mlp_out="transformer.h.{layer}.mlp.c_proj",
        conv1d=True,
        final_norm="transformer.ln_f",
    ),
    "bert": _BERT,
    "roberta": _BERT,
    "xlm-roberta": _BERT,
    "electra": _BERT,
    "llama": _GATED,
    "mistral": _GATED,
    "qwen2": _GATED,
    "qwen3": _GATED,
}


def config_size(config: Any, *names: str) -> int | None:
    """The first of ``names`` that the config sets to an integer."""
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return None


def layer_count(config: Any) -> int | None:
    return config_size(config, "num_hidden_layers", "n_layer", "num_layers")


def mlp_width(config: Any) -> int | None:
    """Neurons per layer: intermediate_size, GPT-2's n_inner, or GPT-2's default 4 x n_embd."""
    width = config_size(config, "intermediate_size", "n_inner", "ffn_dim")
    if width is None and config.model_type == "gpt2":
        width = 4 * config.n_embd
    return width
