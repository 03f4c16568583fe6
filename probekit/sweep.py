"""The sweep: for each model and dataset extract every layer once, then for each feature x layer split, prefilter,
run every selector over all ks, retrain the probe and stream the result rows to the run directory.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from threadpoolctl import threadpool_limits

from probekit.cache import ActivationCache, CacheKey
from probekit.contracts import Feature, ModelAdapter, ProbingDataset, Selection, Selector, dataset_problems
from probekit.errors import ProbekitError, RunError
from probekit.extraction import iter_activation_batches
from probekit.manifest import DatasetCounts, FeatureCounts, RunManifest, SkippedRecord
from probekit.probing import fit_and_evaluate, mean_difference, top_k
from probekit.progress import NoProgress, ProgressDisplay
from probekit.results import RunDirectory
from probekit.spec import ResolvedPlugin, SplitSettings, ValidatedSpec
from probekit.splits import Split, SplitError, f1_interval, site_groups, split_feature


@dataclass
class SweepSummary:
    """What a run did: rows written now, cells already on disk before it started, features skipped."""

    run_dir: str
    new_rows: int = 0
    reused_cells: int = 0
    skipped_features: list[SkippedRecord] = field(default_factory=list)


def cell_id(fingerprint: str, *key: Any) -> str:
    """Stable id of one (model, dataset, feature, layer, selector, k) cell of a spec."""
    return hashlib.sha256(json.dumps([fingerprint, *key]).encode()).hexdigest()[:20]


def resolve_layers(requested: str | list[int], n_layers: int, model: str) -> list[int]:
    """The spec's layers for a model with ``n_layers`` blocks, or a clear error for a layer it lacks."""
    if isinstance(requested, str):  # "all", the only string the spec accepts
        return list(range(n_layers))
    missing = [layer for layer in requested if layer >= n_layers]
    if missing:
        raise RunError(f"layers: model '{model}' has {n_layers} layers (0-{n_layers - 1}); no layer {missing}")
    return list(requested)


def run_sweep(validated: ValidatedSpec, progress: ProgressDisplay | None = None) -> SweepSummary:
    """Run every cell of the spec that is not already in its run directory (holding the directory's lock)."""
    run_dir = RunDirectory(validated.spec.output)
    with ExitStack() as stack:
        stack.enter_context(run_dir.locked())
        cache_root = validated.spec.cache or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="probekit-")))
        return Sweep(validated, run_dir, ActivationCache(cache_root), progress or NoProgress()).run()


