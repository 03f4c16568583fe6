"""Conformance checks for plugins, and a fake model for tests (like scikit-learn's ``check_estimator``).

A plugin author calls these from their own test suite::

    from probekit.testing import check_dataset, check_model_adapter, check_selector

    def test_my_selector_keeps_the_contract():
        check_selector(MySelector(MySelector.Params(seed=3)))

Each check raises ``AssertionError`` naming the check that failed and what was wrong, e.g.
``check_selector(Dup) [distinct_neurons]: for k = 2 it returned [0, 0]; need 2 distinct column indices in
[0, 20)``. The checks test what the contracts in :mod:`probekit.contracts` promise the core, not how well a plugin
works.

:class:`FakeModel` (from :mod:`probekit.fake_model`) is a model adapter with no weights, no network and no nnsight,
for tests of the core and of dataset plugins (:func:`fake_tokenizer`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from probekit.contracts import (
    BatchSites,
    DatasetPlugin,
    ModelAdapter,
    ProbingDataset,
    Selection,
    Selector,
    TokenBatch,
    dataset_problems,
)
from probekit.extraction import pad_batch, pad_token_id
from probekit.fake_model import FakeModel, fake_tokenizer

__all__ = ["FakeModel", "check_dataset", "check_model_adapter", "check_selector", "fake_tokenizer"]


@contextmanager
def _check(checker: str, name: str) -> Iterator[None]:
    """Re-raise any failure inside as ``AssertionError("checker [name]: ...")``."""
    try:
        yield
    except AssertionError as error:
        message = str(error)
        if message.startswith(checker):
            raise
        raise AssertionError(f"{checker} [{name}]: {message}") from None
    except Exception as error:  # a plugin may fail in any way; say which check it failed
        raise AssertionError(f"{checker} [{name}]: {type(error).__name__}: {error}") from error


def _read_only(array: np.ndarray) -> np.ndarray:
    copy = np.array(array)
    copy.setflags(write=False)
    return copy


# --------------------------------------------------------------------------------------------------------------
# Selectors


def planted_selection_data(n_samples: int, n_columns: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Float32 ``X`` [n_samples, n_columns] and bool ``y`` (about 40 % true) with two informative columns.

    Columns are standard normal; column ``n_columns // 3`` is shifted by +2 on positives and column
    ``2 * n_columns // 3`` by -1.5, the rest is noise. One column is scaled by 30 (no signal), so a selector that
    ranks by raw spread rather than by class separation is visible.
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_columns)).astype(np.float32)
    y = np.zeros(n_samples, dtype=bool)
    y[rng.permutation(n_samples)[: max(2, int(0.4 * n_samples))]] = True
    X[y, n_columns // 3] += 2.0
    X[y, (2 * n_columns) // 3] -= 1.5
    X[:, n_columns - 1] *= 30.0
    return X, y


def check_selector(selector: Selector, *, n_samples: int = 200, n_columns: int = 20, seed: int = 0) -> None:
    """Check that ``selector`` keeps the :class:`~probekit.contracts.Selector` contract on synthetic data.

    The data (``planted_selection_data``) has ``n_samples`` rows, ``n_columns`` candidate columns and a planted
    signal; ``seed`` draws it. Checked: ``ks_problem`` answers None or a message and accepts k = 1; ``select``
    returns a :class:`~probekit.contracts.Selection` for exactly each requested k (also out of order, and k equal to
    the number of columns), each with k distinct integer column indices in range, scores (when given) one finite or
    NaN float per neuron and JSON-serialisable details; it never writes into its inputs (they are read-only); the
    same call gives the same neurons; and the result depends only on the params and the arguments: a fresh instance
    built from the same params, the same instance after calls on other data, and a call asking for fewer ks (as on
    resume) all choose the same neurons. Selectors only ever receive the training split, so a selection that depends on
    nothing else cannot have seen the test split. Raises ``AssertionError`` naming the failed check.
    """
    checker = f"check_selector({type(selector).__name__})"
    if n_columns < 3 or n_samples < 10:
        raise ValueError("check_selector needs n_columns >= 3 and n_samples >= 10")
    X, y = planted_selection_data(n_samples, n_columns, seed)
    pristine_X, pristine_y = X.copy(), y.copy()
    X, y = _read_only(X), _read_only(y)
    shape = f"X_train [{n_samples} x {n_columns}]"

    def allowed(ks: list[int]) -> bool:
        with _check(checker, "ks_problem"):
            problem = selector.ks_problem(ks, n_columns)
            assert problem is None or (isinstance(problem, str) and problem), (
                f"ks_problem({ks}, {n_columns}) returned {problem!r}; it must return None or a non-empty message")
        return problem is None

    def select(ks: list[int], data: tuple[np.ndarray, np.ndarray] = (X, y), who: Selector = selector,
               check: str = "select") -> dict[int, Selection]:
        with _check(checker, check):
            try:
                result = who.select(data[0], data[1], list(ks))
            except ValueError as error:
                if "read-only" in str(error):
                    raise AssertionError(f"select({shape}, y_train, ks={ks}) tried to write into its input arrays "
                                         f"({error}); copy them before changing anything") from None
                raise
        with _check(checker, "inputs_unchanged"):
            assert np.array_equal(X, pristine_X) and np.array_equal(y, pristine_y), (
                "select() changed X_train or y_train; copy them before changing anything")
        with _check(checker, "returns_requested_ks"):
            assert isinstance(result, dict), f"select() returned {type(result).__name__}; need {{k: Selection}}"
            assert set(result) == set(ks), (f"asked for ks={ks}, got selections for {sorted(result, key=repr)}; "
                                            "need exactly one per requested k")
        for k in ks:
            _check_one_selection(checker, result[k], k, n_columns)
        return result

    with _check(checker, "ks_problem"):
        assert allowed([1]), f"ks_problem([1], {n_columns}) refuses k = 1 out of {n_columns} columns"
    ks = [3, 1, 2]  # out of order, as a spec may list them
    if not allowed(ks):
        ks = [1]
    first = select(ks)
    again = select(ks, check="reproducible")
    _same_neurons(checker, "reproducible", first, again, f"a second identical call (ks={ks})")
    if allowed([n_columns]):
        select([n_columns], check="k_equal_to_columns")

    def fresh() -> Selector:
        with _check(checker, "fresh_instance"):
            return type(selector)(selector.params)

    _same_neurons(checker, "fresh_instance", first, select(ks, who=fresh(), check="fresh_instance"),
                  "a fresh instance built from the same params (the choice must depend only on params and data)")
    # other data of the same shape, its signal in other columns (the next feature or layer of a sweep)
    other_X, other_y = planted_selection_data(n_samples, n_columns, seed + 1)
    other = (_read_only(other_X[:, ::-1]), _read_only(other_y))
    state = "keep no state between calls: one instance serves every feature and layer of a run"
    _same_neurons(checker, "no_state_between_calls", select(ks, other, who=fresh(), check="no_state_between_calls"),
                  select(ks, other, check="no_state_between_calls"),
                  f"a call on other data of the same shape, after calls on the first data ({state})")
    _same_neurons(checker, "no_state_between_calls", first, select(ks, check="no_state_between_calls"),
                  f"the first call repeated after one on other data ({state})")
    if len(ks) > 1:
        pending = [ks[-1]]
        _same_neurons(checker, "pending_ks", {k: first[k] for k in pending}, select(pending, check="pending_ks"),
                      f"a call asking only for ks={pending} (as when a run resumes) instead of ks={ks}")


def _check_one_selection(checker: str, selection: object, k: int, n_columns: int) -> None:
    with _check(checker, "selection_type"):
        assert isinstance(selection, Selection), (
            f"for k = {k} it returned {type(selection).__name__}; need probekit.contracts.Selection")
    assert isinstance(selection, Selection)
    neurons = np.asarray(selection.neurons)
    with _check(checker, "distinct_neurons"):
        assert neurons.ndim == 1 and (len(neurons) == 0 or np.issubdtype(neurons.dtype, np.integer)), (
            f"for k = {k} the neurons are {neurons.dtype} of shape {neurons.shape}; need a 1-D integer array")
        valid = (len(neurons) == k and len(np.unique(neurons)) == k
                 and (k == 0 or (neurons.min() >= 0 and neurons.max() < n_columns)))
        assert valid, (f"for k = {k} it returned {neurons.tolist()}; need {k} distinct column indices in "
                       f"[0, {n_columns})")
    if selection.scores is not None:
        with _check(checker, "scores"):
            scores = np.asarray(selection.scores, dtype=np.float64)
            assert scores.shape == (k,), f"for k = {k} scores has shape {scores.shape}; need one per neuron ({k},)"
            assert not np.isinf(scores).any(), f"for k = {k} scores hold infinity: {scores.tolist()}"
    with _check(checker, "details"):
        assert isinstance(selection.details, dict), f"for k = {k} details is {type(selection.details).__name__}"
        try:
            json.dumps(selection.details, default=float)  # as the core stores it
        except (TypeError, ValueError) as error:
            raise AssertionError(f"for k = {k} details {selection.details!r} are not JSON-serialisable ({error})")


def _same_neurons(checker: str, name: str, expected: Mapping[int, Selection], got: Mapping[int, Selection],
                  what: str) -> None:
    for k, selection in expected.items():
        before, after = np.asarray(selection.neurons).tolist(), np.asarray(got[k].neurons).tolist()
        if before != after:
            raise AssertionError(f"{checker} [{name}]: for k = {k} it chose {before}, but {after} in {what}")


# --------------------------------------------------------------------------------------------------------------
# Datasets


def check_dataset(plugin: DatasetPlugin, tokenizer: Any = None) -> ProbingDataset:
    """Build ``plugin``'s dataset with ``tokenizer`` (default: :func:`fake_tokenizer`) and check it; return it.

    Checked: ``build`` returns a dataset that ``probekit.contracts.dataset_problems`` finds sound (what the core
    checks after every build); building twice gives the same fingerprint (tokens, sites, labels, groups); every
    feature has sites of both classes, or is reported as skipped instead; sequences hold only the tokenizer's ids
    and no padding; token sites never sit on a special token (BOS, CLS, SEP, padding) and span sites never cover
    special tokens only; ``groups`` is None or one integer per site. Raises ``AssertionError`` naming the failed
    check.
    """
    checker = f"check_dataset({type(plugin).__name__})"
    tokenizer = fake_tokenizer() if tokenizer is None else tokenizer
    with _check(checker, "build"):
        dataset = plugin.build(tokenizer)
    with _check(checker, "dataset_problems"):
        problems = dataset_problems(dataset)
        assert not problems, "the core would refuse the dataset: " + "; ".join(problems)
    with _check(checker, "deterministic"):
        twice = plugin.build(tokenizer)
        assert not dataset_problems(twice), "a second build is unusable: " + "; ".join(dataset_problems(twice))
        assert twice.fingerprint == dataset.fingerprint, (
            f"two builds with the same params and tokenizer differ (fingerprints {dataset.fingerprint} and "
            f"{twice.fingerprint}); seed every random choice from the params")
        assert [s.name for s in twice.skipped] == [s.name for s in dataset.skipped], (
            "two builds skip different features")
    with _check(checker, "both_classes"):
        for feature in dataset.features:
            positives = int(feature.labels.sum())
            assert 0 < positives < len(feature.labels), (
                f"feature {feature.name!r} has {positives} positive and {len(feature.labels) - positives} negative "
                "sites; a feature needs both classes (report it in 'skipped' instead)")
    with _check(checker, "groups"):
        if dataset.groups is not None:
            groups = np.asarray(dataset.groups)
            assert groups.shape == (len(dataset.sites),) and np.issubdtype(groups.dtype, np.integer), (
                f"groups must be None or one integer per site ({len(dataset.sites)}), got {groups.dtype} "
                f"{groups.shape}")
    _check_tokens(checker, dataset, tokenizer)
    return dataset


def _check_tokens(checker: str, dataset: ProbingDataset, tokenizer: Any) -> None:
    vocabulary = len(tokenizer) if hasattr(tokenizer, "__len__") else None
    special = {int(i) for i in getattr(tokenizer, "all_special_ids", []) or []}
    pad = getattr(tokenizer, "pad_token_id", None)
    shared = {getattr(tokenizer, f"{name}_token_id", None) for name in ("bos", "eos", "cls", "sep", "unk")}
    with _check(checker, "token_ids"):
        for index, ids in enumerate(dataset.sequences):
            ids = np.asarray(ids)
            if vocabulary is not None:
                assert ids.min() >= 0 and ids.max() < vocabulary, (
                    f"sequence {index} holds token id {int(ids.max()) if ids.max() >= vocabulary else int(ids.min())}"
                    f", outside the tokenizer's vocabulary of {vocabulary}; tokenise with the tokenizer build() gets")
            if pad is not None and pad not in shared:
                assert pad not in ids, (f"sequence {index} holds the padding token {pad}; sequences must be unpadded "
                                        "(the core pads batches itself)")
    if not special:
        return
    sites = dataset.sites
    special_ids = np.fromiter(special, dtype=np.int64)
    with _check(checker, "special_token_sites"):
        for site in range(len(sites)):
            ids = np.asarray(dataset.sequences[sites.sequence[site]])[sites.start[site] : sites.end[site]]
            on_special = np.isin(ids, special_ids)
            if sites.aggregation == "token":
                assert not on_special.any(), (
                    f"site {site} (sequence {int(sites.sequence[site])}, position {int(sites.start[site])}) is the "
                    f"special token {int(ids[0])} ({tokenizer.convert_ids_to_tokens(int(ids[0]))!r}); probe real "
                    "tokens only (skip offsets of (0, 0) or use return_special_tokens_mask)")
            else:
                assert not on_special.all(), (
                    f"site {site} (sequence {int(sites.sequence[site])}, positions {int(sites.start[site])}-"
                    f"{int(sites.end[site])}) covers special tokens only")


# --------------------------------------------------------------------------------------------------------------
# Model adapters

_ADAPTER_TEXTS = (
    "The year 1984 began on a Sunday, said Alice.",
    "def area(r): return 3.14159 * r ** 2",
    "Short one.",
)


def check_model_adapter(adapter: ModelAdapter, *, texts: Sequence[str] = _ADAPTER_TEXTS,
                        layers: Sequence[int] | None = None, atol: float = 1e-4) -> None:
    """Check that ``adapter`` keeps the :class:`~probekit.contracts.ModelAdapter` contract.

    ``texts`` (of different lengths, so batches need padding) are tokenised with the adapter's tokenizer;
    ``layers`` default to the first, middle and last. Checked: ``identity`` is a non-empty string; ``n_layers`` and
    ``d_mlp`` are positive integers; ``padding_side`` is 'left' or 'right'; the tokenizer encodes text with character
    offsets and special-token masks; ``activations(batch, layers, sites)`` returns ``{layer: float32 array
    [n_sites, d_mlp]}`` for exactly the requested layers (asked for out of order), finite; for token, mean, max and
    last sites, a sequence inside a batch padded on the adapter's side gives the same values (within ``atol``) as
    the sequence alone, reduced by hand from its per-token values; a repeated call gives the same values; and the
    case-study hooks ``probekit inspect`` uses, where offered (``weights``, ``unembedding``, ``final_norm``,
    ``ablate``: shapes that agree, and mean-ablation to ``means=[0]`` equal to zero-ablation). Loads the model's
    weights. Raises ``AssertionError`` naming the failed check.
    """
    checker = f"check_model_adapter({type(adapter).__name__})"
    with _check(checker, "identity"):
        identity = adapter.identity
        assert isinstance(identity, str) and identity.strip(), f"identity is {identity!r}; need a non-empty string"
    with _check(checker, "sizes"):
        for name in ("n_layers", "d_mlp"):
            value = getattr(adapter, name, None)
            assert isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0, (
                f"{name} is {value!r}; need a positive int")
    with _check(checker, "padding_side"):
        assert adapter.padding_side in ("left", "right"), (
            f"padding_side is {adapter.padding_side!r}; need 'left' or 'right'")
    sequences = _check_tokenizer(checker, adapter.tokenizer, texts)
    if layers is None:
        layers = sorted({0, adapter.n_layers // 2, adapter.n_layers - 1}, reverse=True)  # out of order on purpose
    layers = list(layers)

    def call(batch: TokenBatch, sites: BatchSites, check: str) -> dict[int, np.ndarray]:
        with _check(checker, check):
            output = adapter.activations(batch, list(layers), sites)
        with _check(checker, "activations_output"):
            assert isinstance(output, dict), f"activations() returned {type(output).__name__}; need {{layer: array}}"
            assert set(output) == set(layers), f"asked for layers {layers}, got {sorted(output, key=repr)}"
            for layer, values in output.items():
                assert isinstance(values, np.ndarray), (
                    f"layer {layer}: got {type(values).__name__}; need a numpy array")
                assert values.dtype == np.float32, f"layer {layer}: dtype {values.dtype}; need float32"
                expected = (len(sites.row), adapter.d_mlp)
                assert values.shape == expected, (
                    f"layer {layer}: shape {values.shape}; need [n_sites, d_mlp] = {list(expected)}")
                assert np.isfinite(values).all(), f"layer {layer}: {int((~np.isfinite(values)).sum())} non-finite"
        return output

    # per-token values of each sequence alone (no padding), reduced by hand below
    alone = []
    for sequence in sequences:
        batch, _ = _padded([sequence], adapter)
        positions = torch.arange(len(sequence))
        sites = BatchSites(torch.zeros(len(sequence), dtype=torch.long), positions, positions + 1, "token")
        alone.append(call(batch, sites, "activations"))
    batch, offsets = _padded(sequences, adapter)
    for aggregation in ("token", "mean", "max", "last"):
        rows, starts, ends, expected = [], [], [], {layer: [] for layer in layers}
        for row, sequence in enumerate(sequences):
            for start, end in _spans(len(sequence), aggregation):
                rows.append(row)
                starts.append(start + offsets[row])
                ends.append(end + offsets[row])
                for layer in layers:
                    span = alone[row][layer][start:end]
                    reduced = {"token": span[0], "mean": span.mean(axis=0, dtype=np.float64), "max": span.max(axis=0),
                               "last": span[-1]}[aggregation]
                    expected[layer].append(reduced)
        sites = BatchSites(torch.tensor(rows), torch.tensor(starts), torch.tensor(ends), aggregation)
        output = call(batch, sites, "activations")
        with _check(checker, "padding_invariance"):
            for layer in layers:
                want = np.asarray(expected[layer], dtype=np.float32)
                gap = np.abs(output[layer] - want)
                assert gap.max() <= atol, (
                    f"layer {layer}, {aggregation} sites: a sequence inside a batch padded on the "
                    f"{adapter.padding_side} differs from the same sequence alone by up to {gap.max():.3g} "
                    f"(site {int(gap.max(axis=1).argmax())}; atol {atol}); mask the padding and count positions "
                    "from each row's first real token")
        if aggregation == "mean":
            repeated = call(batch, sites, "reproducible")
            with _check(checker, "reproducible"):
                for layer in layers:
                    gap = float(np.abs(repeated[layer] - output[layer]).max())
                    assert gap <= atol, f"layer {layer}: two identical calls differ by up to {gap:.3g}"
    _check_case_study_hooks(checker, adapter, batch, layers)


def _offered(hook: Any) -> Any:
    """The hook's result, or None when the adapter declines it (``NotImplementedError``)."""
    try:
        return hook()
    except NotImplementedError:
        return None


def _check_case_study_hooks(checker: str, adapter: ModelAdapter, batch: TokenBatch, layers: Sequence[int]) -> None:
    """The optional hooks ``probekit inspect`` uses, each checked only when offered: ``weights`` (shapes agree with
    ``d_mlp`` and one ``d_model``), ``unembedding`` and ``final_norm`` (agree with that ``d_model``), ``ablate``
    (one finite loss per sequence; ablating changes only the ablated loss, and mean-ablation takes ``means=``)."""
    d_model = None
    with _check(checker, "weights"):
        for layer in layers:
            weights = _offered(lambda: adapter.weights(layer))
            if weights is None:
                break
            d_model = weights.W_in.shape[1]
            assert weights.W_in.shape == (adapter.d_mlp, d_model), (
                f"layer {layer}: W_in has shape {weights.W_in.shape}; need [d_mlp, d_model] (neuron-major)")
            assert weights.W_out.shape == (d_model, adapter.d_mlp), (
                f"layer {layer}: W_out has shape {weights.W_out.shape}; need [d_model, d_mlp] = "
                f"{[d_model, adapter.d_mlp]}")
            assert weights.b_in is None or weights.b_in.shape == (adapter.d_mlp,), (
                f"layer {layer}: b_in has shape {weights.b_in.shape}; need [d_mlp]")
    with _check(checker, "unembedding"):
        W_U = _offered(adapter.unembedding)
        if W_U is not None and d_model is not None:
            assert W_U.ndim == 2 and W_U.shape[1] == d_model, (
                f"unembedding has shape {W_U.shape}; need [vocab, d_model] with d_model = {d_model}")
    with _check(checker, "final_norm"):
        norm = _offered(adapter.final_norm)
        if norm is not None and d_model is not None:
            assert np.shape(norm.scale) == (d_model,), (
                f"final_norm scale has shape {np.shape(norm.scale)}; need [{d_model}]")
    with _check(checker, "ablate"):
        neurons = [(layers[0], 0)]
        zero = _offered(lambda: adapter.ablate(neurons, batch, "zero"))
        if zero is None:
            return
        rows = len(batch.input_ids)
        for name in ("loss_clean", "loss_ablated"):
            values = np.asarray(getattr(zero, name))
            assert values.shape == (rows,) and np.isfinite(values).all(), (
                f"ablate() {name} is {values!r}; need one finite loss per sequence ({rows})")
        mean = adapter.ablate(neurons, batch, "mean", means=[0.0])
        zero_again = adapter.ablate(neurons, batch, "zero")
        assert np.allclose(mean.loss_clean, zero.loss_clean, atol=1e-4), "loss_clean depends on the ablation"
        assert np.allclose(mean.loss_ablated, zero_again.loss_ablated, atol=1e-4), (
            "mean-ablation with means=[0.0] must equal zero-ablation")


