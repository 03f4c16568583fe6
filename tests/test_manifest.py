"""run.json: a typed, versioned manifest that older runs' documents still open, and clear errors for broken ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from probekit.cli import app
from probekit.errors import RunError
from probekit.manifest import MANIFEST_FORMAT, DatasetCounts, FeatureCounts, RunManifest
from probekit.results import RunDirectory

SPEC = {"name": "t", "models": [{"plugin": "m"}], "datasets": [{"plugin": "d"}], "selectors": [{"plugin": "a"}],
        "ks": [1, 2]}

#: run.json as probekit 0.1 wrote it (no format; one finished and one interrupted invocation)
FORMAT_1 = {
    "completed": [["minilm", "text_features"]],
    "datasets": {"minilm / text_features": {"features": {"all_digits": {"groups": 7, "negative": 90, "positive": 30}},
                                            "fingerprint": "0123456789abcdef", "groups": 9, "sequences": 40,
                                            "sites": 120}},
    "runs": [
        {"finished_at": "2025-01-01T10:05:00+00:00", "packages": {"numpy": "2.1.0", "torch": "2.5.0"},
         "probekit": "0.1.0", "python": "3.11.7", "started_at": "2025-01-01T10:00:00+00:00"},
        {"finished_at": None, "packages": {"numpy": "2.1.0", "torch": "2.5.0"}, "probekit": "0.1.0",
         "python": "3.11.7", "started_at": "2025-01-02T09:00:00+00:00"},
    ],
    "skipped_features": [{"dataset": "text_features", "feature": "is_upper", "model": "minilm",
                          "reason": "0 positive / 120 negative sites; need 5 of each"}],
    "spec": SPEC,
    "spec_fingerprint": "fedcba9876543210",
    "spec_source": "spec.yaml",
    "status": "running",
}


def write_manifest(directory: Path, document: object) -> RunDirectory:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "run.json").write_text(json.dumps(document) if not isinstance(document, str) else document)
    return RunDirectory(directory)


def test_a_new_run_writes_todays_keys_plus_format(tmp_path: Path) -> None:
    run_dir = RunDirectory(tmp_path / "run")
    manifest = run_dir.open(SPEC, "abc", "spec.yaml")
    document = json.loads(run_dir.manifest_path.read_text())
    assert document["format"] == MANIFEST_FORMAT == 3
    assert {"spec_fingerprint", "spec", "spec_source", "status", "completed", "skipped_features", "datasets",
            "runs"} <= set(document)
    assert document["status"] == "running" and document["spec"] == SPEC and document["spec_source"] == "spec.yaml"
    assert document["runs"][0]["finished_at"] is None and document["runs"][0]["packages"]["torch"] != ""
    assert run_dir.read_manifest() == manifest


def test_round_trip_keeps_every_update(tmp_path: Path) -> None:
    run_dir = RunDirectory(tmp_path / "run")
    manifest = run_dir.open(SPEC, "abc", "spec.yaml")
    counts = DatasetCounts(fingerprint="f", sequences=3, sites=6, groups=2,
                           features={"x": FeatureCounts(positive=2, negative=4, groups=2)})
    manifest.record_dataset("m", "d", counts)
    manifest.record_skipped("m", "d", "y", "too few")
    manifest.mark_completed("m", "d")
    manifest.finish_run()
    run_dir.write_manifest(manifest)
    read = run_dir.read_manifest()
    assert read == manifest
    document = json.loads(run_dir.manifest_path.read_text())
    assert document["completed"] == [["m", "d"]] and document["status"] == "complete"
    assert document["datasets"]["m / d"]["features"]["x"] == {"positive": 2, "negative": 4, "groups": 2}
    assert document["skipped_features"] == [{"model": "m", "dataset": "d", "feature": "y", "reason": "too few"}]
    assert document["runs"][0]["finished_at"] is not None


def test_a_format_1_document_is_read_and_upgraded_in_memory(tmp_path: Path) -> None:
    run_dir = write_manifest(tmp_path / "run", FORMAT_1)
    manifest = run_dir.read_manifest()
    assert manifest is not None and manifest.format == MANIFEST_FORMAT
    assert manifest.is_completed("minilm", "text_features") and not manifest.is_completed("minilm", "other")
    assert manifest.skipped_features[0].feature == "is_upper"
    assert manifest.datasets["minilm / text_features"].features["all_digits"].positive == 30
    assert [run.finished_at for run in manifest.runs] == ["2025-01-01T10:05:00+00:00", None]
    assert json.loads(run_dir.manifest_path.read_text()) == FORMAT_1  # reading does not rewrite the file

    resumed = run_dir.open(SPEC, "fedcba9876543210", "spec.yaml")  # the same spec resumes on the old manifest
    assert len(resumed.runs) == 3 and resumed.is_completed("minilm", "text_features")
    document = json.loads(run_dir.manifest_path.read_text())
    assert document["format"] == MANIFEST_FORMAT and document["skipped_features"] == FORMAT_1["skipped_features"]


def test_a_format_1_document_from_before_dataset_counts_is_read(tmp_path: Path) -> None:
    older = {key: value for key, value in FORMAT_1.items() if key != "datasets"}
    manifest = write_manifest(tmp_path / "run", older).read_manifest()
    assert manifest is not None and manifest.datasets == {}


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ("{not json", "unreadable manifest (not JSON: Expecting property name"),
        ("[1, 2]", "invalid manifest (the manifest is a JSON list, not an object)"),
        ({**FORMAT_1, "completed": [["minilm"]]}, "invalid manifest (completed.0.1: Field required)"),
        ({**FORMAT_1, "status": "done", "spec": None},
         "invalid manifest (spec: Input should be a valid dictionary; status: Input should be 'running' or "
         "'complete')"),
        ({key: value for key, value in FORMAT_1.items() if key != "spec_fingerprint"},
         "invalid manifest (spec_fingerprint: Field required)"),
        ({**FORMAT_1, "format": 99}, "format 99 was written by a newer probekit"),
        ({**FORMAT_1, "format": "2"}, "format: '2' is not a manifest format"),
    ],
)
def test_a_broken_manifest_is_a_run_error_naming_the_file(tmp_path: Path, document: object, problem: str) -> None:
    run_dir = write_manifest(tmp_path / "run", document)
    with pytest.raises(RunError) as error:
        run_dir.read_manifest()
    assert str(error.value).startswith(f"{run_dir.manifest_path}: ") and problem in str(error.value)
    assert "\n" not in str(error.value)
    with pytest.raises(RunError, match="manifest"):
        run_dir.open(SPEC, "fedcba9876543210", "spec.yaml")  # a run refuses it too, before touching anything


def test_report_on_a_broken_manifest_is_one_line_and_exit_2(tmp_path: Path) -> None:
    write_manifest(tmp_path / "run", {**FORMAT_1, "runs": "yesterday"})
    result = CliRunner().invoke(app, ["report", str(tmp_path / "run")])
    assert result.exit_code == 2
    manifest = tmp_path / "run" / "run.json"
    assert result.stderr == f"error: {manifest}: invalid manifest (runs: Input should be a valid list)\n"


def test_report_on_a_format_1_run(tmp_path: Path) -> None:
    write_manifest(tmp_path / "run", FORMAT_1)
    result = CliRunner().invoke(app, ["report", str(tmp_path / "run")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    report = (tmp_path / "run" / "report.md").read_text()
    assert "fingerprint `fedcba9876543210`" in report and "- status: running; result rows: 0" in report
    assert "- minilm / text_features / is_upper: 0 positive / 120 negative sites; need 5 of each" in report


def test_a_different_spec_is_refused_once_results_exist(tmp_path: Path) -> None:
    run_dir = write_manifest(tmp_path / "run", FORMAT_1)
    assert run_dir.open(SPEC, "another", "other.yaml").spec_fingerprint == "another"  # no result yet: replaced
    run_dir.append([{"cell_id": "0123", "feature": "x"}])  # a result row of the other spec
    with pytest.raises(RunError, match="holds the results of a different spec .*fingerprint another"):
        run_dir.open(SPEC, "fedcba9876543210", "spec.yaml")


def test_the_sweeps_updates() -> None:
    manifest = RunManifest.new(SPEC, "abc", "spec.yaml")
    manifest.start_run("spec.yaml")
    assert manifest.status == "running" and len(manifest.runs) == 1 and manifest.runs[0].finished_at is None

    assert manifest.record_skipped("m", "d", "x", "first reason")
    assert not manifest.record_skipped("m", "d", "x", "another reason")  # once per (model, dataset, feature)
    assert manifest.record_skipped("m", "d2", "x", "first reason")
    assert [(s.dataset, s.reason) for s in manifest.skipped_features] == [("d", "first reason"), ("d2", "first reason")]

    manifest.mark_completed("m", "d")
    manifest.mark_completed("m", "d")
    assert manifest.completed == [("m", "d")] and manifest.is_completed("m", "d")
    manifest.forget_completed()  # damaged parts were set aside: every pair is looked at again
    assert not manifest.is_completed("m", "d")

    manifest.finish_run()
    assert manifest.status == "complete" and manifest.runs[0].finished_at is not None
    manifest.start_run("moved/spec.yaml")  # a re-run: running again, a second invocation, the new source
    assert manifest.status == "running" and len(manifest.runs) == 2 and manifest.spec_source == "moved/spec.yaml"
    assert manifest.runs[0].finished_at is not None and manifest.runs[1].finished_at is None


def test_only_the_current_format_is_constructed_directly() -> None:
    with pytest.raises(ValueError, match="from_document"):
        RunManifest.model_validate({**FORMAT_1, "format": 1})