class Sweep:
    """One run of a validated spec into its run directory."""

    def __init__(self, validated: ValidatedSpec, run_dir: RunDirectory, cache: ActivationCache,
                 progress: ProgressDisplay) -> None:
        self.validated, self.spec, self.cache, self.progress = validated, validated.spec, cache, progress
        self.fingerprint = self.spec.fingerprint
        self.run_dir = run_dir
        self.manifest = self.run_dir.open(self.spec.model_dump(mode="json"), self.fingerprint, validated.source)
        if self.run_dir.set_aside_damaged():
            self.manifest.forget_completed()
        self.finished = self.run_dir.finished_cells()
        self.summary = SweepSummary(str(self.run_dir.path), reused_cells=len(self.finished))
        self.selectors = [(ref, guarded(ref.instantiate, f"selector '{ref.label}' failed to start"))
                          for ref in validated.selectors]

    def run(self) -> SweepSummary:
        for model_ref in self.validated.models:
            pending = [d for d in self.validated.datasets if not self.manifest.is_completed(model_ref.label, d.label)]
            if pending:  # when every result of a model is on disk, not even its config is read
                self._model(model_ref, pending)
        self.manifest.finish_run()
        self.run_dir.write_manifest(self.manifest)
        self.summary.skipped_features = list(self.manifest.skipped_features)
        return self.summary

    def _model(self, model_ref: ResolvedPlugin, datasets: list[ResolvedPlugin]) -> None:
        task = self.progress.add_task(f"load {model_ref.label} (tokenizer and config)", total=None)
        adapter = guarded(model_ref.instantiate, f"model '{model_ref.label}' failed to load")
        self.progress.remove_task(task)
        layers = resolve_layers(self.spec.layers, adapter.n_layers, model_ref.label)
        available = min(self.spec.prefilter, adapter.d_mlp)
        if max(self.spec.ks) > available:
            raise RunError(f"ks: k = {max(self.spec.ks)} exceeds the {available} neurons available per layer of "
                           f"'{model_ref.label}'")
        for dataset_ref in datasets:
            self._dataset(adapter, model_ref.label, dataset_ref, layers)
            self.manifest.mark_completed(model_ref.label, dataset_ref.label)
            self.run_dir.write_manifest(self.manifest)

    def _dataset(self, adapter: ModelAdapter, model: str, dataset_ref: ResolvedPlugin, layers: list[int]) -> None:
        task = self.progress.add_task(f"build {dataset_ref.label}", total=None)
        dataset = guarded(lambda: dataset_ref.instantiate().build(adapter.tokenizer),
                          f"dataset '{dataset_ref.label}' failed to build for model '{model}'")
        self.progress.remove_task(task)
        check_dataset(dataset, dataset_ref, model)
        features = usable_features(dataset, model, dataset_ref.label, self.manifest, self.spec.min_per_class,
                                   self.spec.on_bad_feature, self.spec.split)
        self.manifest.record_dataset(model, dataset_ref.label, dataset_counts(dataset))
        key = (model, dataset_ref.label)

        def cell(feature: str, layer: int, selector: str, k: int) -> str:
            return cell_id(self.fingerprint, *key, feature, layer, selector, k)

        todo = [(f, split, layer) for f, split in features for layer in layers
                if any(cell(f.name, layer, s.label, k) not in self.finished
                       for s, _ in self.selectors for k in self.spec.ks)]
        if not todo:
            return
        activations = guarded(
            lambda: cached_activations(adapter, dataset, sorted({layer for _, _, layer in todo}), self.cache,
                                       self.spec.extraction.batch_tokens, self.progress, key),
            f"model '{model}' failed while extracting activations for '{dataset_ref.label}'",
        )
        shared = {"model": model, "model_identity": adapter.identity, "dataset": dataset_ref.label,
                  "dataset_fingerprint": dataset.fingerprint, "spec_fingerprint": self.fingerprint}
        task = self.progress.add_task(f"probe {model} / {dataset_ref.label}", total=len(todo))
        for feature, split, layer in todo:
            rows = probe_cells(self.validated, self.selectors, activations[layer][feature.sites], feature, split, layer,
                               cell, self.finished)
            self.run_dir.append([{**row, **shared} for row in rows])
            self.summary.new_rows += len(rows)
            self.progress.advance(task)


def cached_activations(
    adapter: ModelAdapter,
    dataset: ProbingDataset,
    layers: list[int],
    cache: ActivationCache,
    batch_tokens: int,
    progress: ProgressDisplay,
    labels: tuple[str, str],
) -> dict[int, np.ndarray]:
    """Every layer's activations at the dataset's sites, from the cache or extracted in one pass and cached."""
    shape = (len(dataset.sites), adapter.d_mlp)
    keys = {layer: CacheKey(adapter.identity, dataset.activation_fingerprint, layer) for layer in layers}
    found = {layer: cache.load(key, shape) for layer, key in keys.items()}
    missing = {layer: key for layer, key in keys.items() if found[layer] is None}
    if missing:
        task = progress.add_task(f"extract {labels[0]} / {labels[1]}", total=len(dataset.sites))
        batches = iter_activation_batches(adapter, dataset, sorted(missing), batch_tokens)
        cache.store(missing, shape, batches, labels={"model": labels[0], "dataset": labels[1]},
                    on_batch=lambda n: progress.advance(task, n))
        found.update({layer: cache.load(key, shape) for layer, key in missing.items()})
    return found  # type: ignore[return-value]


def dataset_counts(dataset: ProbingDataset) -> DatasetCounts:
    """What a dataset really holds (it may fall short of what its params asked for): sequences, sites, source
    groups, and per feature its positive and negative sites and the groups they come from."""
    groups = site_groups(dataset)
    return DatasetCounts(
        fingerprint=dataset.fingerprint, sequences=len(dataset.sequences), sites=len(dataset.sites),
        groups=len(np.unique(groups)),
        features={feature.name: FeatureCounts(positive=int(feature.labels.sum()),
                                              negative=int((~feature.labels).sum()),
                                              groups=len(np.unique(groups[feature.sites])))
                  for feature in dataset.features},
    )


def check_dataset(dataset: ProbingDataset, dataset_ref: ResolvedPlugin, model: str) -> None:
    """Stop with the plugin's name when its ``build`` returned something the sweep cannot probe soundly."""
    problems = dataset_problems(dataset)
    if problems:
        plugin = f"{dataset_ref.cls.__module__}.{dataset_ref.cls.__qualname__}"
        raise RunError(f"dataset '{dataset_ref.label}' (plugin '{dataset_ref.name}', {plugin}) built an unusable "
                       f"dataset for model '{model}': {'; '.join(problems)}")


T = TypeVar("T")


def guarded(action: Callable[[], T], what: str) -> T:
    """Run a plugin's code; an unexpected exception becomes a :class:`RunError` naming the plugin."""
    try:
        return action()
    except ProbekitError:
        raise
    except Exception as error:  # third-party code can fail in any way; name it instead of dumping a traceback
        raise RunError(f"{what}: {type(error).__name__}: {error}") from error


def usable_features(
    dataset: ProbingDataset, model: str, name: str, manifest: RunManifest, min_per_class: int,
    on_bad_feature: str, split: SplitSettings,
) -> list[tuple[Feature, Split]]:
    """Features with at least ``min_per_class`` sites of each class and a sound train/test split (see
    probekit.splits), with that split. The others are recorded in the manifest's skipped features with the reason
    (once), or stop the run when ``on_bad_feature`` is 'error'."""
    usable = []
    groups = site_groups(dataset)

    def skip(feature: str, reason: str) -> None:
        if on_bad_feature == "error":
            raise RunError(f"dataset '{name}', feature '{feature}' (model '{model}'): {reason} "
                           "(on_bad_feature: error; set it to 'skip' to go on without the feature)")
        manifest.record_skipped(model, name, feature, reason)

    for unavailable in dataset.skipped:
        skip(unavailable.name, unavailable.reason)
    for feature in dataset.features:
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
    validated: ValidatedSpec,
    selectors: Sequence[tuple[ResolvedPlugin, Selector]],
    X: np.ndarray,
    feature: Feature,
    split: Split,
    layer: int,
    cell: Callable[[str, int, str, int], str],
    finished: set[str],
) -> list[dict[str, Any]]:
    """Result rows of one feature at one layer: every selector, every k not yet finished."""
    spec = validated.spec
    y = feature.labels
    train, test = split.train, split.test
    candidates = top_k(mean_difference(X[train], y[train]), min(spec.prefilter, X.shape[1]))
    X_train, X_test = X[train], X[test]
    rows = []
    for ref, selector in selectors:
        ks = [k for k in spec.ks if cell(feature.name, layer, ref.label, k) not in finished]
        if not ks:
            continue
        started = time.perf_counter()
        selections = guarded(lambda: selector.select(X_train[:, candidates], y[train], ks),
                             f"selector '{ref.label}' failed on feature '{feature.name}', layer {layer}")
        select_seconds = time.perf_counter() - started
        with threadpool_limits(limits=1, user_api="blas"):  # tiny fits: BLAS threads only add overhead (4x)
            for k in ks:
                chosen = candidates[checked_selection(selections, k, len(candidates), ref.label)]
                started = time.perf_counter()
                fit = fit_and_evaluate(X_train[:, chosen], y[train], X_test[:, chosen], y[test],
                                       spec.probe.C, spec.probe.max_iter)
                f1_low, f1_high = f1_interval(y[test], fit.predictions, split.test_groups, spec.split.seed)
                scores = selections[k].scores
                rows.append({
                    "cell_id": cell(feature.name, layer, ref.label, k),
                    "feature": feature.name, "layer": layer, "selector": ref.label, "k": k,
                    "neurons": [f"L{layer}.N{n}" for n in chosen], "neuron_indices": chosen.tolist(),
                    "coefficients": fit.coefficients.tolist(), "intercept": fit.intercept, **fit.metrics,
                    "f1_low": f1_low, "f1_high": f1_high,
                    "n_train": len(train), "n_test": len(test),
                    "n_train_groups": split.n_train_groups, "n_test_groups": split.n_test_groups,
                    "n_train_positive": int(y[train].sum()), "n_test_positive": int(y[test].sum()),
                    "prefilter_size": len(candidates), "select_seconds": select_seconds,
                    "fit_seconds": time.perf_counter() - started,
                    "selection_scores": None if scores is None else np.asarray(scores, dtype=np.float64).tolist(),
                    "selector_details": json.dumps(selections[k].details, default=float),
                })
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
