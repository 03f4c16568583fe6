"""``run.json``, the manifest of a run directory, as a typed and versioned document.

The manifest records what a run directory holds: the normalised spec and its fingerprint, whether the last run
finished, which (model, dataset) pairs are done, the features skipped and why, what each dataset really held, and one
entry per invocation with its times and package versions. It is plain JSON (``json.load`` reads it); ``format``
numbers its layout. Documents written before ``format`` existed (probekit 0.1) are format 1 and are upgraded in
memory when read; a document from a newer probekit is refused rather than misread.
"""

from __future__ import annotations

import json
import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from probekit import __version__
from probekit.files import now

#: the layout written by this probekit; bump it (and add an upgrade to ``_UPGRADES``) when the layout changes
MANIFEST_FORMAT = 3

#: packages whose versions are recorded in every manifest
RECORDED_PACKAGES = ("torch", "nnsight", "transformers", "tokenizers", "scikit-learn", "numpy", "pyarrow", "pydantic")


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SkippedRecord(_Record):
    """A feature the run left out for one (model, dataset), and why."""

    model: str
    dataset: str
    feature: str
    reason: str


class FeatureCounts(_Record):
    """One feature's positive and negative sites and the source groups they come from."""

    positive: int
    negative: int
    groups: int


class DatasetCounts(_Record):
    """What a dataset really held for one model (it may fall short of what its params asked for)."""

    fingerprint: str
    sequences: int
    sites: int
    groups: int
    features: dict[str, FeatureCounts]


class RunRecord(_Record):
    """One invocation of ``probekit run`` on the directory: its times and the versions it ran with."""

    started_at: str
    finished_at: str | None = None
    probekit: str
    python: str
    packages: dict[str, str]
    #: where its units ran: the executor plugin and its params (format 3; None in older documents)
    executor: dict[str, Any] | None = None
    #: how many units of each kind (extraction, probe) it submitted, retries not counted (format 3)
    units: dict[str, int] = Field(default_factory=dict)

    @classmethod
    def starting_now(cls) -> RunRecord:
        return cls(started_at=now(), probekit=__version__, python=platform.python_version(),
                   packages=package_versions())


class RunManifest(_Record):
    """The typed content of ``run.json``. Lists a document may lack (nothing recorded yet) default to empty."""

    format: int = MANIFEST_FORMAT
    spec_fingerprint: str
    #: the normalised spec, every default filled in
    spec: dict[str, Any]
    #: the spec file the run was started from
    spec_source: str | None = None
    status: Literal["running", "complete"] = "running"
    #: (model, dataset) label pairs whose every cell is on disk
    completed: list[tuple[str, str]] = Field(default_factory=list)
    skipped_features: list[SkippedRecord] = Field(default_factory=list)
    #: "model / dataset" -> what the dataset held for that model
    datasets: dict[str, DatasetCounts] = Field(default_factory=dict)
    runs: list[RunRecord] = Field(default_factory=list)

    @field_validator("format")
    @classmethod
    def _current_format(cls, value: int) -> int:
        if value != MANIFEST_FORMAT:
            raise ValueError(f"format {value} is not the current format {MANIFEST_FORMAT} (read documents with "
                             "RunManifest.from_document, which upgrades them)")
        return value

    @classmethod
    def new(cls, spec: dict[str, Any], fingerprint: str, source: str) -> RunManifest:
        """The manifest of a run directory no run has written to yet."""
        return cls(spec_fingerprint=fingerprint, spec=spec, spec_source=source)

    @classmethod
    def from_document(cls, document: Any) -> RunManifest:
        """Read a parsed ``run.json`` of any format up to the current one, upgrading an older one in memory.

        Raises :class:`ValueError` with a one-line message naming each wrong or missing key.
        """
        if not isinstance(document, dict):
            raise ValueError(f"the manifest is a JSON {type(document).__name__}, not an object")
        found = document.get("format", 1)  # probekit 0.1 wrote no format
        if not isinstance(found, int) or isinstance(found, bool) or found < 1:
            raise ValueError(f"format: {found!r} is not a manifest format (1-{MANIFEST_FORMAT})")
        if found > MANIFEST_FORMAT:
            raise ValueError(f"format {found} was written by a newer probekit (this one reads formats up to "
                             f"{MANIFEST_FORMAT}); upgrade probekit to use this run directory")
        for step in range(found, MANIFEST_FORMAT):
            document = _UPGRADES[step](document)
        try:
            return cls.model_validate(document)
        except ValidationError as error:
            raise ValueError("; ".join(f"{'.'.join(map(str, problem['loc'])) or 'the document'}: {problem['msg']}"
                                       for problem in error.errors())) from None

    def to_json(self) -> str:
        """The document ``run.json`` holds (keys sorted, so versions of it diff well)."""
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True)

    # The changes a sweep makes, in the order it makes them.

    def start_run(self, source: str) -> None:
        """A new invocation starts (from the spec file ``source``): running, with its own times and versions."""
        self.spec_source = source
        self.status = "running"
        self.runs.append(RunRecord.starting_now())

    def forget_completed(self) -> None:
        """Look at every (model, dataset) again (after damaged result parts were set aside: which pair their cells
        belonged to is unknown)."""
        self.completed.clear()

    def is_completed(self, model: str, dataset: str) -> bool:
        return (model, dataset) in self.completed

    def mark_completed(self, model: str, dataset: str) -> None:
        if not self.is_completed(model, dataset):
            self.completed.append((model, dataset))

    def record_skipped(self, model: str, dataset: str, feature: str, reason: str) -> bool:
        """Record a skipped feature once per (model, dataset, feature), keeping the first reason; True when new."""
        if any((s.model, s.dataset, s.feature) == (model, dataset, feature) for s in self.skipped_features):
            return False
        self.skipped_features.append(SkippedRecord(model=model, dataset=dataset, feature=feature, reason=reason))
        return True

    def record_dataset(self, model: str, dataset: str, counts: DatasetCounts) -> None:
        self.datasets[f"{model} / {dataset}"] = counts

    def finish_run(self) -> None:
        """The current invocation ran every cell: complete, with its end time."""
        self.status = "complete"
        if self.runs:
            self.runs[-1].finished_at = now()


def _from_format_1(document: dict[str, Any]) -> dict[str, Any]:
    """probekit 0.1 wrote the same keys without ``format`` (and, before it counted datasets, without ``datasets``,
    which defaults to empty): nothing to change but the number."""
    return {**document, "format": 2}


def _from_format_2(document: dict[str, Any]) -> dict[str, Any]:
    """Format 3 records each run's executor; runs before executors existed ran in-process (``executor`` None)."""
    return {**document, "format": 3}


#: format N -> the function that turns a format-N document into a format-(N + 1) one
_UPGRADES = {1: _from_format_1, 2: _from_format_2}


def package_versions() -> dict[str, str]:
    versions = {}
    for package in RECORDED_PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions
