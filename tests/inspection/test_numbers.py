"""The numbers of `probekit inspect` against independent computations: plain PyTorch forward hooks run one sequence
at a time without padding, the raw torch weights, numpy grouping and brute force (sklearn at every threshold)."""

from __future__ import annotations

from functools import reduce
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score, precision_score, recall_score

from probekit.api import StdlibSource, read_documents
from probekit.cache import ActivationCache
from probekit.contracts import Feature, ProbeSites, ProbingDataset
from probekit.errors import ProbekitError
from probekit.inspection import max_activating as max_activating_module
from probekit.inspection import stream
from probekit.inspection.ablation import ablation, sequence_classes
from probekit.inspection.by_class import OTHER, best_threshold, by_class
from probekit.inspection.logits import direct_effects
from probekit.inspection.max_activating import max_activating
from probekit.inspection.neurons import NeuronId
from probekit.inspection.stream import Reservoir, RunningTop, TokenActivations
from probekit.inspection.vocab import vocab
from probekit.inspection.weights import weights
from probekit.units import cached_activations
from probekit_plugins.models.huggingface import HuggingFaceModel
from probekit_plugins.models.pythia import Pythia

NEOX_NEURONS = "gpt_neox.layers.{layer}.mlp.act"
BERT_NEURONS = "encoder.layer.{layer}.intermediate.intermediate_act_fn"
LENGTHS = (12, 31, 7, 24, 40, 3, 18)


# ----------------------------------------------------------------------------------------------------------------
# the reference: plain torch


def module(root: torch.nn.Module, path: str) -> torch.nn.Module:
    return reduce(lambda node, part: node[int(part)] if part.isdigit() else getattr(node, part), path.split("."), root)


def hooked(model: torch.nn.Module, path: str, layers: list[int], sequences: list[np.ndarray]) -> dict[int, list]:
    """``{layer: [float64 array [len, d_mlp] per sequence]}`` from forward hooks, one unpadded sequence at a time."""
    captured: dict[int, list] = {layer: [] for layer in layers}
    handles = [module(model, path.format(layer=layer)).register_forward_hook(
        lambda mod, args, output, layer=layer: captured[layer].append(output[0].double().numpy().copy()))
        for layer in layers]
    try:
        with torch.inference_mode():
            for ids in sequences:
                model(input_ids=torch.as_tensor(np.asarray(ids, dtype=np.int64))[None])
    finally:
        for handle in handles:
            handle.remove()
    return captured


def flat(sequences: list[np.ndarray], acts: dict[int, list], neuron: NeuronId, specials: set[int]) -> tuple:
    """(sequence, position, token, activation) of every non-special token, in corpus order."""
    rows = [(s, p, int(t), acts[neuron.layer][s][p, neuron.index])
            for s, ids in enumerate(sequences) for p, t in enumerate(ids) if int(t) not in specials]
    s, p, t, v = zip(*rows)
    return np.array(s), np.array(p), np.array(t), np.array(v)


def corpus(tokenizer, n: int, frame: tuple[list[int], list[int]], seed: int = 3) -> list[np.ndarray]:
    """``n`` windows of stdlib prose of varying lengths, each wrapped in ``frame`` (special tokens)."""
    documents = read_documents(StdlibSource(), seed=seed)
    sequences: list[np.ndarray] = []
    while len(sequences) < n:
        ids = tokenizer(next(documents), add_special_tokens=False)["input_ids"]
        first = 0
        while len(sequences) < n and first + LENGTHS[len(sequences) % len(LENGTHS)] <= len(ids):
            length = LENGTHS[len(sequences) % len(LENGTHS)]
            before, after = frame if len(sequences) % 3 else ([], [])  # some windows without their frame
            sequences.append(np.array(before + ids[first : first + length] + after, dtype=np.int64))
            first += length
    return sequences


@pytest.fixture(scope="module")
def neox(tiny_neox_dir: Path) -> Pythia:
    return Pythia(Pythia.Params(name=str(tiny_neox_dir)))


