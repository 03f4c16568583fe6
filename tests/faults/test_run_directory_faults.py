"""Faults around the run directory: a damaged result part, two runs at once, directories that cannot be written, a full
disk, and dataset plugins whose output would corrupt the results (caught at the plugin boundary)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from fault_tools import PROBEKIT, in_mount_namespace, probekit, result_rows, start_probekit, wait_for, write_spec
from typer.testing import CliRunner

from probekit.cli import app

pytestmark = pytest.mark.slow  # real processes, each run a few seconds


def test_a_truncated_result_part_is_set_aside_and_its_cells_recomputed(tmp_path: Path, reference_rows) -> None:
    spec = write_spec(tmp_path)
    assert probekit("run", str(spec), cwd=tmp_path).returncode == 0
    parts = sorted((tmp_path / "out" / "results").glob("*.parquet"))
    victim = parts[1]
    victim.write_bytes(victim.read_bytes()[:300])

    report = probekit("report", "out", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    shown = victim.relative_to(tmp_path)  # as the user wrote it: out/results/part-....parquet
    assert f"warning: skipping damaged result part {shown} (ArrowInvalid" in report.stderr
    assert f"{len(reference_rows) - 2} result rows" in report.stdout and "Traceback" not in report.stderr

    resumed = probekit("run", str(spec), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"warning: result part {shown} is damaged" in resumed.stderr
    assert "2 new result rows" in resumed.stdout  # only the damaged part's cells
    assert result_rows(tmp_path / "out") == reference_rows
    assert (tmp_path / "out" / "damaged" / victim.name).read_bytes() == victim.read_bytes()[:300]
    pq.read_table(tmp_path / "out" / "results")  # the folder reads as one table again


def test_a_second_run_into_the_same_directory_stops_and_names_the_first(tmp_path: Path, reference_rows) -> None:
    spec = write_spec(tmp_path)
    first = start_probekit("run", str(spec), cwd=tmp_path)
    wait_for(lambda: (tmp_path / "out" / "run.json").exists(), first, "the first run opened its directory")
    second = probekit("run", str(spec), cwd=tmp_path, timeout=120)
    assert second.returncode == 2
    assert f"error: out is in use by another probekit run (pid {first.pid} on " in second.stderr
    assert "Traceback" not in second.stderr
    assert first.wait(timeout=300) == 0

    again = probekit("run", str(spec), cwd=tmp_path)  # the lock is released: a later run resumes (nothing to do)
    assert again.returncode == 0 and "0 new result rows" in again.stdout
    manifest = json.loads((tmp_path / "out" / "run.json").read_text())
    assert len(manifest["runs"]) == 2 and all(run["finished_at"] for run in manifest["runs"])
    assert result_rows(tmp_path / "out") == reference_rows


def test_the_lock_dies_with_its_process(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    first = start_probekit("run", str(spec), cwd=tmp_path)
    wait_for(lambda: (tmp_path / "out" / "run.json").exists(), first, "the first run opened its directory")
    first.kill()
    first.wait(timeout=60)
    assert probekit("run", str(spec), cwd=tmp_path).returncode == 0


def test_output_directories_that_cannot_be_written(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    (tmp_path / "a-file").write_text("not a directory")
    for output, expected in (("/proc/probekit-test", "cannot write"), ("a-file", "is a file"),
                             ("a-file/below", "cannot write")):
        result = probekit("run", str(spec), "--output", output, cwd=tmp_path, timeout=120)
        assert result.returncode == 2, (output, result.stderr)
        assert result.stderr.startswith("error: ") and expected in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_read_only_filesystem_is_a_clear_error(tmp_path: Path, mount_namespace) -> None:
    spec = write_spec(tmp_path, output=tmp_path / "ro" / "out", cache=tmp_path / "cache")
    (tmp_path / "ro").mkdir()
    script = f"""
        mount -t tmpfs -o ro,size=1m tmpfs {tmp_path / 'ro'}
        set +e
        "$PROBEKIT" run {spec}
        echo "exit=$?"
    """
    result = in_mount_namespace(script, cwd=tmp_path)
    assert "exit=2" in result.stdout, result.stderr
    assert "Read-only file system; choose a writable location" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="permission denied needs an unprivileged user: run as root with setpriv to switch")
def test_permission_denied_is_a_clear_error(tmp_path: Path) -> None:
    shared = Path(tempfile.mkdtemp(prefix="probekit-nobody-"))
    try:
        os.chmod(shared, 0o777)
        locked = shared / "locked"
        locked.mkdir(mode=0o755)  # root's: nobody may not write here
        spec = write_spec(shared, output=locked / "out", cache=shared / "cache")
        os.chmod(spec, 0o644)
        result = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(PROBEKIT), "run", str(spec)],
            cwd=shared, capture_output=True, text=True, timeout=300,
            env={**os.environ, "HOME": str(shared), "HF_HOME": str(shared / "hf")})
        assert result.returncode == 2, result.stderr
        assert "Permission denied; choose a writable location" in result.stderr and "Traceback" not in result.stderr
    finally:
        shutil.rmtree(shared, ignore_errors=True)


def test_a_full_disk_under_the_results_keeps_every_written_part_valid(tmp_path: Path, mount_namespace,
                                                                      reference_rows) -> None:
    """The run directory on a tmpfs that holds the manifest and about one result part; then it grows."""
    spec = write_spec(tmp_path, output=tmp_path / "small" / "out", cache=tmp_path / "cache")
    (tmp_path / "small").mkdir()
    copy = tmp_path / "copy"
    script = f"""
        mount -t tmpfs -o size=48k tmpfs {tmp_path / 'small'}
        set +e
        "$PROBEKIT" run {spec}
        echo "first=$?"
        ls -A {tmp_path / 'small' / 'out' / 'results'} > {tmp_path / 'listing'}
        cp -r {tmp_path / 'small' / 'out'} {copy}
        mount -o remount,size=8m {tmp_path / 'small'}
        "$PROBEKIT" run {spec}
        echo "second=$?"
        cp -r {tmp_path / 'small' / 'out'} {tmp_path / 'final'}
    """
    result = in_mount_namespace(script, cwd=tmp_path)
    assert "first=2" in result.stdout and "second=0" in result.stdout, (result.stdout, result.stderr)
    assert "error: no space left on the device of the run directory or the activation cache" in result.stderr
    assert "every result part already written is complete; the run resumes from them" in result.stderr
    written = (tmp_path / "listing").read_text().split()
    assert all(name.startswith("part-") and name.endswith(".parquet") for name in written)  # no temporary files
    for name in written:  # each part the full disk let through is whole
        pq.read_table(copy / "results" / name)
    assert len(written) < 4
    assert result_rows(tmp_path / "final") == reference_rows


DUPLICATE_NAMES = """
    import numpy as np
    from probekit.contracts import DatasetPlugin, Feature, PluginParams, ProbeSites, ProbingDataset

    class Twice(DatasetPlugin):
        '''Emits two features with one name.'''

        def build(self, tokenizer):
            ids = np.asarray(tokenizer("probing one two three four five six seven eight")["input_ids"])
            positions = np.arange(1, len(ids) - 1)
            labels = positions % 2 == 0
            sites = ProbeSites(np.zeros(len(positions)), positions, positions + 1)
            everything = np.arange(len(positions))
            return ProbingDataset([ids], sites, [Feature("even", everything, labels),
                                                 Feature("even", everything, ~labels)])

    class OutOfRange(Twice):
        '''A feature indexing a site that does not exist.'''

        def build(self, tokenizer):
            dataset = Twice.build(self, tokenizer)
            feature = dataset.features[0]
            return ProbingDataset(dataset.sequences, dataset.sites,
                                  [Feature("even", feature.sites + 100, feature.labels)])

    class Counts(Twice):
        '''Labels that are counts, not classes.'''

        def build(self, tokenizer):
            dataset = Twice.build(self, tokenizer)
            feature = dataset.features[0]
            return ProbingDataset(dataset.sequences, dataset.sites,
                                  [Feature("even", feature.sites, feature.sites % 3)])

    class Nothing(Twice):
        '''No feature at all.'''

        def build(self, tokenizer):
            dataset = Twice.build(self, tokenizer)
            return ProbingDataset(dataset.sequences, dataset.sites, [])
