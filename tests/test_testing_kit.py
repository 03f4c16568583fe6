"""probekit.testing, the plugin author's conformance kit: every built-in plugin passes it, a broken one fails it with a
message naming the check, and the FakeModel's activations follow its documented closed form."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch

from probekit.contracts import (
    AblationResult,
    DatasetPlugin,
    Feature,
    PluginParams,
    ProbeSites,
    ProbingDataset,
    Selection,
    Selector,
    TokenBatch,
)
from probekit.errors import SpecError
from probekit.extraction import extract_activations
from probekit.fake_model import FAKE_DETECTORS
from probekit.registry import PluginRegistry
from probekit.spec import validate_spec_text
from probekit.testing import (
    FakeModel,
    check_dataset,
    check_model_adapter,
    check_selector,
    fake_tokenizer,
)

# ----------------------------------------------------------------------------------------------------------------
# the built-in plugins pass

SELECTORS = {"mean_diff": {}, "random": {}, "f_stat": {}, "mutual_info": {}, "l1_logreg": {}, "adaptive_threshold": {},
             "osp": {"time_limit": 5.0}}


@pytest.mark.parametrize("name", sorted(SELECTORS))
def test_every_built_in_selector_passes_check_selector(name: str) -> None:
    cls = PluginRegistry().get("selectors", name)
    check_selector(cls(cls.Params(**SELECTORS[name])))


def test_check_selector_respects_ks_problem() -> None:
    random = PluginRegistry().get("selectors", "random")
    check_selector(random(random.Params(pool=5, seed=7)), n_samples=60, n_columns=12, seed=4)  # k = 12 is refused


def text_features(**params):
    cls = PluginRegistry().get("datasets", "text_features")
    return cls(cls.Params(max_sequences=30, sequence_length=48, max_examples=100, min_positive_rate=0.02, **params))


def test_text_features_passes_check_dataset_on_the_fake_tokenizer() -> None:
    dataset = check_dataset(text_features())
    assert {"all_digits", "leading_capital"} <= {f.name for f in dataset.features}


def test_text_features_passes_check_dataset_on_minilm(minilm) -> None:
    check_dataset(text_features(features=["all_digits", "is_not_alphanumeric"]), minilm.tokenizer)


def test_labeled_tokens_passes_check_dataset(tmp_path: Path) -> None:
    sentences = ["Alice met Bob in Paris on Monday.", "On Friday, Carol flew from Berlin to Rome with Dave."] * 10
    names = {"Alice", "Bob", "Carol", "Dave"}
    lines = [{"text": text, "spans": [{"start": m.start(), "end": m.end(), "label": "person"}
                                      for m in re.finditer(r"\w+", text) if m.group() in names]}
             for text in sentences]
    path = tmp_path / "spans.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines))
    cls = PluginRegistry().get("datasets", "labeled_tokens")
    dataset = check_dataset(cls(cls.Params(path=str(path), max_examples=100, sequence_length=16)))
    assert [f.name for f in dataset.features] == ["person"]


def test_labeled_sequences_passes_check_dataset(tmp_path: Path) -> None:
    table = tmp_path / "docs.jsonl"
    rows = [{"text": f"{word} {i} " * 20, "label": word} for i in range(6) for word in ("red", "blue")]
    table.write_text("\n".join(json.dumps(row) for row in rows))
    cls = PluginRegistry().get("datasets", "labeled_sequences")
    dataset = check_dataset(cls(cls.Params(source={"kind": "table", "path": str(table)}, sequence_length=16)))
    assert dataset.sites.aggregation == "mean"


@pytest.mark.parametrize("params", [{}, {"padding_side": "left", "n_layers": 5, "d_mlp": 16, "seed": 3}])
def test_the_fake_model_passes_check_model_adapter(params: dict) -> None:
    check_model_adapter(FakeModel(FakeModel.Params(**params)))


def test_minilm_passes_check_model_adapter(minilm) -> None:
    check_model_adapter(minilm)  # about a second once the weights are loaded


@pytest.mark.parametrize("fixture", ["tiny_neox_dir", "tiny_gpt2_dir", "tiny_llama_dir"])
def test_causal_models_pass_check_model_adapter_with_their_case_study_hooks(fixture: str, request) -> None:
    """LayerNorm (GPT-NeoX, GPT-2) and RMSNorm (Llama) final norms, Conv1D and gated weights, and ablation."""
    from probekit_plugins.models.huggingface import HuggingFaceModel

    adapter = HuggingFaceModel(HuggingFaceModel.Params(model=str(request.getfixturevalue(fixture))))
    check_model_adapter(adapter)
    assert adapter.final_norm() is not None and adapter.final_norm().centered == (fixture != "tiny_llama_dir")


class NoMeans(FakeModel):
    """Offers ablation, but mean-ablation ignores the means it is given."""

    def ablate(self, neurons, batch, mode="zero", *, means=None):
        rows = len(batch.input_ids)
        return AblationResult(np.ones(rows), np.full(rows, 2.0 if mode == "zero" else 3.0))


def test_an_adapter_whose_mean_ablation_ignores_means_fails_the_kit() -> None:
    with pytest.raises(AssertionError, match=r"\[ablate\]: mean-ablation with means=\[0.0\] must equal zero-ablation"):
        check_model_adapter(NoMeans(FakeModel.Params()))


# ----------------------------------------------------------------------------------------------------------------
# broken selectors fail, naming the check


def top_by_gap(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    gaps = np.abs(X[y].mean(axis=0) - X[~y].mean(axis=0))
    return np.argsort(-gaps, kind="stable")


class Duplicates(Selector):
    """Returns column 0 k times."""

    def select(self, X_train, y_train, ks):
        return {k: Selection(np.zeros(k, dtype=np.int64)) for k in ks}


class OneShort(Selector):
    """Returns k - 1 neurons."""

    def select(self, X_train, y_train, ks):
        return {k: Selection(top_by_gap(X_train, y_train)[: k - 1]) for k in ks}


class Centering(Selector):
    """Centres X_train in place before ranking."""

    def select(self, X_train, y_train, ks):
        X_train -= X_train.mean(axis=0)
        return {k: Selection(top_by_gap(X_train, y_train)[:k]) for k in ks}


class LargestKOnly(Selector):
    """Answers only the largest k."""

    def select(self, X_train, y_train, ks):
        return {max(ks): Selection(top_by_gap(X_train, y_train)[: max(ks)])}


class Unseeded(Selector):
    """Draws without a seed."""

    def select(self, X_train, y_train, ks):
        order = np.random.default_rng().permutation(X_train.shape[1])
        return {k: Selection(order[:k]) for k in ks}


class Memo(Selector):
    """Caches its ranking by the shape of X_train (stale on the next feature of the same size)."""

    def __init__(self, params: PluginParams | None = None) -> None:
        super().__init__(params)
        self.cache: dict[tuple[int, ...], np.ndarray] = {}

    def select(self, X_train, y_train, ks):
        order = self.cache.setdefault(X_train.shape, top_by_gap(X_train, y_train))
        return {k: Selection(order[:k]) for k in ks}


class DependsOnKs(Selector):
    """Ranks differently depending on how many ks it is asked for."""

    def select(self, X_train, y_train, ks):
        order = top_by_gap(X_train, y_train)
        order = order if len(ks) > 1 else order[::-1]
        return {k: Selection(order[:k]) for k in ks}


class InstanceSeeded(Selector):
    """Seeds its draw with a count of instances rather than with a param."""

    instances = 0

    def __init__(self, params: PluginParams | None = None) -> None:
        super().__init__(params)
        InstanceSeeded.instances += 1
        self.seed = InstanceSeeded.instances

    def select(self, X_train, y_train, ks):
        order = np.random.default_rng(self.seed).permutation(X_train.shape[1])
        return {k: Selection(order[:k]) for k in ks}


class FloatIndices(Selector):
    """Returns float column indices."""

    def select(self, X_train, y_train, ks):
        return {k: Selection(top_by_gap(X_train, y_train)[:k].astype(float)) for k in ks}


class InfiniteScores(Selector):
    """Scores a neuron as infinity."""

    def select(self, X_train, y_train, ks):
        return {k: Selection(top_by_gap(X_train, y_train)[:k], np.full(k, np.inf)) for k in ks}


class SetDetails(Selector):
    """Puts a set in its details."""

    def select(self, X_train, y_train, ks):
        return {k: Selection(top_by_gap(X_train, y_train)[:k], details={"chosen": {1, 2}}) for k in ks}


class BadKsProblem(Selector):
    """Answers ks_problem with False."""

    def ks_problem(self, ks: Sequence[int], n_columns: int):
        return False

    def select(self, X_train, y_train, ks):
        return {k: Selection(top_by_gap(X_train, y_train)[:k]) for k in ks}


class Crashing(Selector):
    """Fails on every call."""

    def select(self, X_train, y_train, ks):
        raise RuntimeError("solver exploded")


@pytest.mark.parametrize(("selector", "message"), [
    (Duplicates, r"check_selector\(Duplicates\) \[distinct_neurons\]: for k = 3 it returned \[0, 0, 0\]; need 3 "
                 r"distinct column indices in \[0, 20\)"),
    (OneShort, r"check_selector\(OneShort\) \[distinct_neurons\]: for k = 3 it returned \[\d+, \d+\]; need 3 distinct"),
    (Centering, r"check_selector\(Centering\) \[select\]: select\(X_train \[200 x 20\], y_train, ks=\[3, 1, 2\]\) "
                r"tried to write into its input arrays \(.*read-only.*\); copy them"),
    (LargestKOnly, r"check_selector\(LargestKOnly\) \[returns_requested_ks\]: asked for ks=\[3, 1, 2\], got "
                   r"selections for \[3\]"),
    (Unseeded, r"check_selector\(Unseeded\) \[reproducible\]: for k = 3 it chose \[.*\], but \[.*\] in a second "
               r"identical call"),
    (Memo, r"check_selector\(Memo\) \[no_state_between_calls\]: for k = 3 it chose .* in a call on other data of the "
           r"same shape, after calls on the first data \(keep no state between calls"),
    (InstanceSeeded, r"check_selector\(InstanceSeeded\) \[fresh_instance\]: for k = 3 it chose .* in a fresh instance "
                     r"built from the same params"),
    (DependsOnKs, r"check_selector\(DependsOnKs\) \[pending_ks\]: for k = 2 it chose .* asking only for ks=\[2\]"),
    (FloatIndices, r"check_selector\(FloatIndices\) \[distinct_neurons\]: for k = 3 the neurons are float64 of shape "
                   r"\(3,\); need a 1-D integer array"),
    (InfiniteScores, r"check_selector\(InfiniteScores\) \[scores\]: for k = 3 scores hold infinity"),
    (SetDetails, r"check_selector\(SetDetails\) \[details\]: for k = 3 details \{'chosen': \{1, 2\}\} are not "
                 r"JSON-serialisable"),
    (BadKsProblem, r"check_selector\(BadKsProblem\) \[ks_problem\]: ks_problem\(\[1\], 20\) returned False; it must "
                   r"return None or a non-empty message"),
    (Crashing, r"check_selector\(Crashing\) \[select\]: RuntimeError: solver exploded"),
])
def test_a_broken_selector_fails_check_selector_naming_the_check(selector: type[Selector], message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check_selector(selector())


# ----------------------------------------------------------------------------------------------------------------
# broken datasets fail, naming the check


TEXTS_TO_LABEL = ("one two three four", "five six seven eight nine", "ten eleven twelve")


def token_dataset(tokenizer, labels_of: Callable[[int], np.ndarray], name: str = "even",
                  texts: Sequence[str] = TEXTS_TO_LABEL) -> ProbingDataset:
    """Every real token of ``texts`` is a site; ``labels_of(n_sites)`` labels them."""
    sequences, sequence, position = [], [], []
    for index, text in enumerate(texts):
        encoded = tokenizer(text, return_special_tokens_mask=True)
        sequences.append(np.asarray(encoded["input_ids"]))
        for pos, special in enumerate(encoded["special_tokens_mask"]):
            if not special:
                sequence.append(index)
                position.append(pos)
    start = np.asarray(position)
    sites = ProbeSites(np.asarray(sequence), start, start + 1, "token")
    return ProbingDataset(sequences, sites, [Feature(name, np.arange(len(sites)), labels_of(len(sites)))])


class Twice(DatasetPlugin):
    """Two features named 'even'."""

    def build(self, tokenizer):
        dataset = token_dataset(tokenizer, lambda n: np.arange(n) % 2 == 0)
        dataset.features.append(dataset.features[0])
        return dataset


class Shuffled(DatasetPlugin):
    """Labels drawn without a seed."""

    def build(self, tokenizer):
        return token_dataset(tokenizer, lambda n: np.random.default_rng().permutation(n) % 2 == 0)


class Constant(DatasetPlugin):
    """A feature whose every site is positive, not reported as skipped."""

    def build(self, tokenizer):
        return token_dataset(tokenizer, lambda n: np.ones(n, dtype=bool), name="always")


class OnSpecialTokens(DatasetPlugin):
    """Probes position 0, the BOS token."""

    def build(self, tokenizer):
        dataset = token_dataset(tokenizer, lambda n: np.arange(n) % 2 == 0)
        start = dataset.sites.start.copy()
        start[0] = 0
        sites = ProbeSites(dataset.sites.sequence, start, start + 1, "token")
        return ProbingDataset(dataset.sequences, sites, dataset.features)


class Padded(DatasetPlugin):
    """Pads its sequences to one length itself."""

    def build(self, tokenizer):
        dataset = token_dataset(tokenizer, lambda n: np.arange(n) % 2 == 0)
        width = max(len(s) for s in dataset.sequences)
        padded = [np.concatenate([s, np.full(width - len(s), tokenizer.pad_token_id)]) for s in dataset.sequences]
        return ProbingDataset(padded, dataset.sites, dataset.features)


class BadGroups(DatasetPlugin):
    """Gives one group per sequence instead of one per site."""

    def build(self, tokenizer):
        dataset = token_dataset(tokenizer, lambda n: np.arange(n) % 2 == 0)
        dataset.groups = np.arange(len(dataset.sequences))
        return dataset


@pytest.mark.parametrize(("plugin", "message"), [
    (Twice, r"check_dataset\(Twice\) \[dataset_problems\]: the core would refuse the dataset: feature names must be "
            r"unique; repeated: 'even'"),
    (Shuffled, r"check_dataset\(Shuffled\) \[deterministic\]: two builds with the same params and tokenizer differ "
               r"\(fingerprints \w+ and \w+\); seed every random choice"),
    (Constant, r"check_dataset\(Constant\) \[both_classes\]: feature 'always' has \d+ positive and 0 negative sites"),
    (OnSpecialTokens, r"check_dataset\(OnSpecialTokens\) \[special_token_sites\]: site 0 \(sequence 0, position 0\) "
                      r"is the special token 1 \('<bos>'\)"),
    (Padded, r"check_dataset\(Padded\) \[token_ids\]: sequence \d holds the padding token 0; sequences must be "
             r"unpadded"),
    (BadGroups, r"check_dataset\(BadGroups\) \[dataset_problems\]: .*groups must be one integer per site"),
])
def test_a_broken_dataset_fails_check_dataset_naming_the_check(plugin: type[DatasetPlugin], message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check_dataset(plugin())


def test_check_dataset_names_the_build_error(tmp_path: Path) -> None:
    cls = PluginRegistry().get("datasets", "labeled_tokens")
    with pytest.raises(AssertionError, match=r"check_dataset\(LabeledTokens\) \[build\]: RunError: .*no such file"):
        check_dataset(cls(cls.Params(path=str(tmp_path / "missing.jsonl"))))


# ----------------------------------------------------------------------------------------------------------------
# broken model adapters fail, naming the check


class Float64(FakeModel):
    """Returns float64 activations."""

    def activations(self, batch, layers, sites):
        return {layer: values.astype(np.float64) for layer, values in super().activations(batch, layers, sites).items()}


class Narrow(FakeModel):
    """Drops the last neuron."""

    def activations(self, batch, layers, sites):
        return {layer: values[:, :-1] for layer, values in super().activations(batch, layers, sites).items()}


class LastLayerOnly(FakeModel):
    """Answers only the last requested layer."""

    def activations(self, batch, layers, sites):
        return {layers[-1]: super().activations(batch, layers, sites)[layers[-1]]}


class PaddingLeaks(FakeModel):
    """Ignores the attention mask: a left pad counts as the previous token of the first real one."""

    def activations(self, batch, layers, sites):
        everything = TokenBatch(batch.input_ids, torch.ones_like(batch.attention_mask))
        return super().activations(everything, layers, sites)


class NoIdentity(FakeModel):
    """Has an empty identity."""

    @property
    def identity(self) -> str:
        return ""


@pytest.mark.parametrize(("adapter", "message"), [
    (Float64(), r"check_model_adapter\(Float64\) \[activations_output\]: layer 1: dtype float64; need float32"),
    (Narrow(), r"check_model_adapter\(Narrow\) \[activations_output\]: layer 1: shape \(\d+, 63\); need \[n_sites, "
               r"d_mlp\] = \[\d+, 64\]"),
    (LastLayerOnly(), r"check_model_adapter\(LastLayerOnly\) \[activations_output\]: asked for layers \[1, 0\], got "
                      r"\[0\]"),
    (PaddingLeaks(FakeModel.Params(padding_side="left")),
     r"check_model_adapter\(PaddingLeaks\) \[padding_invariance\]: layer 1, token sites: a sequence inside a batch "
     r"padded on the left differs from the same sequence alone by up to [\d.]+"),
    (NoIdentity(), r"check_model_adapter\(NoIdentity\) \[identity\]: identity is ''; need a non-empty string"),
])
def test_a_broken_adapter_fails_check_model_adapter_naming_the_check(adapter: FakeModel, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check_model_adapter(adapter)


# ----------------------------------------------------------------------------------------------------------------
# the fake model


TEXTS = ["In 1984 the Museum opened 12 rooms.", "def add(a, b): return a + b", "Short one.",
         "Version 3.12.1 was released on 2024-10-07; see the NEWS file."]


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("aggregation", ["token", "mean", "max"])
def test_extraction_of_the_fake_model_equals_its_closed_form(padding_side: str, aggregation: str) -> None:
    model = FakeModel(FakeModel.Params(n_layers=3, d_mlp=32, seed=5, padding_side=padding_side))
    sequences = [np.asarray(model.tokenizer(text)["input_ids"]) for text in TEXTS]
    if aggregation == "token":
        sequence = np.concatenate([np.full(len(s), i) for i, s in enumerate(sequences)])
        start = np.concatenate([np.arange(len(s)) for s in sequences])
        end = start + 1
    else:
        sequence, start, end = np.arange(len(sequences)), np.ones(len(sequences)), [len(s) for s in sequences]
    sites = ProbeSites(sequence, start, end, aggregation)
    engine = extract_activations(model, ProbingDataset(sequences, sites, []), [0, 2], batch_tokens=2 * 20)
    closed_form = [model.neuron_values(s) for s in sequences]
    for site in range(len(sites)):
        values = closed_form[sites.sequence[site]]
        for layer in (0, 2):
            span = values[layer][sites.start[site] : sites.end[site]]
            expected = span.mean(axis=0) if aggregation == "mean" else span.max(axis=0)
            np.testing.assert_allclose(engine[layer][site], expected, rtol=1e-6, atol=1e-6)


def test_the_closed_form_is_the_documented_formula() -> None:
    model = FakeModel(FakeModel.Params(d_mlp=8, seed=2))
    tokenizer = model.tokenizer
    ids = np.asarray(tokenizer("The 42 cats, said Bob.")["input_ids"])
    vocabulary = len(tokenizer)
    for layer in (0, 1):
        rng = np.random.default_rng([2, layer])
        token = rng.standard_normal((vocabulary, 8), dtype=np.float32)
        context = 0.5 * rng.standard_normal((vocabulary + 1, 8), dtype=np.float32)
        texts = [tokenizer.decode([i]) for i in range(vocabulary)]
        amplitude = 3.0 * 0.75**layer
        for name, neuron in model.planted_neurons(layer).items():
            members = np.array([i not in tokenizer.all_special_ids and FAKE_DETECTORS[name](t)
                                for i, t in enumerate(texts)])
            token[:, neuron] = np.where(members, amplitude, -amplitude)
            context[:, neuron] *= 0.2
        previous = np.concatenate([[vocabulary], ids[:-1]])  # row `vocabulary`: no previous token
        expected = torch.nn.functional.gelu(torch.from_numpy(token[ids] + context[previous] - 0.5)).numpy()
        np.testing.assert_allclose(model.neuron_values(ids, [layer])[layer], expected, rtol=1e-6, atol=1e-7)
    assert len(set(model.planted_neurons(0).values())) == len(FAKE_DETECTORS)


def test_the_planted_neurons_read_their_token_classes(fake_model: FakeModel) -> None:
    text = "In 1984 the Museum opened, at last: 12 new rooms!"
    encoded = fake_model.tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True)
    strings = [text[a:b] for (a, b) in encoded["offset_mapping"]]
    special = np.asarray(encoded["special_tokens_mask"], dtype=bool)
    values = fake_model.neuron_values(encoded["input_ids"])
    for layer in range(fake_model.n_layers):
        for name, neuron in fake_model.planted_neurons(layer).items():
            members = np.array([FAKE_DETECTORS[name](s) for s in strings]) & ~special
            assert members.any() and (~members).any(), name
            on, off = values[layer][members, neuron], values[layer][~members, neuron]
            assert on.min() > off.max(), (layer, name)  # every member above every non-member


def test_identity_names_the_params_and_tokenizer_gives_offsets() -> None:
    identities = {FakeModel(FakeModel.Params(**p)).identity for p in
                  [{}, {"seed": 1}, {"d_mlp": 32}, {"n_layers": 3}, {"padding_side": "left"}]}
    assert len(identities) == 5
    assert "d_mlp=64" in FakeModel().identity and "seed=0" in FakeModel().identity
    tokenizer = fake_tokenizer()
    text = "The year 1984 was long."
    encoded = tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True)
    assert encoded["special_tokens_mask"] == [1, 0, 0, 0, 0, 0, 0]
    assert tokenizer.convert_ids_to_tokens(encoded["input_ids"][0]) == "<bos>"
    assert [text[a:b] for a, b in encoded["offset_mapping"][1:]] == ["The", " year", " 1984", " was", " long", "."]
    assert tokenizer.pad_token == "<pad>" and tokenizer.get_vocab() == fake_tokenizer().get_vocab()


def test_the_fake_model_is_found_through_its_entry_point(fake_model_plugin: str, tmp_path: Path) -> None:
    assert PluginRegistry().get("models", fake_model_plugin) is FakeModel
    spec = (f"models:\n  - plugin: {fake_model_plugin}\n    params: {{d_mlp: 16, padding_side: left}}\n"
            "datasets:\n  - plugin: text_features\nlayers: [0, 1]\nselectors:\n  - plugin: mean_diff\nks: [1]\n")
    validated = validate_spec_text(spec, "spec.yaml", PluginRegistry())
    (model,) = validated.models
    assert model.instantiate().identity == FakeModel(FakeModel.Params(d_mlp=16, padding_side="left")).identity
    with pytest.raises(SpecError, match=r"models\[0\]\.params\.d_mlp: Input should be greater than or equal to 4"):
        validate_spec_text(spec.replace("d_mlp: 16", "d_mlp: 2"), "spec.yaml", PluginRegistry())