@pytest.fixture(scope="module")
def neox_reference(tiny_neox_dir: Path) -> torch.nn.Module:
    """The same checkpoint loaded by plain transformers, apart from the adapter (and from nnsight's wrapping)."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_neox_dir).eval()


@pytest.fixture(scope="module")
def minilm_reference() -> torch.nn.Module:
    from transformers import AutoModel

    from probekit_plugins.models.huggingface import minilm_directory

    return AutoModel.from_pretrained(minilm_directory()).eval()


@pytest.fixture(scope="module")
def neox_corpus(neox: Pythia) -> list[np.ndarray]:
    eos = neox.tokenizer.eos_token_id
    return corpus(neox.tokenizer, 40, ([eos], [eos]))


@pytest.fixture(scope="module")
def minilm_corpus(minilm) -> list[np.ndarray]:
    tokenizer = minilm.tokenizer
    return corpus(tokenizer, 24, ([tokenizer.cls_token_id], [tokenizer.sep_token_id]))


def close(actual, expected, rtol: float = 1e-5, atol: float = 1e-5) -> None:
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64),
                               rtol=rtol, atol=atol)


# ----------------------------------------------------------------------------------------------------------------
# max-activating


def check_max_activating(adapter, reference, sequences, path: str, neurons: list[NeuronId]) -> None:
    top, band, band_examples, context = 10, (0.8, 0.95), 6, 3
    result = max_activating(adapter, sequences, neurons, top=top, band=band, band_examples=band_examples,
                            context=context, batch_tokens=300)
    rows = result.tables["examples"].to_pylist()
    specials = set(adapter.tokenizer.all_special_ids)
    acts = hooked(reference, path, sorted({n.layer for n in neurons}), sequences)
    for column, neuron in enumerate(neurons):
        s, p, t, v = flat(sequences, acts, neuron, specials)
        at = {(int(a), int(b)): value for a, b, value in zip(s, p, v)}
        assert result.description["tokens"] == result.description["sample_size"] == len(v)

        tops = [r for r in rows if r["neuron"] == str(neuron) and r["kind"] == "top"]
        assert [r["rank"] for r in tops] == list(range(1, top + 1))
        close([r["activation"] for r in tops], np.sort(v)[::-1][:top])  # the N largest values of the corpus
        assert len({(r["sequence"], r["position"]) for r in tops}) == top
        for r in tops:  # ... found where they really are
            ids = sequences[r["sequence"]]
            close(r["activation"], at[r["sequence"], r["position"]])
            assert r["token_id"] == ids[r["position"]] and r["token_id"] not in specials
            assert r["token"] == adapter.tokenizer.decode([int(ids[r["position"]])])
            assert r["before"] == adapter.tokenizer.decode(ids[max(0, r["position"] - context) : r["position"]])
            assert r["after"] == adapter.tokenizer.decode(ids[r["position"] + 1 : r["position"] + 1 + context])
        # the exact top positions when the N-th and (N+1)-th values are well apart
        order = np.argsort(-v, kind="stable")
        if v[order[top - 1]] - v[order[top]] > 1e-4:
            assert {(r["sequence"], r["position"]) for r in tops} == {(int(s[i]), int(p[i])) for i in order[:top]}

        # the corpus is smaller than the reservoir: the band thresholds are the quantiles of every token
        lo, hi = result.description["band_thresholds"][column]
        close([lo, hi], np.quantile(v, band))
        inside = np.sum((v >= lo - 1e-6) & (v <= hi + 1e-6))
        banded = [r for r in rows if r["neuron"] == str(neuron) and r["kind"] == f"band {band[0]:g}-{band[1]:g}"]
        assert len(banded) == min(band_examples, inside) and inside >= band_examples
        assert len({(r["sequence"], r["position"]) for r in banded}) == len(banded)
        assert [r["activation"] for r in banded] == sorted((r["activation"] for r in banded), reverse=True)
        for r in banded:
            assert lo <= r["activation"] <= hi
            close(r["activation"], at[r["sequence"], r["position"]])
            assert r["token_id"] == sequences[r["sequence"]][r["position"]]


def test_max_activating_matches_hooks_on_tiny_neox(neox, neox_reference, neox_corpus, monkeypatch) -> None:
    monkeypatch.setattr(stream, "CHUNK_TOKENS", 100)  # the corpus streamed in several chunks
    check_max_activating(neox, neox_reference, neox_corpus, NEOX_NEURONS,
                         [NeuronId(0, 7), NeuronId(2, 100), NeuronId(1, 255)])


@pytest.mark.slow
def test_max_activating_matches_hooks_on_minilm(minilm, minilm_reference, minilm_corpus) -> None:
    check_max_activating(minilm, minilm_reference, minilm_corpus, BERT_NEURONS, [NeuronId(0, 787), NeuronId(3, 12)])


def test_max_activating_band_from_a_sample_smaller_than_the_corpus(neox, neox_reference, neox_corpus,
                                                                   monkeypatch) -> None:
    monkeypatch.setattr(max_activating_module, "RESERVOIR_SIZE", 300)
    neuron, band = NeuronId(1, 9), (0.5, 0.9)
    result = max_activating(neox, neox_corpus, [neuron], top=3, band=band, band_examples=20)
    s, p, _, v = flat(neox_corpus, hooked(neox_reference, NEOX_NEURONS, [1], neox_corpus), neuron,
                      set(neox.tokenizer.all_special_ids))
    at = {(int(a), int(b)): value for a, b, value in zip(s, p, v)}
    assert result.description["tokens"] == len(v) > 2 * 300 and result.description["sample_size"] == 300
    (lo, hi), = result.description["band_thresholds"]
    # quantiles of a uniform sample of 300: within a few binomial standard deviations (about 0.03) of the truth
    assert abs(np.mean(v <= lo) - band[0]) < 0.12 and abs(np.mean(v <= hi) - band[1]) < 0.1
    banded = [r for r in result.tables["examples"].to_pylist() if r["kind"] != "top"]
    assert len(banded) == 20
    for r in banded:
        assert lo <= r["activation"] <= hi
        close(r["activation"], at[r["sequence"], r["position"]])


# ----------------------------------------------------------------------------------------------------------------
# vocab


def check_vocab(adapter, reference, sequences, path: str, neurons: list[NeuronId]) -> None:
    min_count, top = 3, 15
    result = vocab(adapter, sequences, neurons, min_count=min_count, top=top, batch_tokens=300)
    specials = set(adapter.tokenizer.all_special_ids)
    acts = hooked(reference, path, sorted({n.layer for n in neurons}), sequences)
    rows = result.tables["tokens"].to_pylist()
    ranked = result.tables["ranked"].to_pylist()
    for neuron in neurons:
        _, _, t, v = flat(sequences, acts, neuron, specials)
        expected = {int(token): v[t == token] for token in np.unique(t)}
        own = {r["token_id"]: r for r in rows if r["neuron"] == str(neuron)}
        assert set(own) == set(expected)  # every token seen, no special token
        for token, values in expected.items():
            r = own[token]
            assert r["count"] == len(values)
            close([r["mean"], r["min"], r["max"]], [values.mean(), values.min(), values.max()])
            assert r["token"] == adapter.tokenizer.decode([token])
        frequent = sorted((values.mean() for values in expected.values() if len(values) >= min_count), reverse=True)
        assert len(frequent) > top
        for end, means in (("top", frequent[:top]), ("bottom", frequent[::-1][:top])):
            chosen = [r for r in ranked if r["neuron"] == str(neuron) and r["end"] == end]
            assert [r["rank"] for r in chosen] == list(range(1, top + 1))
            close([r["mean"] for r in chosen], means)
            assert all(r["count"] >= min_count for r in chosen)
    assert result.description["tokens"] == sum(int(t) not in specials for ids in sequences for t in ids)


def test_vocab_matches_hooks_on_tiny_neox(neox, neox_reference, neox_corpus, monkeypatch) -> None:
    monkeypatch.setattr(stream, "CHUNK_TOKENS", 100)
    check_vocab(neox, neox_reference, neox_corpus, NEOX_NEURONS, [NeuronId(0, 7), NeuronId(2, 100)])


@pytest.mark.slow
def test_vocab_matches_hooks_on_minilm(minilm, minilm_reference, minilm_corpus) -> None:
    check_vocab(minilm, minilm_reference, minilm_corpus, BERT_NEURONS, [NeuronId(1, 5), NeuronId(5, 1535)])


def span_dataset(sequences: list[np.ndarray], seed: int) -> tuple[ProbingDataset, Feature]:
    """Random spans (some overlapping, some of both labels over the same tokens) labelled at random."""
    rng = np.random.default_rng(seed)
    sequence, start, end = [], [], []
    for s, ids in enumerate(sequences):
        for _ in range(rng.integers(1, 5)):
            a = int(rng.integers(0, len(ids)))
            sequence.append(s)
            start.append(a)
            end.append(int(rng.integers(a + 1, len(ids) + 1)))
    sites = ProbeSites(np.array(sequence), np.array(start), np.array(end), "mean")
    chosen = rng.permutation(len(sites))[: int(0.9 * len(sites))]  # the feature labels most sites, not in order
    feature = Feature("f", chosen, rng.random(len(chosen)) < 0.5)
    return ProbingDataset(sequences, sites, [feature]), feature


def test_vocab_split_by_the_label_of_the_spanning_site(neox, neox_reference, neox_corpus) -> None:
    dataset, feature = span_dataset(neox_corpus, seed=5)
    neurons = [NeuronId(1, 9), NeuronId(2, 100)]
    min_count = 2
    result = vocab(neox, neox_corpus, neurons, min_count=min_count, split=(dataset, feature), batch_tokens=300)
    specials = set(neox.tokenizer.all_special_ids)
    acts = hooked(neox_reference, NEOX_NEURONS, [1, 2], neox_corpus)
    # by hand: the labels of the sites covering each position; a position covered both ways is unlabelled
    covering = [[set() for _ in ids] for ids in neox_corpus]
    for site, label in zip(feature.sites, feature.labels):
        s, a, b = dataset.sites.sequence[site], dataset.sites.start[site], dataset.sites.end[site]
        for position in range(a, b):
            covering[s][position].add(bool(label))
    split = result.tables["split"].to_pylist()
    assert result.description["split_feature"] == "f"
    for neuron in neurons:
        groups: dict[bool, dict[int, list[float]]] = {True: {}, False: {}}
        for s, ids in enumerate(neox_corpus):
            for position, token in enumerate(ids):
                if int(token) not in specials and len(covering[s][position]) == 1:
                    label = next(iter(covering[s][position]))
                    groups[label].setdefault(int(token), []).append(acts[neuron.layer][s][position, neuron.index])
        both = [t for t in groups[True] if len(groups[True][t]) >= min_count and len(groups[False].get(t, [])) >=
                min_count]
        own = [r for r in split if r["neuron"] == str(neuron)]
        assert len(both) >= 3 and sorted(r["token_id"] for r in own) == sorted(both)
        for r in own:
            positive, negative = groups[True][r["token_id"]], groups[False][r["token_id"]]
            assert (r["count_positive"], r["count_negative"]) == (len(positive), len(negative))
            close([r["mean_positive"], r["mean_negative"], r["difference"]],
                  [np.mean(positive), np.mean(negative), np.mean(positive) - np.mean(negative)])
        assert [r["difference"] for r in own] == sorted((r["difference"] for r in own), reverse=True)
    # the split does not change the unsplit counts
    tokens = [r for r in result.tables["tokens"].to_pylist() if r["neuron"] == str(neurons[0])]
    counts = np.unique([int(t) for ids in neox_corpus for t in ids if int(t) not in specials], return_counts=True)
    assert {r["token_id"]: r["count"] for r in tokens} == dict(zip(counts[0].tolist(), counts[1].tolist()))


# ----------------------------------------------------------------------------------------------------------------
# by-class


def token_dataset(sequences: list[np.ndarray], specials: set[int], seed: int) -> tuple[ProbingDataset, Feature]:
    """Token sites at random real positions; the feature takes a shuffled subset of them, with kinds."""
    rng = np.random.default_rng(seed)
    positions = [(s, p) for s, ids in enumerate(sequences[:-5]) for p, t in enumerate(ids)
                 if int(t) not in specials and rng.random() < 0.3]
    sequence, start = np.array(positions).T
    sites = ProbeSites(sequence, start, start + 1)
    chosen = rng.permutation(len(sites))[: int(0.8 * len(sites))]
    labels = rng.random(len(chosen)) < 0.4
    kinds = rng.choice(["XY", "XZ", "WY"], len(chosen))
    feature = Feature("f", chosen, labels, kinds)
    return ProbingDataset(sequences, sites, [feature, Feature("g", np.arange(len(sites)), np.arange(len(sites)) % 2
                                                             == 0)]), feature


def brute_threshold(x: np.ndarray, labels: np.ndarray) -> float:
    """The best F1 of any single cut, in the direction of the positives' mean."""
    above = x[labels].mean() >= x[~labels].mean()
    return max(f1_score(labels, x >= v if above else x <= v, zero_division=0) for v in np.unique(x))


def check_threshold(row: dict, x: np.ndarray, labels: np.ndarray, tolerance: float = 0.0) -> None:
    """The row's threshold is as good as the best by brute force, and its numbers are the cut's (``tolerance``: how
    far ``x`` may be from the values the threshold was chosen on)."""
    assert row["direction"] == (">=" if x[labels].mean() >= x[~labels].mean() else "<=")
    predicted = x >= row["threshold"] - tolerance if row["direction"] == ">=" else x <= row["threshold"] + tolerance
    close(row["f1"], brute_threshold(x, labels), rtol=1e-12, atol=1e-12)
    close([row["f1"], row["precision"], row["recall"]],
          [f1_score(labels, predicted), precision_score(labels, predicted), recall_score(labels, predicted)],
          rtol=1e-12, atol=1e-12)
    assert row["predicted_positive"] == predicted.sum()


def test_by_class_matches_hooks_at_the_sites(neox, neox_reference, neox_corpus) -> None:
    specials = set(neox.tokenizer.all_special_ids)
    dataset, feature = token_dataset(neox_corpus, specials, seed=1)
    neurons = [NeuronId(2, 100), NeuronId(0, 7)]
    result = by_class(neox, dataset, feature, neurons, other_tokens=True, bins=20, batch_tokens=300)
    acts = hooked(neox_reference, NEOX_NEURONS, [0, 2], neox_corpus)
    site_sequence, site_position = dataset.sites.sequence[feature.sites], dataset.sites.start[feature.sites]
    columns = np.array([[acts[n.layer][s][p, n.index] for n in neurons] for s, p in zip(site_sequence,
                                                                                        site_position)])
    probed = set(zip(site_sequence.tolist(), site_position.tolist()))
    other = np.array([[acts[n.layer][s][p, n.index] for n in neurons]
                      for s in sorted(set(site_sequence.tolist())) for p, t in enumerate(neox_corpus[s])
                      if int(t) not in specials and (s, p) not in probed])
    series = {str(neurons[0]): (columns[:, 0], other[:, 0]), str(neurons[1]): (columns[:, 1], other[:, 1]),
              "sum of 2": (columns.sum(axis=1), other.sum(axis=1))}
    classes = {"positive": feature.labels, "negative": ~feature.labels,
               **{f"kind {k}": feature.kinds == k for k in ("WY", "XY", "XZ")}}
    summary = result.tables["classes"].to_pylist()
    histogram = result.tables["histogram"].to_pylist()
    thresholds = {r["series"]: r for r in result.tables["thresholds"].to_pylist()}
    assert [r["class"] for r in summary[:6]] == [*classes, OTHER]
    for name, (x, rest) in series.items():
        samples = {cls: x[mask] for cls, mask in classes.items()} | {OTHER: rest}
        for cls, sample in samples.items():
            (row,) = [r for r in summary if r["series"] == name and r["class"] == cls]
            assert row["n"] == len(sample) > 0
            close([row["mean"], row["std"], row["min"], row["median"], row["max"]],
                  [sample.mean(), sample.std(), sample.min(), np.median(sample), sample.max()])
            bins = [r for r in histogram if r["series"] == name and r["class"] == cls]
            assert len(bins) == 20 and sum(r["count"] for r in bins) == len(sample)
            close(sum(r["density"] * (r["bin_high"] - r["bin_low"]) for r in bins), 1.0, rtol=1e-9)
            cumulative = np.cumsum([r["count"] for r in bins])
            for r, below in zip(bins, cumulative):  # values up to each bin's upper edge, robust to rounding
                assert np.sum(sample < r["bin_high"] - 1e-5) <= below <= np.sum(sample <= r["bin_high"] + 1e-5)
        check_threshold(thresholds[name], x, feature.labels, tolerance=1e-5)
    assert result.description["positives"] == feature.labels.sum() and result.notes == []


