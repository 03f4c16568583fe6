"""The driver of a sweep: cut the spec into units (see :mod:`probekit.units`), hand them to the spec's executor,
retry the ones that fail, and keep the run directory's manifest.

Two phases: every pending (model, dataset) first gets an extraction unit (unless its prepared dataset and cached
activations are already there), then the (feature, layer) pairs with cells still to do are cut into probe units. The
driver alone writes ``run.json``; units write only result parts, the prepared datasets and the activation cache.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probekit.cache import ActivationCache
from probekit.cells import cell_id, layer_cells, usable_features
from probekit.contracts import ExecutionContext, Executor, Job, JobOutcome
from probekit.errors import RunError, guarded
from probekit.manifest import DatasetCounts, SkippedRecord
from probekit.progress import NoProgress, ProgressDisplay
from probekit.results import RunDirectory
from probekit.spec import ValidatedSpec
from probekit.units import PreparedDataset, Unit, make_job, prepared_path, read_prepared

log = logging.getLogger("probekit.sweep")


@dataclass(frozen=True)
class FailedUnit:
    """A unit that still failed after its retries: what it was, its last error, and where its log is."""

    name: str
    error: str
    log: str | None


@dataclass
class SweepSummary:
    """What a run did: rows written now, cells already on disk before it started, features skipped, and the units
    that failed (their cells are missing; running the same command again retries them)."""

    run_dir: str
    executor: str = "local"
    new_rows: int = 0
    reused_cells: int = 0
    skipped_features: list[SkippedRecord] = field(default_factory=list)
    failed_units: list[FailedUnit] = field(default_factory=list)


def run_sweep(validated: ValidatedSpec, progress: ProgressDisplay | None = None) -> SweepSummary:
    """Run every cell of the spec that is not already in its run directory, on the spec's executor (holding the
    directory's lock). A spec without a cache gets a scratch cache inside the run directory, removed at the end."""
    spec = validated.spec
    run_dir = RunDirectory(spec.output)
    with ExitStack() as stack:
        stack.enter_context(run_dir.locked())
        if spec.cache is not None:
            cache = spec.cache.resolve()
        else:  # inside the run directory, so that every worker that sees the run directory sees it too
            cache = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=".scratch-cache-", dir=run_dir.path)))
        paths_absolute = spec.output.is_absolute() and (spec.cache is None or spec.cache.is_absolute())
        context = ExecutionContext(run_dir.path.resolve(), cache, paths_absolute)
        name = validated.executor.name
        executor: Executor = guarded(validated.executor.instantiate, f"executor '{name}' failed to start")
        stack.callback(executor.close)
        guarded(lambda: executor.check(context), f"executor '{name}' cannot run here")
        try:
            return Sweep(validated, run_dir, context, executor, progress or NoProgress()).run()
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: stop what is queued or running (finished parts stay)
            executor.cancel()
            raise


#: probe units per worker the driver aims at: enough to even out units of unequal cost, few enough that per-unit
#: start-up (a process, a Slurm task) stays small
UNITS_PER_WORKER = 2


def cut_probe_units(todo: dict[tuple[str, str], list[tuple[str, int, int]]], pairs_per_unit: int,
                    parallelism: int) -> list[Unit]:
    """Probe units over the (feature, layer, weight) pairs still to do of each (model, dataset). A pair's weight is
    its feature's number of sites (what its probes cost grows with); each unit holds at most ``pairs_per_unit``
    pairs and about an equal share of the total weight, so that every worker gets about ``UNITS_PER_WORKER``. The
    heaviest units come first, so that the last ones to finish are short."""
    total = sum(weight for pairs in todo.values() for *_, weight in pairs)
    share = total / (UNITS_PER_WORKER * max(1, parallelism))
    weighed: list[tuple[int, Unit]] = []
    for (model, dataset), pairs in todo.items():
        chunk: list[tuple[str, int]] = []
        chunk_weight = 0
        for feature, layer, weight in pairs:
            if chunk and (len(chunk) == pairs_per_unit or chunk_weight + weight > share):
                weighed.append((chunk_weight, Unit("probe", model, dataset, tuple(chunk))))
                chunk, chunk_weight = [], 0
            chunk.append((feature, layer))
            chunk_weight += weight
        if chunk:
            weighed.append((chunk_weight, Unit("probe", model, dataset, tuple(chunk))))
    return [unit for _, unit in sorted(weighed, key=lambda item: -item[0])]


