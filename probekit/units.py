"""The units a sweep is cut into, and the function that runs one anywhere: ``run_unit(payload) -> result``.

Two kinds, so that GPUs and CPUs are used where they matter:

- an **extraction** unit takes one (model, dataset): it builds the dataset on the model's tokenizer, writes what
  probing needs of it (features, labels, groups; see :class:`PreparedDataset`) into the run directory, and extracts
  every requested layer into the activation cache. It is the only unit that loads a model.
- a **probe** unit takes a chunk of (feature, layer) pairs of one (model, dataset): it reads the prepared dataset
  and the cached activations (memory-mapped) and writes one result part per pair. It never loads weights.

Payloads and results are JSON text, and everything else passes by path (the run directory, the cache), so a unit
runs the same in this process, in a worker process, on a Slurm node or in a Ray worker.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from probekit.cache import ActivationCache, CacheKey
from probekit.cells import CellKey, cell_id, probe_cells, resolve_layers
from probekit.contracts import Feature, Job, ModelAdapter, ProbingDataset, Selector, dataset_problems
from probekit.errors import ProbekitError, RunError, guarded
from probekit.files import atomic_write_bytes
from probekit.manifest import DatasetCounts, FeatureCounts
from probekit.registry import PluginRegistry
from probekit.results import RunDirectory
from probekit.spec import ResolvedPlugin, RunSpec, ValidatedSpec, resolve_plugin, validate_spec_text
from probekit.splits import site_groups, split_feature

#: version of the payload and prepared-dataset layouts (a worker refuses another version's work)
UNIT_FORMAT = 1


@dataclass(frozen=True)
class Unit:
    """One unit of a sweep: an extraction of (model, dataset), or probing a chunk of its (feature, layer) pairs."""

    kind: Literal["extraction", "probe"]
    model: str
    dataset: str
    pairs: tuple[tuple[str, int], ...] = ()

    @property
    def id(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self)).encode()).hexdigest()[:16]

    @property
    def name(self) -> str:
        """A short, file-safe label, e.g. ``probe-minilm-text_features-12cells-3f2a``."""
        what = "extract" if self.kind == "extraction" else f"probe-{len(self.pairs)}pairs"
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in f"{self.model}-{self.dataset}")
        return f"{what}-{safe}-{self.id[:6]}"


def make_job(unit: Unit, spec: dict[str, Any], source: str, finished: list[str]) -> Job:
    """The job for ``unit``: the normalised spec (with absolute output and cache paths), the unit, and the ids of the
    unit's cells already on disk (so a resumed run recomputes none)."""
    payload = json.dumps({"format": UNIT_FORMAT, "spec": spec, "source": source, "unit": asdict(unit),
                          "finished": finished})
    return Job(unit.id, unit.kind, unit.name, payload)


def run_unit(payload: str) -> str:
    """Run one unit (in whatever process an executor chose) and return a JSON summary.

    A user error (bad data, a plugin's RunError) is returned as ``{"user_error": ...}``, not raised: running the
    unit again would fail the same way, so the driver does not retry it. Anything else raises, and is retried."""
    request = json.loads(payload)
    if request.get("format") != UNIT_FORMAT:
        raise RuntimeError(f"this worker's probekit runs unit format {UNIT_FORMAT}, the driver sent "
                           f"{request.get('format')}: install the same probekit on the workers")
    unit = Unit(**{**request["unit"], "pairs": tuple(tuple(pair) for pair in request["unit"]["pairs"])})
    spec = json.dumps(request["spec"], sort_keys=True)
    try:
        if unit.kind == "extraction":
            result = extract(_validated(spec, request["source"]), unit)
        else:
            result = probe(*_probe_spec(spec), unit, set(request["finished"]))
    except ProbekitError as error:
        return json.dumps({"user_error": str(error)})
    return json.dumps(result)


@functools.lru_cache(maxsize=2)
def _validated(spec: str, source: str) -> ValidatedSpec:
    """An extraction unit's spec, validated once per process (a process runs many units of one spec)."""
    return validate_spec_text(spec, source, PluginRegistry())


@functools.lru_cache(maxsize=2)
def _probe_spec(spec: str) -> tuple[RunSpec, list[tuple[ResolvedPlugin, Selector]]]:
    """What a probe unit needs of its (already validated and normalised) spec: the settings and the selectors,
    started. Model and dataset plugins are not imported: a probe unit never uses them, and a model's libraries
    (torch, transformers) cost seconds of start-up per unit."""
    run_spec = RunSpec.model_validate(json.loads(spec))
    registry = PluginRegistry()
    selectors = []
    for index, ref in enumerate(run_spec.selectors):
        resolved = resolve_plugin(registry, "selectors", ref, f"selectors[{index}].params")
        selectors.append((resolved, guarded(resolved.instantiate, f"selector '{resolved.label}' failed to start")))
    return run_spec, selectors


# ----------------------------------------------------------------------------------------------------------------
# the prepared dataset: what probing needs of a dataset, written by its extraction unit


@dataclass(frozen=True)
class PreparedDataset:
    """A dataset as probe units need it: each feature's sites and labels, every site's group (identical texts
    merged), the skipped features, and the keys of its activations in the cache."""

    model_identity: str
    activation_fingerprint: str
    fingerprint: str
    spec_fingerprint: str
    layers: list[int]
    n_sites: int
    d_mlp: int
    n_layers: int
    groups: np.ndarray
    features: list[Feature]
    skipped: list[tuple[str, str]]
    counts: dict[str, Any]

    def cache_key(self, layer: int) -> CacheKey:
        return CacheKey(self.model_identity, self.activation_fingerprint, layer)


def prepared_path(run_dir: RunDirectory, model: str, dataset: str) -> Path:
    digest = hashlib.sha256(json.dumps([model, dataset]).encode()).hexdigest()[:16]
    return run_dir.path / "prepared" / f"{digest}.npz"


def write_prepared(path: Path, dataset: ProbingDataset, identity: str, d_mlp: int, n_layers: int,
                   counts: dict[str, Any], spec_fingerprint: str, layers: list[int]) -> PreparedDataset:
    """Save what probing needs of ``dataset`` as plain arrays (``.npz``, no pickles) and a JSON description (with
    the spec fingerprint and layers it was prepared for: the driver reuses it only for the same spec)."""
    groups = site_groups(dataset)
    arrays: dict[str, np.ndarray] = {"groups": groups}
    for index, feature in enumerate(dataset.features):
        arrays[f"sites_{index}"], arrays[f"labels_{index}"] = feature.sites, feature.labels
    description = {"format": UNIT_FORMAT, "model_identity": identity, "n_sites": len(dataset.sites),
                   "activation_fingerprint": dataset.activation_fingerprint, "fingerprint": dataset.fingerprint,
                   "d_mlp": d_mlp, "n_layers": n_layers, "features": [f.name for f in dataset.features],
                   "skipped": [[s.name, s.reason] for s in dataset.skipped], "counts": counts,
                   "spec_fingerprint": spec_fingerprint, "layers": layers}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())
    atomic_write_bytes(path.with_suffix(".json"), json.dumps(description, indent=2).encode())
    return read_prepared(path)


def read_prepared(path: Path) -> PreparedDataset:
    """The prepared dataset at ``path``; a missing or damaged one is a RunError (its extraction unit reruns)."""
    try:
        description = json.loads(path.with_suffix(".json").read_text())
        with np.load(path, allow_pickle=False) as arrays:
            features = [Feature(name, arrays[f"sites_{i}"], arrays[f"labels_{i}"])
                        for i, name in enumerate(description["features"])]
            groups = arrays["groups"]
    except (OSError, ValueError, KeyError) as error:
        raise RunError(f"{path}: the prepared dataset is missing or unreadable ({error})") from None
    if description.get("format") != UNIT_FORMAT:
        raise RunError(f"{path}: written by another probekit (format {description.get('format')})")
    return PreparedDataset(description["model_identity"], description["activation_fingerprint"],
                           description["fingerprint"], description["spec_fingerprint"], description["layers"],
                           description["n_sites"], description["d_mlp"],
                           description["n_layers"], groups, features,
                           [tuple(pair) for pair in description["skipped"]], description["counts"])


# ----------------------------------------------------------------------------------------------------------------
# running units


def extract(validated: ValidatedSpec, unit: Unit) -> dict[str, Any]:
    """Build the dataset, write its prepared form, and extract every requested layer into the cache."""
    spec = validated.spec
    model_ref = next(m for m in validated.models if m.label == unit.model)
    dataset_ref = next(d for d in validated.datasets if d.label == unit.dataset)
    adapter = loaded_model(model_ref)
    layers = resolve_layers(spec.layers, adapter.n_layers, model_ref.label)
    available = min(spec.prefilter, adapter.d_mlp)
    if max(spec.ks) > available:
        raise RunError(f"ks: k = {max(spec.ks)} exceeds the {available} neurons available per layer of "
                       f"'{model_ref.label}'")
    dataset = guarded(lambda: dataset_ref.instantiate().build(adapter.tokenizer),
                      f"dataset '{dataset_ref.label}' failed to build for model '{model_ref.label}'")
    check_dataset(dataset, dataset_ref, model_ref.label)
    if spec.cache is None:  # the driver gives units a scratch cache when the spec keeps none
        raise RunError("units pass activations through the cache: give a cache directory")
    started = time.perf_counter()
    if dataset.features:  # a dataset whose every feature was skipped has nothing to extract
        guarded(lambda: cached_activations(adapter, dataset, layers, ActivationCache(spec.cache),
                                           spec.extraction.batch_tokens, (unit.model, unit.dataset)),
                f"model '{unit.model}' failed while extracting activations for '{unit.dataset}'")
    # written last: a prepared dataset on disk means its activations are in the cache
    write_prepared(prepared_path(RunDirectory(spec.output), unit.model, unit.dataset), dataset, adapter.identity,
                   adapter.d_mlp, adapter.n_layers, dataset_counts(dataset).model_dump(), spec.fingerprint, layers)
    return {"sites": len(dataset.sites), "layers": layers, "seconds": time.perf_counter() - started}


#: the last model this process loaded, kept for the next extraction unit of the same model (one per process)
_loaded: dict[str, ModelAdapter] = {}


def loaded_model(model_ref: ResolvedPlugin) -> ModelAdapter:
    """The model adapter of ``model_ref``, reusing the one this process loaded last when it is the same model."""
    key = json.dumps([id(model_ref.cls), model_ref.params.model_dump(mode="json")], sort_keys=True)
    if key not in _loaded:
        _loaded.clear()  # free the previous model before loading the next
        _loaded[key] = guarded(model_ref.instantiate, f"model '{model_ref.label}' failed to load")
    return _loaded[key]


def probe(spec: RunSpec, selectors: list[tuple[ResolvedPlugin, Selector]], unit: Unit,
          finished: set[str]) -> dict[str, Any]:
    """Probe every (feature, layer) pair of the unit that has cells still to do; one result part per pair."""
    run_dir = RunDirectory(spec.output)
    prepared = read_prepared(prepared_path(run_dir, unit.model, unit.dataset))
    cache = ActivationCache(spec.cache)  # type: ignore[arg-type]
    features = {feature.name: feature for feature in prepared.features}
    shared = {"model": unit.model, "model_identity": prepared.model_identity, "dataset": unit.dataset,
              "dataset_fingerprint": prepared.fingerprint, "spec_fingerprint": spec.fingerprint}

    def cell(feature: str, layer: int, key: CellKey) -> str:
        return cell_id(spec.fingerprint, unit.model, unit.dataset, feature, layer, key)

    rows_written = 0
    for layer in sorted({layer for _, layer in unit.pairs}):
        activations = cache.load(prepared.cache_key(layer), (prepared.n_sites, prepared.d_mlp))
        if activations is None:
            raise RuntimeError(f"activation cache entry for '{unit.model}' / '{unit.dataset}', layer {layer}, is "
                               "missing or damaged; its extraction unit runs again")
        for name, pair_layer in unit.pairs:
            if pair_layer != layer:
                continue
            feature = features[name]
            split = split_feature(feature.labels, prepared.groups[feature.sites], spec.split.test_fraction,
                                  spec.split.seed, spec.split.by)
            rows = probe_cells(spec, selectors, activations[feature.sites], feature, split, layer, cell, finished)
            run_dir.append([{**row, **shared} for row in rows])
            rows_written += len(rows)
    return {"rows": rows_written}


def cached_activations(
    adapter: ModelAdapter,
    dataset: ProbingDataset,
    layers: list[int],
    cache: ActivationCache,
    batch_tokens: int,
    labels: tuple[str, str],
) -> dict[int, np.ndarray]:
    """Every layer's activations at the dataset's sites, from the cache or extracted in one pass and cached."""
    shape = (len(dataset.sites), adapter.d_mlp)
    keys = {layer: CacheKey(adapter.identity, dataset.activation_fingerprint, layer) for layer in layers}
    found = {layer: cache.load(key, shape) for layer, key in keys.items()}
    missing = {layer: key for layer, key in keys.items() if found[layer] is None}
    if missing:
        from probekit.extraction import iter_activation_batches  # torch: extraction units only

        batches = iter_activation_batches(adapter, dataset, sorted(missing), batch_tokens)
        cache.store(missing, shape, batches, labels={"model": labels[0], "dataset": labels[1]})
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
