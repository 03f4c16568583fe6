"""Pythia (tiny GPT-NeoX), GPT-2 and Llama-shaped models (and MiniLM for exactness): loading, exact extraction,
weights and ablation."""

from __future__ import annotations

from functools import reduce
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from probekit.contracts import ProbeSites, ProbingDataset, TokenBatch
from probekit.errors import RunError
from probekit.extraction import extract_activations
from probekit_plugins.models.huggingface import HuggingFaceModel
from probekit_plugins.models.pythia import Pythia

TEXTS = [
    "Sparse probing finds the neurons that encode a feature.",
    "Short text.",
    "def add(a, b):\n    return a + b  # adds two numbers, 42 times",
    "The quick brown fox jumps over the lazy dog, again and again.",
]


def module(root: torch.nn.Module, path: str) -> torch.nn.Module:
    return reduce(lambda node, part: node[int(part)] if part.isdigit() else getattr(node, part), path.split("."), root)


def hooked(adapter: HuggingFaceModel, ids: torch.Tensor, mask: torch.Tensor) -> dict[int, torch.Tensor]:
    """Neuron values of every layer from plain PyTorch forward hooks on the same padded batch."""
    captured: dict[int, torch.Tensor] = {}
    arch = adapter.architecture
    handles = []
    for layer in range(adapter.n_layers):
        target = module(adapter.model, arch.neurons.format(layer=layer))

        def keep(mod, args, output, layer=layer):
            captured[layer] = (output if arch.read == "output" else args[0]).detach().clone()

        handles.append(target.register_forward_hook(keep))
    try:
        with torch.inference_mode():
            adapter.model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0))
    finally:
        for handle in handles:
            handle.remove()
    return captured


@pytest.fixture(scope="module")
def pythia(tiny_neox_dir: Path) -> Pythia:
    return Pythia(Pythia.Params(name=str(tiny_neox_dir)))


@pytest.fixture(scope="module")
def gpt2(tiny_gpt2_dir: Path) -> HuggingFaceModel:
    return HuggingFaceModel(HuggingFaceModel.Params(model=str(tiny_gpt2_dir)))


@pytest.fixture(scope="module")
def llama(tiny_llama_dir: Path) -> HuggingFaceModel:
    return HuggingFaceModel(HuggingFaceModel.Params(model=str(tiny_llama_dir)))


def test_pythia_loads_a_local_checkpoint_lazily(tiny_neox_dir: Path) -> None:
    adapter = Pythia(Pythia.Params(name=str(tiny_neox_dir)))
    assert (adapter.n_layers, adapter.d_mlp) == (3, 256)
    assert adapter._model is None  # config and tokenizer only, until activations are needed
    assert str(tiny_neox_dir.resolve()) in adapter.identity and adapter.identity.endswith(":float32")
    assert adapter.architecture.neurons == "gpt_neox.layers.{layer}.mlp.act"


@pytest.mark.parametrize("family", ["pythia", "gpt2", "llama", "minilm"])
@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("aggregation", ["token", "mean", "max"])
def test_engine_equals_plain_hooks_exactly(request, family: str, padding_side: str, aggregation: str,
                                           monkeypatch) -> None:
    adapter = request.getfixturevalue(family)
    monkeypatch.setattr(adapter, "padding_side", padding_side)
    sequences = [np.asarray(adapter.tokenizer(text)["input_ids"]) for text in TEXTS]
    if aggregation == "token":
        sites = ProbeSites([0, 0, 1, 2, 3, 3], [0, 4, 1, 7, 2, 9], [1, 5, 2, 8, 3, 10], "token")
    else:
        sites = ProbeSites([0, 1, 2, 3], [1, 0, 3, 2], [len(s) for s in sequences], aggregation)
    layers = list(range(adapter.n_layers))
    engine = extract_activations(adapter, ProbingDataset(sequences, sites, []), layers, batch_tokens=10_000)

    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))  # one batch, longest first
    width = len(sequences[order[0]])
    tokenizer = adapter.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = torch.full((len(order), width), int(pad))
    mask = torch.zeros_like(ids)
    offsets = {}
    for row, index in enumerate(order):
        offsets[index] = width - len(sequences[index]) if padding_side == "left" else 0
        ids[row, offsets[index] : offsets[index] + len(sequences[index])] = torch.as_tensor(sequences[index])
        mask[row, offsets[index] : offsets[index] + len(sequences[index])] = 1
    reference = hooked(adapter, ids, mask)
    for site in range(len(sites)):
        sequence = int(sites.sequence[site])
        row, shift = order.index(sequence), offsets[sequence]
        start, end = int(sites.start[site]) + shift, int(sites.end[site]) + shift
        for layer in layers:
            span = reference[layer][row, start:end]
            expected = {"token": span[0], "mean": span.mean(dim=0), "max": span.amax(dim=0)}[aggregation]
            assert np.abs(engine[layer][site] - expected.numpy()).max() == 0.0