def _check_tokenizer(checker: str, tokenizer: Any, texts: Sequence[str]) -> list[np.ndarray]:
    sequences = []
    with _check(checker, "tokenizer"):
        assert tokenizer is not None, "the adapter has no tokenizer"
        for text in texts:
            encoded = tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True)
            ids = np.asarray(encoded["input_ids"])
            offsets = np.asarray(encoded["offset_mapping"]).reshape(-1, 2)
            special = np.asarray(encoded["special_tokens_mask"], dtype=bool)
            assert ids.ndim == 1 and len(ids) > 0 and np.issubdtype(ids.dtype, np.integer), (
                f"encoding {text!r} gave input_ids {ids.tolist()[:10]}; need a non-empty list of token ids")
            assert len(offsets) == len(ids) == len(special), (
                f"encoding {text!r} gave {len(ids)} ids, {len(offsets)} offsets, {len(special)} special-token flags")
            real = offsets[~special]
            assert len(real) and (real[:, 0] <= real[:, 1]).all() and real.min() >= 0 and real.max() <= len(text), (
                f"encoding {text!r} gave character offsets {real.tolist()[:10]} outside the text; dataset plugins "
                "label tokens by these offsets (use a Hugging Face fast tokenizer)")
            sequences.append(ids.astype(np.int64))
    return sequences


def _padded(sequences: Sequence[np.ndarray], adapter: ModelAdapter) -> tuple[TokenBatch, np.ndarray]:
    """A batch padded on the adapter's side, as the extraction engine builds it, and each row's offset."""
    return pad_batch(sequences, pad_token_id(adapter.tokenizer), adapter.padding_side == "left")


def _spans(length: int, aggregation: str) -> list[tuple[int, int]]:
    if aggregation == "token":
        return [(position, position + 1) for position in range(length)]
    spans = [(0, length), (length // 2, length), (0, max(1, length // 2))]
    if length > 1:
        spans.append((1, length))  # skip-first-1
    return spans