def test_best_threshold_against_brute_force_with_ties_and_either_direction() -> None:
    rng = np.random.default_rng(0)
    for trial in range(30):
        n = int(rng.integers(5, 60))
        labels = rng.random(n) < rng.uniform(0.1, 0.9)
        if labels.all() or not labels.any():
            labels[0] = not labels[0]
        x = rng.integers(0, 6, n).astype(float) + 2.0 * labels if trial % 3 else rng.normal(size=n) + labels
        if trial % 2:
            x = -x  # negatively correlated: positives below the cut
        check_threshold(best_threshold(x, labels), x, labels)
    with pytest.raises(ProbekitError, match="one class"):
        best_threshold(np.arange(4.0), np.ones(4, dtype=bool))


def test_by_class_reads_a_cached_layer_with_identical_numbers(neox, neox_corpus, tmp_path: Path) -> None:
    dataset, feature = token_dataset(neox_corpus, set(neox.tokenizer.all_special_ids), seed=2)
    neurons = [NeuronId(1, 9), NeuronId(2, 100)]
    cache = ActivationCache(tmp_path / "cache")
    cached_activations(neox, dataset, [1], cache, 4096, ("tiny", "hand"))
    fresh = by_class(neox, dataset, feature, neurons)
    cached = by_class(neox, dataset, feature, neurons, cache=cache)
    assert fresh.description["layers_from_cache"] == [] and fresh.notes == []
    assert cached.description["layers_from_cache"] == [1]
    assert cached.notes == ["layers 1 read from the activation cache"]
    for name in ("classes", "thresholds", "histogram"):
        assert cached.tables[name].to_pylist() == fresh.tables[name].to_pylist()


