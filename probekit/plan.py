"""Sizing a study before submitting it: cells, units, tokens to extract, activation cache size, and what is done.

Loads each model's tokenizer and config (never its weights) and builds each dataset on it, as a run's extraction unit
would; reads the run directory without writing to it. A model or dataset that cannot be loaded here (no hub access on
a login node, say) is reported as unknown rather than stopping the plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from probekit.cache import DTYPE
from probekit.cells import cell_id, layer_cells, resolve_layers, usable_features
from probekit.errors import ProbekitError, guarded
from probekit.manifest import RunManifest
from probekit.results import RunDirectory
from probekit.spec import ValidatedSpec
from probekit.splits import site_groups
from probekit.sweep import cut_probe_units


@dataclass
class PairPlan:
    """One (model, dataset): what it holds for the model, and its cells (None: unknown, see ``problem``)."""

    model: str
    dataset: str
    layers: int | None = None
    d_mlp: int | None = None
    sequences: int | None = None
    tokens: int | None = None
    sites: int | None = None
    features: int | None = None
    cells: int | None = None
    done: int | None = None
    probe_units: int | None = None
    problem: str | None = None

    @property
    def cache_bytes(self) -> int | None:
        """Bytes of this pair's activations in the cache: sites x neurons x layers, float32."""
        if None in (self.sites, self.d_mlp, self.layers):
            return None
        return self.sites * self.d_mlp * self.layers * DTYPE.itemsize  # type: ignore[operator]

    @property
    def needs_extraction(self) -> bool:
        return self.done is None or self.cells is None or self.done < self.cells


@dataclass
class Plan:
    """The plan of a spec: one :class:`PairPlan` per (model, dataset), and the executor that would run it."""

    executor: str
    parallelism: int
    pairs: list[PairPlan] = field(default_factory=list)

    def total(self, name: str) -> int:
        """Sum of a count over the pairs where it is known."""
        return sum(getattr(pair, name) or 0 for pair in self.pairs)

    @property
    def unknown(self) -> list[PairPlan]:
        return [pair for pair in self.pairs if pair.problem is not None]


def plan_sweep(validated: ValidatedSpec) -> Plan:
    """The plan of ``validated`` against its run directory (read only)."""
    spec = validated.spec
    run_dir = RunDirectory(spec.output)
    finished = run_dir.finished_cells() if run_dir.path.is_dir() else set()
    executor = guarded(validated.executor.instantiate, f"executor '{validated.executor.name}' failed to start")
    plan = Plan(validated.executor.name, executor.parallelism)
    scratch = RunManifest.new({}, spec.fingerprint, validated.source)  # skipped features are recorded here, unused
    todo: dict[tuple[str, str], list[tuple[str, int, int]]] = {}  # (feature, layer, weight) to do, as the driver
    for model_ref in validated.models:
        try:
            adapter = guarded(model_ref.instantiate, f"model '{model_ref.label}' failed to load")
            layers = resolve_layers(spec.layers, adapter.n_layers, model_ref.label)
        except ProbekitError as error:
            plan.pairs += [PairPlan(model_ref.label, d.label, problem=str(error)) for d in validated.datasets]
            continue
        for dataset_ref in validated.datasets:
            pair = PairPlan(model_ref.label, dataset_ref.label, layers=len(layers), d_mlp=adapter.d_mlp)
            plan.pairs.append(pair)
            try:
                dataset = guarded(lambda: dataset_ref.instantiate().build(adapter.tokenizer),
                                  f"dataset '{dataset_ref.label}' failed to build for model '{model_ref.label}'")
                usable = usable_features(dataset.features, [(s.name, s.reason) for s in dataset.skipped],
                                         site_groups(dataset), model_ref.label, dataset_ref.label, scratch,
                                         spec.min_per_class, "skip", spec.split)
            except ProbekitError as error:
                pair.problem = str(error)
                continue
            pair.sequences, pair.sites = len(dataset.sequences), len(dataset.sites)
            pair.tokens = sum(len(ids) for ids in dataset.sequences)
            pair.features = len(usable)
            keys = layer_cells(spec, [s.label for s in validated.selectors])
            cells = {(feature.name, layer): [cell_id(spec.fingerprint, model_ref.label, dataset_ref.label,
                                                     feature.name, layer, key) for key in keys]
                     for layer in layers for feature, _ in usable}
            pair.cells = sum(len(ids) for ids in cells.values())
            pair.done = sum(cell in finished for ids in cells.values() for cell in ids)
            sites = {feature.name: len(feature.sites) for feature, _ in usable}
            todo[(pair.model, pair.dataset)] = [(feature, layer, sites[feature])
                                                for (feature, layer), ids in cells.items()
                                                if any(cell not in finished for cell in ids)]
    units = cut_probe_units(todo, spec.executor.pairs_per_unit, plan.parallelism)
    for pair in plan.pairs:
        if (pair.model, pair.dataset) in todo:
            pair.probe_units = sum((unit.model, unit.dataset) == (pair.model, pair.dataset) for unit in units)
    return plan