class Sweep:
    """One run of a validated spec into its run directory, on one executor."""

    def __init__(self, validated: ValidatedSpec, run_dir: RunDirectory, context: ExecutionContext,
                 executor: Executor, progress: ProgressDisplay) -> None:
        self.validated, self.spec, self.executor, self.progress = validated, validated.spec, executor, progress
        self.run_dir, self.context = run_dir, context
        self.fingerprint = self.spec.fingerprint
        self.manifest = run_dir.open(self.spec.model_dump(mode="json"), self.fingerprint, validated.source)
        self.manifest.runs[-1].executor = {"plugin": validated.executor.name,
                                           "params": validated.executor.params.model_dump(mode="json")}
        if run_dir.set_aside_damaged():
            self.manifest.forget_completed()
        # controls do not change the fingerprint: controls added to a finished run are cells still to do
        if set(self.spec.controls) - set(self.manifest.spec.get("controls", [])):
            self.manifest.forget_completed()
        self.manifest.spec["controls"] = sorted(set(self.manifest.spec.get("controls", [])) | set(self.spec.controls))
        run_dir.write_manifest(self.manifest)
        self.finished = run_dir.finished_cells()
        self.summary = SweepSummary(str(run_dir.path), validated.executor.name, reused_cells=len(self.finished))
        # what units see: the same spec, with the paths every worker resolves the same way
        self.unit_spec = {**self.spec.model_dump(mode="json"), "output": str(context.run_dir),
                          "cache": str(context.cache_dir)}

    def run(self) -> SweepSummary:
        pending = [(m.label, d.label) for m in self.validated.models for d in self.validated.datasets
                   if not self.manifest.is_completed(m.label, d.label)]
        prepared = self._prepare(pending)
        todo = {pair: self._pairs_to_do(pair, dataset) for pair, dataset in prepared.items()}
        units = cut_probe_units(todo, self.spec.executor.pairs_per_unit, self.executor.parallelism)
        cells_to_do = sum(len(self._unfinished(pair, feature, layer))
                          for pair, pairs in todo.items() for feature, layer, _ in pairs)
        self.manifest.runs[-1].units["probe"] = len(units)
        self.run_dir.write_manifest(self.manifest)

        task = self.progress.add_task("probe cells", total=cells_to_do)

        def advance(outcome: dict[str, Any]) -> None:
            self.summary.new_rows += outcome["rows"]
            self.progress.advance(task, outcome["rows"])

        done = self._run_units(units, advance)
        self.progress.remove_task(task)
        for pair in prepared:
            if all(unit in done for unit in units if (unit.model, unit.dataset) == pair):
                self.manifest.mark_completed(*pair)
        if not self.summary.failed_units:
            self.manifest.finish_run()
        self.run_dir.write_manifest(self.manifest)
        self.summary.skipped_features = list(self.manifest.skipped_features)
        return self.summary

    # -- phase 1: extraction ---------------------------------------------------------------------------------------

    def _prepare(self, pending: list[tuple[str, str]]) -> dict[tuple[str, str], PreparedDataset]:
        """The prepared dataset of every pending (model, dataset), running the extraction units still needed."""
        ready = {pair: self._reusable(pair) for pair in pending}
        to_extract = [Unit("extraction", *pair) for pair, dataset in ready.items() if dataset is None]
        if to_extract:
            self.manifest.runs[-1].units["extraction"] = len(to_extract)
            task = self.progress.add_task("extract (model, dataset) pairs", total=len(to_extract))
            self._run_units(to_extract, lambda outcome: self.progress.advance(task))
            self.progress.remove_task(task)
        prepared = {}
        for pair, dataset in ready.items():
            if dataset is None:
                try:
                    dataset = read_prepared(prepared_path(self.run_dir, *pair))
                except RunError:
                    continue  # its extraction unit failed: listed in the summary
            self.manifest.record_dataset(*pair, DatasetCounts.model_validate(dataset.counts))
            prepared[pair] = dataset
        return prepared

    def _reusable(self, pair: tuple[str, str]) -> PreparedDataset | None:
        """The prepared dataset an earlier run of this spec left, when its activations are all in the cache."""
        try:
            dataset = read_prepared(prepared_path(self.run_dir, *pair))
        except RunError:
            return None
        cache = ActivationCache(self.context.cache_dir)  # type: ignore[arg-type]
        if dataset.spec_fingerprint != self.fingerprint:
            return None
        if dataset.features and not all(cache.has(dataset.cache_key(layer)) for layer in dataset.layers):
            return None
        return dataset

    # -- phase 2: probing ------------------------------------------------------------------------------------------

    def _pairs_to_do(self, pair: tuple[str, str], dataset: PreparedDataset) -> list[tuple[str, int, int]]:
        """The (feature, layer, weight: the feature's sites) pairs of a prepared dataset with cells still to do
        (usable features only: the others are recorded as skipped), layer by layer so that a probe unit reads few
        layers."""
        usable = usable_features(dataset.features, dataset.skipped, dataset.groups, *pair, self.manifest,
                                 self.spec.min_per_class, self.spec.on_bad_feature, self.spec.split)
        return [(feature.name, layer, len(feature.sites)) for layer in dataset.layers for feature, _ in usable
                if self._unfinished(pair, feature.name, layer)]

    def _unfinished(self, pair: tuple[str, str], feature: str, layer: int) -> list[str]:
        return [cell for cell in self._cell_ids(pair, feature, layer) if cell not in self.finished]

    # -- running units ---------------------------------------------------------------------------------------------

    def _run_units(self, units: Sequence[Unit], on_result: Callable[[dict[str, Any]], None]) -> set[Unit]:
        """Run ``units`` on the executor, each failed one again up to ``max_retries`` times; the units that
        succeeded. A user error in a unit (bad data, a failing plugin) stops the run as it would a local run."""
        by_id = {unit.id: unit for unit in units}
        jobs = [self._job(unit) for unit in units]
        done: set[Unit] = set()
        last_failure: dict[str, JobOutcome] = {}
        for attempt in range(self.spec.executor.max_retries + 1):
            if not jobs:
                break
            failed = []
            for outcome in self.executor.run(jobs):
                unit = by_id[outcome.job.id]
                if outcome.error is not None:
                    failed.append(unit)
                    last_failure[unit.id] = outcome
                    continue
                result = json.loads(outcome.result or "{}")
                if "user_error" in result:
                    self.executor.cancel()
                    raise RunError(result["user_error"])
                done.add(unit)
                last_failure.pop(unit.id, None)
                on_result(result)
            # a retry recomputes only the cells its first attempt did not write
            if failed:
                self.finished = self.run_dir.finished_cells()
            if failed and attempt < self.spec.executor.max_retries:
                for unit in failed:
                    outcome = last_failure[unit.id]
                    log.warning("unit %s failed (%s; log: %s); submitting it again (retry %d of %d)", unit.name,
                                outcome.error, outcome.log, attempt + 1, self.spec.executor.max_retries)
            jobs = [self._job(unit) for unit in failed]
        self.summary.failed_units += [FailedUnit(by_id[unit_id].name, outcome.error or "", outcome.log)
                                      for unit_id, outcome in last_failure.items()]
        return done

    def _job(self, unit: Unit) -> Job:
        finished = [] if unit.kind == "extraction" else sorted(
            cell for feature, layer in unit.pairs
            for cell in self._cell_ids((unit.model, unit.dataset), feature, layer) if cell in self.finished)
        return make_job(unit, self.unit_spec, self.validated.source, finished)

    def _cell_ids(self, pair: tuple[str, str], feature: str, layer: int) -> list[str]:
        return [cell_id(self.fingerprint, *pair, feature, layer, key)
                for key in layer_cells(self.spec, [selector.label for selector in self.validated.selectors])]
