"""A cell is one (model, dataset, feature, layer, selector, k) of a spec; this module computes cells: which features
can be probed, and the result rows of one (feature, layer) for every selector and k still to do."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from probekit.contracts import Feature, Selection, Selector
from probekit.controls import random_neurons, shuffled_labels
from probekit.errors import RunError, guarded
from probekit.manifest import RunManifest
from probekit.probing import fit_and_evaluate, mean_difference, top_k
from probekit.spec import ResolvedPlugin, RunSpec, SplitSettings
from probekit.splits import F1Bootstrap, Split, SplitError, split_feature


@dataclass(frozen=True)
class CellKey:
    """What one cell of a (feature, layer) computes: a selector's probe for k, or a control of it (``control``
    set; ``random_neurons`` has no selector: "")."""

    selector: str
    k: int
    control: str = ""


def cell_id(fingerprint: str, model: str, dataset: str, feature: str, layer: int, key: CellKey) -> str:
    """Stable id of one cell of a spec (a probe's id has no control part, as before controls existed)."""
    parts = [fingerprint, model, dataset, feature, layer, key.selector, key.k] + ([key.control] if key.control else [])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:20]


def layer_cells(spec: RunSpec, selectors: Sequence[str]) -> list[CellKey]:
    """The cells of one (feature, layer): every selector and k, and every control the spec asks for."""
    keys = [CellKey(selector, k) for selector in selectors for k in spec.ks]
    if "shuffled_labels" in spec.controls:
        keys += [CellKey(selector, k, "shuffled_labels") for selector in selectors for k in spec.ks]
    if "random_neurons" in spec.controls:
        keys += [CellKey("", k, "random_neurons") for k in spec.ks]
    return keys


def resolve_layers(requested: str | list[int], n_layers: int, model: str) -> list[int]:
    """The spec's layers for a model with ``n_layers`` blocks, or a clear error for a layer it lacks."""
    if isinstance(requested, str):  # "all", the only string the spec accepts
        return list(range(n_layers))
    missing = [layer for layer in requested if layer >= n_layers]
    if missing:
        raise RunError(f"layers: model '{model}' has {n_layers} layers (0-{n_layers - 1}); no layer {missing}")
    return list(requested)


def usable_features(
    features: Sequence[Feature], unavailable: Sequence[tuple[str, str]], groups: np.ndarray, model: str, name: str,
    manifest: RunManifest, min_per_class: int, on_bad_feature: str, split: SplitSettings,
) -> list[tuple[Feature, Split]]:
    """Features with at least ``min_per_class`` sites of each class and a sound train/test split (see
    probekit.splits; ``groups``: every site's group, identical texts merged), with that split. The others, and the
    ``unavailable`` (name, reason) pairs the dataset reported, are recorded in the manifest's skipped features with
    the reason (once), or stop the run when ``on_bad_feature`` is 'error'."""
    usable = []

    def skip(feature: str, reason: str) -> None:
        if on_bad_feature == "error":
            raise RunError(f"dataset '{name}', feature '{feature}' (model '{model}'): {reason} "
                           "(on_bad_feature: error; set it to 'skip' to go on without the feature)")
        manifest.record_skipped(model, name, feature, reason)

    for feature_name, reason in unavailable:
        skip(feature_name, reason)
    for feature in features:
        positives = int(feature.labels.sum())
        negatives = len(feature.labels) - positives
        if min(positives, negatives) < min_per_class:
            skip(feature.name, f"{positives} positive / {negatives} negative sites; need {min_per_class} of each")
            continue
        try:
            usable.append((feature, split_feature(feature.labels, groups[feature.sites], split.test_fraction,
                                                  split.seed, split.by)))
        except SplitError as error:
            skip(feature.name, str(error))
    return usable