# ----------------------------------------------------------------------------------------------------------------
# logits


def perturbed(adapter: HuggingFaceModel, norm: str, seed: int) -> HuggingFaceModel:
    """The adapter with a random final-norm scale and bias (freshly initialised ones are 1 and 0)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer = module(adapter.model, norm)
        layer.weight.copy_(torch.rand(layer.weight.shape, generator=generator) * 2 - 0.5)
        if getattr(layer, "bias", None) is not None:
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=generator))
    return adapter


FAMILIES = {  # fixture, final norm, W_U, W_out[:, n] as a torch expression, centered
    "neox": ("tiny_neox_dir", "gpt_neox.final_layer_norm", "lm_head",
             lambda m, layer, n: m.gpt_neox.layers[layer].mlp.dense_4h_to_h.weight[:, n], True),
    "gpt2": ("tiny_gpt2_dir", "transformer.ln_f", "lm_head",
             lambda m, layer, n: m.transformer.h[layer].mlp.c_proj.weight[n, :], True),  # Conv1D: [in, out]
    "llama": ("tiny_llama_dir", "model.norm", "lm_head",
              lambda m, layer, n: m.model.layers[layer].mlp.down_proj.weight[:, n], False),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_direct_effects_fold_the_final_norm_by_hand(family: str, request) -> None:
    directory, norm, head, column, centered = FAMILIES[family]
    adapter = perturbed(HuggingFaceModel(HuggingFaceModel.Params(model=str(request.getfixturevalue(directory)))),
                        norm, seed=4)
    model = adapter.model
    neurons = [NeuronId(1, 3), NeuronId(0, 50), NeuronId(1, 60)]
    effects, folded = direct_effects(adapter, neurons)
    assert folded == ("scale and mean subtraction (LayerNorm)" if centered else "scale (RMSNorm)")
    W_U, gamma = module(model, head).weight.detach().double(), module(model, norm).weight.detach().double()
    assert effects.shape == (W_U.shape[0], len(neurons))
    for i, neuron in enumerate(neurons):
        w = column(model, neuron.layer, neuron.index).detach().double()
        if centered:
            w = w - w.mean()
        close(effects[:, i], (W_U @ (gamma * w)).numpy(), rtol=1e-9, atol=1e-9)

    # the real model: with the neuron's output direction as the final norm's input, the logits move by the direct
    # effect times one positive factor (the norm's division), above what a zero input gives
    def logits_for(x: torch.Tensor | None) -> np.ndarray:
        def replace(mod, args):
            return (torch.zeros_like(args[0]) if x is None else x.to(args[0].dtype).expand_as(args[0]),)

        handle = module(model, norm).register_forward_pre_hook(replace)
        try:
            with torch.inference_mode():
                return model(input_ids=torch.tensor([[1, 2, 3]])).logits[0, -1].double().numpy()
        finally:
            handle.remove()

    for i, neuron in enumerate(neurons):
        w = column(model, neuron.layer, neuron.index).detach().float()
        change = logits_for(w) - logits_for(None)
        factor = change @ effects[:, i] / (effects[:, i] @ effects[:, i])
        assert factor > 0
        close(change, factor * effects[:, i], rtol=1e-4, atol=1e-4 * np.abs(change).max())


# ----------------------------------------------------------------------------------------------------------------
# ablation


def ablation_dataset(sequences: list[np.ndarray]) -> ProbingDataset:
    """One-vs-rest texts: 'even' and 'odd' sequences (a token site each), and sequences no feature labels."""
    chosen = [s for s in range(len(sequences)) if len(sequences[s]) >= 4][:14]
    sites = ProbeSites(np.array(chosen), np.ones(len(chosen)), np.full(len(chosen), 2))
    index = np.arange(len(chosen))
    even = np.array([s % 2 == 0 for s in chosen])
    return ProbingDataset(sequences, sites, [Feature("even", index, even), Feature("odd", index, ~even)])


def hooked_loss(model: torch.nn.Module, ids: np.ndarray, replace: dict[NeuronId, float] | None = None) -> float:
    """Mean next-token cross-entropy of one unpadded sequence, with neurons overwritten by hooks."""
    handles = []
    for neuron, value in (replace or {}).items():
        def hook(mod, args, output, neuron=neuron, value=value):
            output = output.clone()
            output[..., neuron.index] = value
            return output

        handles.append(module(model, NEOX_NEURONS.format(layer=neuron.layer)).register_forward_hook(hook))
    try:
        with torch.inference_mode():
            tokens = torch.as_tensor(np.asarray(ids, dtype=np.int64))
            logits = model(input_ids=tokens[None]).logits[0]
            return F.cross_entropy(logits[:-1].double(), tokens[1:]).item()
    finally:
        for handle in handles:
            handle.remove()


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_ablation_losses_and_classes_by_hand(neox, neox_reference, neox_corpus, mode: str) -> None:
    dataset = ablation_dataset(neox_corpus)
    neurons = [NeuronId(0, 7), NeuronId(2, 100), NeuronId(2, 101)]
    result = ablation(neox, dataset, neurons, mode, bootstrap=200, seed=3, batch_tokens=100)
    chosen = sorted(set(dataset.sites.sequence.tolist()))
    model = neox_reference
    replace = {n: 0.0 for n in neurons}
    if mode == "mean":  # the corpus mean over every token of the ablated sequences, special tokens included
        acts = hooked(model, NEOX_NEURONS, [0, 2], [neox_corpus[s] for s in chosen])
        replace = {n: float(np.concatenate([a[:, n.index] for a in acts[n.layer]]).mean()) for n in neurons}
        close(result.description["means"], list(replace.values()))
    clean = np.array([hooked_loss(model, neox_corpus[s]) for s in chosen])
    ablated = np.array([hooked_loss(model, neox_corpus[s], replace) for s in chosen])
    rows = result.tables["sequences"].to_pylist()
    assert [r["sequence"] for r in rows] == chosen
    assert [r["class"] for r in rows] == ["even" if s % 2 == 0 else "odd" for s in chosen]
    close([r["loss_clean"] for r in rows], clean)
    close([r["loss_ablated"] for r in rows], ablated)
    assert np.abs(ablated - clean).max() > 1e-3  # the ablation does something

    rng = np.random.default_rng(3)  # the documented bootstrap: sequences resampled within the class
    summary = result.tables["classes"].to_pylist()
    assert [r["class"] for r in summary] == ["even", "odd"]
    for row in summary:
        own = np.array([i for i, s in enumerate(chosen) if (s % 2 == 0) == (row["class"] == "even")])
        increase = (ablated[own].mean() - clean[own].mean()) / clean[own].mean()
        assert row["sequences"] == len(own)
        close([row["loss_clean"], row["loss_ablated"], row["relative_increase"]],
              [clean[own].mean(), ablated[own].mean(), increase])
        draws = rng.integers(0, len(own), size=(200, len(own)))
        resampled = [(ablated[own][d].mean() - clean[own][d].mean()) / clean[own][d].mean() for d in draws]
        close([row["increase_low"], row["increase_high"]], np.percentile(resampled, [2.5, 97.5]), rtol=1e-4,
              atol=1e-7)
        assert row["increase_low"] <= row["relative_increase"] <= row["increase_high"]


def test_sequence_classes_on_a_hand_built_dataset() -> None:
    sequences = [np.arange(5) for _ in range(6)]
    # sequence: 0 fr+, 1 de+, 2 only negative sites, 3 no site, 4 fr+ and fr- (token labels), 5 de+ and fr-
    sites = ProbeSites(np.array([0, 1, 2, 4, 4, 5, 5]), np.arange(7) % 4, np.arange(7) % 4 + 1)
    fr = Feature("fr", np.array([0, 1, 2, 3, 4, 6]), np.array([True, False, False, True, False, False]))
    de = Feature("de", np.array([0, 1, 2, 5]), np.array([False, True, False, True]))
    dataset = ProbingDataset(sequences, sites, [fr, de])
    assert sequence_classes(dataset, None).tolist() == ["fr", "de", "none", "", "fr", "de"]
    assert sequence_classes(dataset, fr).tolist() == ["fr", "not fr", "not fr", "", "", "not fr"]
    assert sequence_classes(dataset, de).tolist() == ["not de", "de", "not de", "", "", "de"]
    both = ProbingDataset(sequences, sites, [fr, Feature("de", np.array([0]), np.array([True]))])
    with pytest.raises(ProbekitError, match="positive for both 'fr' and 'de'"):
        sequence_classes(both, None)


# ----------------------------------------------------------------------------------------------------------------
# weights


def check_weights(adapter, W_in, b_in, W_out, layer: int, neuron: int) -> None:
    """``W_in``, ``b_in`` [d_mlp, d_model], [d_mlp] and ``W_out`` [d_model, d_mlp] as torch stores them."""
    W_in, b_in, W_out = (t.detach().double().numpy() for t in (W_in, b_in, W_out))
    result = weights(adapter, [layer], [NeuronId(layer, neuron)])
    norm = np.sqrt((W_in**2).sum(axis=1))
    expected = {"input_norm": norm, "input_bias": b_in, "norm_times_bias": norm * b_in,
                "output_norm": np.sqrt((W_out**2).sum(axis=0))}
    rows = [r for r in result.tables["neurons"].to_pylist() if r["layer"] == layer]
    assert [r["neuron"] for r in rows] == list(range(W_in.shape[0]))
    for name, values in expected.items():
        close([r[name] for r in rows], values, rtol=1e-6, atol=1e-7)
        (summary,) = [r for r in result.tables["layers"].to_pylist() if r["layer"] == layer and r["statistic"] == name]
        close([summary[k] for k in ("mean", "q01", "q10", "median", "q90", "q99")],
              [values.mean(), *np.percentile(values, [1, 10, 50, 90, 99])], rtol=1e-6, atol=1e-7)
        (placed,) = result.tables["inspected"].to_pylist()
        close(placed[name], values[neuron], rtol=1e-6, atol=1e-7)
        share = 100 * sum(v <= values[neuron] for v in values) / len(values)
        assert placed[f"{name}_percentile"] == pytest.approx(share)


def test_weights_match_the_raw_tensors_of_tiny_neox(neox, neox_reference) -> None:
    for layer in range(3):
        mlp = neox_reference.gpt_neox.layers[layer].mlp
        check_weights(neox, mlp.dense_h_to_4h.weight, mlp.dense_h_to_4h.bias, mlp.dense_4h_to_h.weight, layer,
                      17 * layer)


@pytest.mark.slow
def test_weights_match_the_raw_tensors_of_minilm(minilm, minilm_reference) -> None:
    block = minilm_reference.encoder.layer[0]
    check_weights(minilm, block.intermediate.dense.weight, block.intermediate.dense.bias, block.output.dense.weight,
                  0, 787)


# ----------------------------------------------------------------------------------------------------------------
# running summaries


def batches(rng: np.random.Generator, n_tokens: int, n_neurons: int, values: np.ndarray | None = None) -> list:
    """The stream cut at random places: token i is sequence i // 10, position i % 10."""
    values = rng.normal(size=(n_tokens, n_neurons)).astype(np.float32) if values is None else values
    cuts = np.sort(rng.choice(np.arange(1, n_tokens), size=min(6, n_tokens - 1), replace=False))
    index = np.arange(n_tokens)
    return [TokenActivations(part // 10, part % 10, part, values[part]) for part in np.split(index, cuts)]


def test_running_top_equals_a_full_sort() -> None:
    rng = np.random.default_rng(0)
    for size, n_tokens in ((5, 300), (40, 300), (300, 100)):
        stream = batches(rng, n_tokens, 3)
        every = np.concatenate([b.values for b in stream])
        top = RunningTop(3, size)
        for batch in stream:
            top.update(batch)
        for column in range(3):
            order = np.argsort(-every[:, column], kind="stable")[:size]
            values, sequence, position = top.ranked(column)
            np.testing.assert_array_equal(values, every[order, column])
            np.testing.assert_array_equal(sequence * 10 + position, order)


def test_running_top_with_ties_ranks_by_corpus_order() -> None:
    rng = np.random.default_rng(1)
    values = rng.integers(0, 4, size=(200, 1)).astype(np.float32)  # many ties, also at the cut
    top = RunningTop(1, 30)
    for batch in batches(rng, 200, 1, values):
        top.update(batch)
    got, sequence, position = top.ranked(0)
    order = np.lexsort((np.arange(200), -values[:, 0]))[:30]
    np.testing.assert_array_equal(got, values[order, 0])
    tokens = sequence * 10 + position
    for value in np.unique(got):  # within a value, corpus order
        assert list(tokens[got == value]) == sorted(tokens[got == value])
    np.testing.assert_array_equal(tokens, order)  # the earliest tokens win a tie at the cut


def test_reservoir_holds_every_token_once_when_large_enough() -> None:
    rng = np.random.default_rng(2)
    stream = batches(rng, 137, 2)
    sample = Reservoir(500, seed=0)
    for batch in stream:
        sample.update(batch)
    tokens = sample.sequence * 10 + sample.position
    assert sample.seen == 137 and sorted(tokens) == list(range(137))
    every = np.concatenate([b.values for b in stream])
    np.testing.assert_array_equal(sample.values, every[tokens])  # values stay with their token


def test_reservoir_draws_every_token_with_the_same_chance() -> None:
    rng = np.random.default_rng(3)
    n_tokens, size, trials = 60, 12, 1500
    stream = batches(rng, n_tokens, 1)
    every = np.concatenate([b.values for b in stream])
    hits = np.zeros(n_tokens)
    for seed in range(trials):
        sample = Reservoir(size, seed)
        for batch in stream:
            sample.update(batch)
        tokens = sample.sequence * 10 + sample.position
        assert len(set(tokens.tolist())) == size  # without replacement
        np.testing.assert_array_equal(sample.values, every[tokens])
        hits[tokens] += 1
    # each token is drawn with chance size / n_tokens = 0.2: 300 expected, binomial sd about 15.5
    assert np.abs(hits - trials * size / n_tokens).max() < 5 * np.sqrt(trials * 0.2 * 0.8)
    early, late = hits[: n_tokens // 2].sum(), hits[n_tokens // 2 :].sum()  # no bias towards either end
    assert abs(early - late) < 5 * np.sqrt(trials * size)