def test_left_padding_keeps_true_positions(pythia, monkeypatch) -> None:
    """A left-padded sequence gives the activations it has when run alone (positions from its first token)."""
    sequences = [np.asarray(pythia.tokenizer(text)["input_ids"]) for text in TEXTS[:2]]
    sites = ProbeSites([1], [2], [3], "token")
    monkeypatch.setattr(pythia, "padding_side", "left")
    padded = extract_activations(pythia, ProbingDataset(sequences, sites, []), [2], batch_tokens=10_000)[2]
    alone = extract_activations(pythia, ProbingDataset([sequences[1]], ProbeSites([0], [2], [3]), []), [2])[2]
    np.testing.assert_allclose(padded, alone, atol=1e-5)


@pytest.mark.parametrize("family", ["pythia", "gpt2", "llama"])
def test_weights_are_neuron_major(request, family: str) -> None:
    """The MLP equals W_out @ neuron + b_out, with neuron = act(W_in x + b_in) (gated: act(W_gate x) * W_in x)."""
    adapter = request.getfixturevalue(family)
    weights = adapter.weights(1)
    d_model = weights.W_in.shape[1]
    assert weights.W_in.shape == (adapter.d_mlp, d_model) and weights.W_out.shape == (d_model, adapter.d_mlp)
    x = torch.randn(5, d_model)
    mlp_path = adapter.architecture.mlp_out.format(layer=1).rsplit(".", 1)[0]
    mlp = module(adapter.model, mlp_path)
    with torch.no_grad():
        expected = mlp(x[None])[0].numpy()
    if family == "llama":
        gate = x.numpy() @ weights.W_gate.T
        neuron = (gate / (1 + np.exp(-gate))) * (x.numpy() @ weights.W_in.T)  # SiLU gate times up projection
        b_out = 0.0
    else:
        act = module(adapter.model, adapter.architecture.neurons.format(layer=1))
        with torch.no_grad():
            neuron = act(torch.as_tensor(x.numpy() @ weights.W_in.T + weights.b_in)).numpy()
        out_module = module(adapter.model, adapter.architecture.mlp_out.format(layer=1))
        b_out = out_module.bias.detach().numpy()
    np.testing.assert_allclose(neuron @ weights.W_out.T + b_out, expected, atol=1e-4)
    W_U = adapter.unembedding()
    assert W_U.shape == (len(adapter.tokenizer), d_model)


def test_zero_and_mean_ablation_match_a_plain_pytorch_hook(pythia) -> None:
    encoded = pythia.tokenizer(TEXTS, return_tensors="pt", padding=True)
    batch = TokenBatch(encoded["input_ids"], encoded["attention_mask"])
    neurons = [(0, 3), (0, 17), (2, 100)]
    for mode in ("zero", "mean"):
        result = pythia.ablate(neurons, batch, mode=mode)

        # reference: hooks that overwrite the neuron values, and the loss from scratch
        act_modules = {layer: module(pythia.model, f"gpt_neox.layers.{layer}.mlp.act") for layer, _ in neurons}
        mask = batch.attention_mask.bool()

        def loss(logits: torch.Tensor) -> np.ndarray:
            values = []
            for row in range(len(TEXTS)):
                real = mask[row].nonzero().squeeze(-1)
                values.append(F.cross_entropy(logits[row, real[:-1]], batch.input_ids[row, real[1:]]).item())
            return np.asarray(values)

        with torch.inference_mode():
            clean = pythia.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            means = {}
            for layer in act_modules:
                captured = {}
                handle = act_modules[layer].register_forward_hook(lambda m, a, o: captured.setdefault("v", o))
                pythia.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
                handle.remove()
                means[layer] = captured["v"][mask].mean(dim=0)

            def overwrite(layer):
                def hook(mod, args, output):
                    output = output.clone()
                    for _, neuron in (n for n in neurons if n[0] == layer):
                        output[..., neuron] = 0.0 if mode == "zero" else means[layer][neuron]
                    return output
                return hook

            handles = [act_modules[layer].register_forward_hook(overwrite(layer)) for layer in act_modules]
            ablated = pythia.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
            for handle in handles:
                handle.remove()
        np.testing.assert_allclose(result.loss_clean, loss(clean), rtol=1e-5)
        np.testing.assert_allclose(result.loss_ablated, loss(ablated), rtol=1e-5)
        assert not np.allclose(result.loss_clean, result.loss_ablated)


