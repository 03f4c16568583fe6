"""EleutherAI Pythia (GPT-NeoX) models traced with nnsight; neurons are ``gpt_neox.layers[i].mlp.act`` outputs."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from probekit.api import PluginParams, RunError
from probekit_plugins.models.huggingface import Device, Dtype, HuggingFaceModel, HuggingFaceParams

#: the suite's sizes; each also exists as '<size>-deduped' (trained on the deduplicated Pile)
PYTHIA_SIZES = ("70m", "160m", "410m", "1b", "1.4b", "2.8b", "6.9b", "12b")


class PythiaParams(PluginParams):
    name: str = Field(
        description="'pythia-70m' ... 'pythia-12b' (or '-deduped'), any GPT-NeoX hub id, or a local directory"
    )
    revision: str | None = Field(None, description="training checkpoint such as 'step143000' (default: final)")
    dtype: Dtype = Field("float32", description="weights and activations dtype")
    device: Device = Field("cpu", description="'auto' takes CUDA when available")
    trust_remote_code: bool = Field(False, description="run model code shipped with the checkpoint (off by default)")

    @field_validator("name")
    @classmethod
    def _known_or_path(cls, name: str) -> str:
        if name.startswith("pythia-") and "/" not in name and not Path(name).exists():
            size = name.removeprefix("pythia-").removesuffix("-deduped")
            if size not in PYTHIA_SIZES:
                raise ValueError(f"unknown Pythia size '{size}'; known: {', '.join(PYTHIA_SIZES)} (or '-deduped')")
        return name


def hub_id(name: str) -> str:
    """'pythia-70m' -> 'EleutherAI/pythia-70m'; hub ids and local paths pass through."""
    if name.startswith("pythia-") and "/" not in name and not Path(name).exists():
        return f"EleutherAI/{name}"
    return name


class Pythia(HuggingFaceModel):
    """EleutherAI Pythia / GPT-NeoX (any size, any training checkpoint) via nnsight."""

    Params = PythiaParams  # type: ignore[assignment]

    def __init__(self, params: PythiaParams) -> None:
        super().__init__(HuggingFaceParams(
            model=hub_id(params.name), revision=params.revision, dtype=params.dtype, device=params.device,
            trust_remote_code=params.trust_remote_code,
        ))
        if self.config.model_type != "gpt_neox":
            raise RunError(f"'{params.name}' is a '{self.config.model_type}' model, not GPT-NeoX; use the "
                           "'huggingface' adapter for it")