def probe_cells(
    spec: RunSpec,
    selectors: Sequence[tuple[ResolvedPlugin, Selector]],
    X: np.ndarray,
    feature: Feature,
    split: Split,
    layer: int,
    cell: Callable[[str, int, CellKey], str],
    finished: set[str],
) -> list[dict[str, Any]]:
    """Result rows of one feature at one layer: every selector, every k and every control not yet finished."""
    y = feature.labels
    train, test = split.train, split.test
    # computed once for every selector and k: the training and test rows, their labels, the candidates, the F1
    # bootstrap's resamples (a multinomial draw per resample, which each k used to redraw alike)
    X_train, X_test = X[train], X[test]
    y_train, y_test = y[train], y[test]
    todo = {key for key in layer_cells(spec, [ref.label for ref, _ in selectors])
            if cell(feature.name, layer, key) not in finished}
    bootstrap = F1Bootstrap(y_test, split.test_groups, spec.split.seed) if todo else None
    shared = {"feature": feature.name, "layer": layer, "n_train": len(train), "n_test": len(test),
              "n_train_groups": split.n_train_groups, "n_test_groups": split.n_test_groups,
              "n_train_positive": int(y_train.sum()), "n_test_positive": int(y_test.sum())}

    def row(key: CellKey, chosen: np.ndarray, y_fit: np.ndarray, n_candidates: int, select_seconds: float,
            selection: Selection | None) -> dict[str, Any]:
        started = time.perf_counter()
        fit = fit_and_evaluate(np.take(X_train, chosen, axis=1), y_fit, np.take(X_test, chosen, axis=1), y_test,
                               spec.probe.C, spec.probe.max_iter)
        f1_low, f1_high = bootstrap.interval(fit.predictions)  # type: ignore[union-attr]
        scores = None if selection is None else selection.scores
        return {
            **shared, "cell_id": cell(feature.name, layer, key), "selector": key.selector, "k": key.k,
            "control": key.control, "neurons": [f"L{layer}.N{n}" for n in chosen], "neuron_indices": chosen.tolist(),
            "coefficients": fit.coefficients.tolist(), "intercept": fit.intercept, **fit.metrics,
            "f1_low": f1_low, "f1_high": f1_high, "prefilter_size": n_candidates, "select_seconds": select_seconds,
            "fit_seconds": time.perf_counter() - started,
            "selection_scores": None if scores is None else np.asarray(scores, dtype=np.float64).tolist(),
            "selector_details": json.dumps({} if selection is None else selection.details, default=float),
        }

    prefiltered: dict[str, np.ndarray] = {}

    def selected(ref: ResolvedPlugin, selector: Selector, y_fit: np.ndarray, control: str) -> list[dict[str, Any]]:
        """A selector's rows for the ks still to do, trained on labels ``y_fit`` (the true or the shuffled ones)."""
        ks = [k for k in spec.ks if CellKey(ref.label, k, control) in todo]
        if not ks:
            return []
        if control not in prefiltered:  # one prefilter per set of training labels, shared by every selector
            prefiltered[control] = top_k(mean_difference(X_train, y_fit), min(spec.prefilter, X.shape[1]))
        candidates = prefiltered[control]
        started = time.perf_counter()
        # np.take copies the same values as X_train[:, candidates], about 10x faster (a fresh copy per selector)
        selections = guarded(lambda: selector.select(np.take(X_train, candidates, axis=1), y_fit, ks),
                             f"selector '{ref.label}' failed on feature '{feature.name}', layer {layer}")
        seconds = time.perf_counter() - started
        with threadpool_limits(limits=1, user_api="blas"):  # tiny fits: BLAS threads only add overhead (4x)
            return [row(CellKey(ref.label, k, control), candidates[checked_selection(selections, k, len(candidates),
                        ref.label)], y_fit, len(candidates), seconds, selections[k]) for k in ks]

    rows = []
    for ref, selector in selectors:
        rows += selected(ref, selector, y_train, "")
    if any(key.control == "shuffled_labels" for key in todo):
        y_shuffled = shuffled_labels(y_train, spec.split.seed, feature.name)
        for ref, selector in selectors:
            rows += selected(ref, selector, y_shuffled, "shuffled_labels")
    random_ks = [k for k in spec.ks if CellKey("", k, "random_neurons") in todo]
    with threadpool_limits(limits=1, user_api="blas"):
        rows += [row(CellKey("", k, "random_neurons"), random_neurons(X.shape[1], k, spec.split.seed, feature.name,
                                                                      layer), y_train, X.shape[1], 0.0, None)
                 for k in random_ks]
    return rows


def checked_selection(selections: dict[int, Selection], k: int, n_candidates: int, selector: str) -> np.ndarray:
    """The k distinct candidate indices a selector returned for ``k``, or an error naming the selector."""
    if k not in selections:
        raise RunError(f"selector '{selector}' returned no selection for k = {k}")
    neurons = np.asarray(selections[k].neurons, dtype=np.int64)
    if len(neurons) != k or len(np.unique(neurons)) != k or neurons.min() < 0 or neurons.max() >= n_candidates:
        raise RunError(f"selector '{selector}' returned {neurons.tolist()} for k = {k}: "
                       f"need {k} distinct indices in [0, {n_candidates})")
    return neurons