"""


@pytest.mark.parametrize(("plugin", "expected"), [
    ("twice", "feature names must be unique; repeated: 'even'"),
    ("out_of_range", "feature 'even' indexes site 108, but the dataset has 9 sites (0-8)"),
    ("counts", "ValueError: feature 'even': labels must be bool or 0/1, got values [0, 1, 2]"),
    ("nothing", "it built no feature"),
])
def test_a_dataset_plugin_whose_output_is_unusable_is_named(tmp_path: Path, install_fake_distribution, plugin: str,
                                                            expected: str) -> None:
    module = install_fake_distribution("bad-datasets", DUPLICATE_NAMES, {"probekit.datasets": {
        "twice": "Twice", "out_of_range": "OutOfRange", "counts": "Counts", "nothing": "Nothing"}})
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"models: [{{plugin: minilm}}]\ndatasets: [{{plugin: {plugin}}}]\nlayers: [0]\n"
                    "selectors: [{plugin: mean_diff}]\nks: [1]\nmin_per_class: 2\noutput: out\ncache: null\n")
    result = CliRunner().invoke(app, ["run", str(spec)])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: dataset '{plugin}'") and expected in result.stderr
    if plugin != "counts":  # a crash inside build() is named by the guard; the others by the boundary check
        assert f"(plugin '{plugin}', {module}." in result.stderr
    assert not (tmp_path / "out" / "results").exists()


def test_a_labels_file_without_spans_stops_the_run(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "labels.jsonl").write_text('{"text": "Nothing is labelled here.", "spans": []}\n' * 20)
    spec = tmp_path / "spec.yaml"
    spec.write_text("models: [{plugin: minilm}]\n"
                    "datasets: [{plugin: labeled_tokens, params: {path: data/labels.jsonl}}]\n"
                    "layers: [0]\nselectors: [{plugin: mean_diff}]\nks: [1]\noutput: out\ncache: null\n")
    started = time.monotonic()
    result = probekit("run", str(spec), cwd=tmp_path / "data")  # run from elsewhere: the path is the spec's
    assert result.returncode == 2, result.stderr
    assert f"'{tmp_path / 'data' / 'labels.jsonl'}' holds no labelled span" in result.stderr
    assert "results in" not in result.stdout and time.monotonic() - started < 120
