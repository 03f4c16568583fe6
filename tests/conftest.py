"""Shared fixtures: the real MiniLM (loaded once per session), the in-memory FakeModel registered as model plugin
`fake`, and fake installed distributions for the registry."""

from __future__ import annotations

import importlib
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from probekit.testing import FakeModel
from probekit_plugins.models.huggingface import MiniLM


@pytest.fixture(autouse=True)
def _work_in_a_temporary_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Relative defaults (runs/, .probekit-cache/) land in the test's own directory, never in the repository."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def minilm() -> MiniLM:
    """The real all-MiniLM-L6-v2 through the `minilm` adapter."""
    return MiniLM(MiniLM.Params())


@pytest.fixture
def install_fake_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """Write a distribution (dist-info + module) on sys.path, as pip would; returns the module name.

    ``entry_points`` maps an entry-point group to ``{name: attribute}``; attributes refer to the module's code, or
    to any importable object when written ``module:attribute``.
    """

    def install(package: str, code: str, entry_points: dict[str, dict[str, str]]) -> str:
        module = f"fake_{package.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
        root = tmp_path / module
        root.mkdir()
        (root / f"{module}.py").write_text(textwrap.dedent(code))
        info = root / f"{package}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n")
        lines = []
        for group, entries in entry_points.items():
            lines.append(f"[{group}]")
            lines += [f"{name} = {attribute if ':' in attribute else f'{module}:{attribute}'}"
                      for name, attribute in entries.items()]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
        monkeypatch.syspath_prepend(str(root))
        importlib.invalidate_caches()
        return module

    return install


@pytest.fixture(scope="session")
def fake_model() -> FakeModel:
    """The in-memory fake model with its default params, as the spec's `plugin: fake` builds it."""
    return FakeModel(FakeModel.Params())


@pytest.fixture
def fake_model_plugin(install_fake_distribution: Callable[..., str]) -> str:
    """Register probekit.testing:FakeModel as model plugin `fake` through an installed distribution's entry point,
    exactly as a third-party package would; returns the plugin name for specs."""
    install_fake_distribution("probekit-testing-fake", "", {"probekit.models": {"fake": "probekit.testing:FakeModel"}})
    return "fake"


@pytest.fixture(scope="session")
def bpe_tokenizer():
    """A byte-level BPE tokenizer (GPT-NeoX style: leading spaces belong to tokens), trained in about a second."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from probekit.api import StdlibSource, read_documents

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=2000, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    documents = read_documents(StdlibSource(), seed=0)
    tokenizer.train_from_iterator((next(documents) for _ in range(100)), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|endoftext|>", bos_token="<|endoftext|>", model_max_length=2048
    )


def save_tiny_model(directory: Path, model, tokenizer) -> Path:
    """Save a randomly initialised model and its tokenizer as a Hugging Face checkpoint directory."""
    model.eval().save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_neox_dir(tmp_path_factory, bpe_tokenizer) -> Path:
    """A tiny GPT-NeoX (Pythia architecture: rotary, parallel residual) with random weights, saved to disk."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(0)
    config = GPTNeoXConfig(vocab_size=len(bpe_tokenizer), hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                           intermediate_size=256, rotary_pct=0.25, use_parallel_residual=True,
                           max_position_embeddings=256, eos_token_id=0, bos_token_id=0)
    return save_tiny_model(tmp_path_factory.mktemp("tiny-neox"), GPTNeoXForCausalLM(config), bpe_tokenizer)


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory, bpe_tokenizer) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(1)
    config = GPT2Config(vocab_size=len(bpe_tokenizer), n_embd=64, n_layer=2, n_head=4, n_positions=256)
    return save_tiny_model(tmp_path_factory.mktemp("tiny-gpt2"), GPT2LMHeadModel(config), bpe_tokenizer)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, bpe_tokenizer) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(2)
    config = LlamaConfig(vocab_size=len(bpe_tokenizer), hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"), LlamaForCausalLM(config), bpe_tokenizer)