def test_unknown_architecture_explains_how_to_continue(tmp_path: Path, bpe_tokenizer) -> None:
    from transformers import OPTConfig, OPTForCausalLM

    config = OPTConfig(vocab_size=len(bpe_tokenizer), hidden_size=32, num_hidden_layers=2, ffn_dim=64,
                       num_attention_heads=4, word_embed_proj_dim=32, max_position_embeddings=128)
    OPTForCausalLM(config).save_pretrained(tmp_path)
    bpe_tokenizer.save_pretrained(tmp_path)
    with pytest.raises(RunError, match=r"architecture 'opt' is not in the table \(supported: bert, electra, gpt2, "
                                       r"gpt_neox.*neuron_module"):
        HuggingFaceModel(HuggingFaceModel.Params(model=str(tmp_path)))
    explicit = HuggingFaceModel(HuggingFaceModel.Params(model=str(tmp_path),
                                                        neuron_module="model.decoder.layers.{layer}.activation_fn"))
    assert explicit.architecture.causal and explicit.d_mlp == 64
    sequences = [np.asarray(bpe_tokenizer("hello there world")["input_ids"])]
    values = extract_activations(explicit, ProbingDataset(sequences, ProbeSites([0], [1], [2]), []), [1])[1]
    assert values.shape == (1, 64) and np.isfinite(values).all()


def test_pythia_is_refused_for_other_architectures(tiny_gpt2_dir: Path) -> None:
    with pytest.raises(RunError, match="is a 'gpt2' model, not GPT-NeoX; use the 'huggingface' adapter"):
        Pythia(Pythia.Params(name=str(tiny_gpt2_dir)))


def test_pythia_names_and_options_reach_the_hub_loader(monkeypatch) -> None:
    """'pythia-70m-deduped' + revision map to the hub id; trust_remote_code stays off unless asked."""
    seen, asked = [], []

    def answers(repo_id, revision=None):
        asked.append((repo_id, revision))
        return None  # the hub answers

    def refuse(source, **options):
        seen.append((source, options))
        raise OSError("offline")

    monkeypatch.setattr("probekit_plugins.models.huggingface.hub_problem", answers)
    monkeypatch.setattr("probekit_plugins.models.huggingface.AutoConfig.from_pretrained", refuse)
    with pytest.raises(RunError, match="pass a local directory"):
        Pythia(Pythia.Params(name="pythia-70m-deduped", revision="step143000"))
    assert asked == [("EleutherAI/pythia-70m-deduped", "step143000")]
    assert seen == [("EleutherAI/pythia-70m-deduped", {"revision": "step143000", "trust_remote_code": False})]
    with pytest.raises(ValueError, match="unknown Pythia size '13b'"):
        Pythia.Params(name="pythia-13b")


def test_bfloat16_weights_give_a_distinct_identity_and_close_activations(tiny_neox_dir: Path, pythia) -> None:
    half = Pythia(Pythia.Params(name=str(tiny_neox_dir), dtype="bfloat16"))
    assert half.identity != pythia.identity and half.identity.endswith(":bfloat16")
    sequences = [np.asarray(pythia.tokenizer(text)["input_ids"]) for text in TEXTS]
    dataset = ProbingDataset(sequences, ProbeSites([0, 2], [3, 5], [4, 6]), [])
    full = extract_activations(pythia, dataset, [1])[1]
    reduced = extract_activations(half, dataset, [1])[1]
    assert reduced.dtype == np.float32 and half.model.dtype == torch.bfloat16
    np.testing.assert_allclose(reduced, full, atol=0.05)


def test_minilm_through_the_generic_adapter_matches_the_minilm_adapter(minilm) -> None:
    from probekit_plugins.models.huggingface import minilm_directory

    generic = HuggingFaceModel(HuggingFaceModel.Params(model=str(minilm_directory())))
    assert not generic.architecture.causal and generic.d_mlp == 1536 and generic.n_layers == 6
    sequences = [np.asarray(minilm.tokenizer(text)["input_ids"]) for text in TEXTS]
    dataset = ProbingDataset(sequences, ProbeSites([0, 3], [2, 4], [3, 5]), [])
    np.testing.assert_array_equal(extract_activations(generic, dataset, [4])[4],
                                  extract_activations(minilm, dataset, [4])[4])
    with pytest.raises(NotImplementedError, match="without a language-model head"):
        generic.unembedding()
