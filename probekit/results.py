"""The run directory: result rows as Parquet parts under ``results/`` and a ``run.json`` manifest (see
``probekit.manifest``).

Every file is written atomically (temporary file, then rename), so an interrupted run leaves only complete files and
a re-run of the same spec skips the cells already on disk. ``pyarrow.parquet.read_table(run_dir / "results")``
(or pandas / polars / DuckDB on the same folder) reads the whole table.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from probekit.controls import with_selectivity
from probekit.errors import RunError
from probekit.files import atomic_write_bytes, now
from probekit.manifest import RunManifest

RESULT_SCHEMA = pa.schema(
    [
        ("spec_fingerprint", pa.string()),
        ("cell_id", pa.string()),
        ("model", pa.string()),
        ("model_identity", pa.string()),
        ("dataset", pa.string()),
        ("dataset_fingerprint", pa.string()),
        ("feature", pa.string()),
        ("layer", pa.int32()),
        ("selector", pa.string()),
        ("k", pa.int32()),
        ("control", pa.string()),
        ("neurons", pa.list_(pa.string())),
        ("neuron_indices", pa.list_(pa.int64())),
        ("coefficients", pa.list_(pa.float64())),
        ("intercept", pa.float64()),
        ("f1", pa.float64()),
        ("f1_low", pa.float64()),
        ("f1_high", pa.float64()),
        ("selectivity_shuffled", pa.float64()),
        ("selectivity_random", pa.float64()),
        ("precision", pa.float64()),
        ("recall", pa.float64()),
        ("mcc", pa.float64()),
        ("accuracy", pa.float64()),
        ("balanced_accuracy", pa.float64()),
        ("roc_auc", pa.float64()),
        ("n_train", pa.int64()),
        ("n_test", pa.int64()),
        ("n_train_positive", pa.int64()),
        ("n_test_positive", pa.int64()),
        ("n_train_groups", pa.int64()),
        ("n_test_groups", pa.int64()),
        ("prefilter_size", pa.int64()),
        ("select_seconds", pa.float64()),
        ("fit_seconds", pa.float64()),
        ("selection_scores", pa.list_(pa.float64())),
        ("selector_details", pa.string()),
    ]
)

log = logging.getLogger("probekit.results")


@dataclass(frozen=True)
class DamagedPart:
    """A result part that cannot be read (truncated, corrupted, not a result table), and why."""

    path: Path
    problem: str


class RunDirectory:
    """Owns one run directory: its manifest, its result parts and the lock a running sweep holds on it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.results_dir = self.path / "results"
        self.manifest_path = self.path / "run.json"
        self.lock_path = self.path / ".probekit.lock"
        self.damaged_dir = self.path / "damaged"

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the directory's lock (``flock``, released by the kernel even on kill -9) while a run writes to it;
        a second run into the same directory stops at once, naming the process that holds it."""
        if self.path.exists() and not self.path.is_dir():
            raise RunError(f"the output directory {self.path} is a file; choose another --output")
        self.path.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                other = os.pread(descriptor, 4096, 0).decode(errors="replace")
                raise RunError(f"{self.path} is in use by another probekit run ({_describe_holder(other)}); wait "
                               "for it to finish, or choose another output directory with --output") from None
            holder = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": now(),
                                 "command": " ".join(sys.argv)}).encode()
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, holder, 0)
            yield
        finally:
            os.close(descriptor)  # releases the lock; the file stays (removing it would race with a waiting run)

    def read_manifest(self) -> RunManifest | None:
        """The directory's manifest (upgraded to the current format), None when it has none, or a :class:`RunError`
        naming the file and what is wrong with it."""
        try:
            text = self.manifest_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as error:
            raise RunError(f"{self.manifest_path}: unreadable manifest ({error})") from None
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise RunError(f"{self.manifest_path}: unreadable manifest (not JSON: {error})") from None
        try:
            return RunManifest.from_document(document)
        except ValueError as error:
            raise RunError(f"{self.manifest_path}: invalid manifest ({error})") from None

    def write_manifest(self, manifest: RunManifest) -> None:
        atomic_write_bytes(self.manifest_path, manifest.to_json().encode())

    def open(self, spec: dict[str, Any], fingerprint: str, source: str) -> RunManifest:
        """Start or resume a run; refuses a directory that holds the results of a different spec."""
        manifest = self.read_manifest()
        if manifest is not None and manifest.spec_fingerprint != fingerprint and not self.finished_cells():
            manifest = None  # an earlier run of another spec wrote no result: nothing to protect
        if manifest is not None and manifest.spec_fingerprint != fingerprint:
            raise RunError(
                f"{self.path} holds the results of a different spec (fingerprint "
                f"{manifest.spec_fingerprint}, this spec is {fingerprint}); choose another output directory "
                "with --output, or delete the old run"
            )
        if manifest is None:
            manifest = RunManifest.new(spec, fingerprint, source)
        manifest.start_run(source)
        self.write_manifest(manifest)
        return manifest

    def read_parts(self) -> tuple[pa.Table, list[DamagedPart]]:
        """Every row of every readable part (page checksums verified), and the parts that could not be read."""
        tables, damaged = [], []
        for part in sorted(self.results_dir.glob("*.parquet")) if self.results_dir.exists() else []:
            try:
                tables.append(pq.read_table(part, schema=RESULT_SCHEMA, page_checksum_verification=True))
            except (pa.ArrowException, OSError, ValueError) as error:
                damaged.append(DamagedPart(part, f"{type(error).__name__}: {error}"))
        return (_first_of_each_cell(pa.concat_tables(tables)) if tables else RESULT_SCHEMA.empty_table()), damaged

    def finished_cells(self) -> set[str]:
        """cell ids of every row already written (damaged parts hold none: their cells are recomputed)."""
        return set(self.read_parts()[0].column("cell_id").to_pylist())

    def set_aside_damaged(self) -> list[DamagedPart]:
        """Move unreadable parts to ``damaged/`` (kept for inspection; out of the table readers see), with a
        warning each, so a run recomputes their cells."""
        damaged = self.read_parts()[1]
        for part in damaged:
            self.damaged_dir.mkdir(exist_ok=True)
            os.replace(part.path, self.damaged_dir / part.path.name)
            log.warning("result part %s is damaged (%s); moved it to %s and its cells will be computed again",
                        part.path, part.problem, self.damaged_dir / part.path.name)
        return damaged

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Write ``rows`` (one group of cells) as a new Parquet part, with page checksums."""
        if not rows:
            return
        table = pa.Table.from_pylist(rows, schema=RESULT_SCHEMA)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, write_page_checksum=True)
        part = self.results_dir / f"part-{rows[0]['cell_id']}.parquet"  # cell ids are unique
        atomic_write_bytes(part, sink.getvalue().to_pybytes())

    def read_results(self) -> pa.Table:
        """Every readable result row of the run, each probe's selectivity against its controls filled in (see
        probekit.controls); a damaged part is skipped with a warning naming it."""
        table, damaged = self.read_parts()
        for part in damaged:
            log.warning("skipping damaged result part %s (%s); `probekit run` with the same spec computes its "
                        "cells again", part.path, part.problem)
        return with_selectivity(table)


def _first_of_each_cell(table: pa.Table) -> pa.Table:
    """One row per cell: two units that computed the same cell (a retry racing a slow original on a cluster) each
    wrote a part with it; the rows agree but for timings, and the first part's row (in name order) is kept."""
    seen: set[str] = set()
    keep = []
    for index, cell in enumerate(table.column("cell_id").to_pylist()):
        if cell not in seen:
            seen.add(cell)
            keep.append(index)
    return table if len(keep) == table.num_rows else table.take(keep)


def _describe_holder(text: str) -> str:
    try:
        holder = json.loads(text)
        return f"pid {holder['pid']} on {holder['host']}, since {holder['since']}: {holder['command']}"
    except (ValueError, KeyError, TypeError):
        return "holder unknown"
