"""The `slurm` executor against a real one-node Slurm cluster (slurmctld, slurmd, munged on loopback, in a private
network namespace): the same rows as a local run, and a cancelled array task retried with nothing lost or doubled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from slurm_cluster import SlurmCluster

from probekit.registry import PluginRegistry
from probekit.spec import validate_spec_text
from probekit.sweep import run_sweep

pytestmark = pytest.mark.slow

#: columns that may differ between executors: how long things took
TIMINGS = {"select_seconds", "fit_seconds"}

# mean_diff that takes `seconds` per selection, so that an array task is still running when the test cancels it
SLOW_SELECTOR = """
    import time

    from probekit.api import PluginParams, RankingSelector, mean_difference

    class Slow(RankingSelector):
        '''mean_diff, slowly.'''

        class Params(PluginParams):
            seconds: float = 0.0

        def score(self, X_train, y_train):
            time.sleep(self.params.seconds)
            return mean_difference(X_train, y_train)
"""


@pytest.fixture
def plugins_path(install_fake_distribution) -> str:
    """PYTHONPATH under which the driver and its Slurm jobs find model `fake` and selector `slow` (jobs inherit the
    submitting environment)."""
    fake = {"probekit.models": {"fake": "probekit.testing:FakeModel"}}
    roots = [install_fake_distribution("probekit-testing-fake", "", fake),
             install_fake_distribution("slow-selector", SLOW_SELECTOR, {"probekit.selectors": {"slow": "Slow"}})]
    return os.pathsep.join(entry for entry in sys.path if any(root in entry for root in roots))


def spec_text(output: Path, cache: Path, seconds: float, executor: str = "") -> str:
    return (
        "models:\n  - plugin: fake\n"
        "datasets:\n  - plugin: text_features\n"
        "    params: {max_sequences: 60, sequence_length: 64, max_examples: 300, min_positive_rate: 0.02,\n"
        "             features: [all_digits, leading_capital, has_leading_space]}\n"
        f"layers: [0, 1]\nselectors:\n  - plugin: slow\n    params: {{seconds: {seconds}}}\n"
        "  - plugin: l1_logreg\n"
        f"ks: [1, 2]\noutput: {output}\ncache: {cache}\n{executor}"
    )


SLURM = ("executor:\n  plugin: slurm\n  params: {poll_seconds: 0.5, time_minutes: 10, extraction: {cpus: 1}, "
         "probe: {cpus: 1}}\n  pairs_per_unit: 1\n")


def comparable(run_dir: Path) -> list[dict]:
    rows = pq.read_table(run_dir / "results").to_pylist()
    return sorted(({k: v for k, v in row.items() if k not in TIMINGS} for row in rows), key=lambda r: r["cell_id"])


def local_rows(tmp_path: Path, seconds: float) -> list[dict]:
    """The rows of the same spec run by the local executor (``seconds`` is part of the spec, so of its cell ids)."""
    run_sweep(validate_spec_text(spec_text(tmp_path / "local", tmp_path / "cache-local", seconds), "local.yaml",
                                 PluginRegistry()))
    return comparable(tmp_path / "local")


def test_slurm_writes_the_same_rows_as_local(slurm_cluster: SlurmCluster, plugins_path: str, tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(spec_text(tmp_path / "slurm", tmp_path / "cache-slurm", 0, SLURM))
    done = slurm_cluster.run([sys.executable, "-m", "probekit", "run", str(tmp_path / "spec.yaml")],
                             env={"PYTHONPATH": plugins_path}, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert comparable(tmp_path / "slurm") == local_rows(tmp_path, 0)
    manifest = json.loads((tmp_path / "slurm" / "run.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["runs"][-1]["executor"]["plugin"] == "slurm"
    # every unit ran as a task of a job array, and left its logs in the run directory
    assert sorted((tmp_path / "slurm" / "slurm").glob("*/*_log.out"))


def running_probe_task(cluster: SlurmCluster, timeout: float = 120) -> str:
    """The id (``<array>_<task>``) of a probe unit's array task once one is running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = cluster.run(["squeue", "--noheader", "--array", "--states=RUNNING", "--format=%i %j"])
        for line in listed.stdout.splitlines():
            task, name = line.split()
            if name == "probekit-probe":
                return task
        time.sleep(0.2)
    raise AssertionError(f"no probe task ran within {timeout} s\n{cluster.log_tail()}")


def test_a_cancelled_array_task_is_retried_and_nothing_is_lost_or_doubled(
        slurm_cluster: SlurmCluster, plugins_path: str, tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(spec_text(tmp_path / "slurm", tmp_path / "cache-slurm", 2.0, SLURM))
    expected = local_rows(tmp_path, 2.0)
    driver = slurm_cluster.popen([sys.executable, "-m", "probekit", "run", str(tmp_path / "spec.yaml")],
                                 env={"PYTHONPATH": plugins_path}, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
    try:
        task = running_probe_task(slurm_cluster)
        cancelled = slurm_cluster.run(["scancel", task])
        assert cancelled.returncode == 0, cancelled.stderr
        output, _ = driver.communicate(timeout=300)
    finally:
        driver.kill()
    assert driver.returncode == 0, output
    assert "submitting it again" in output and task.split("_")[0] in output
    # the cancelled task's log exists, and says it was cancelled
    assert "CANCELLED" in "".join(path.read_text() for path in (tmp_path / "slurm" / "slurm").glob(f"{task}*/*err"))
    ids = pq.read_table(tmp_path / "slurm" / "results").column("cell_id").to_pylist()
    assert len(ids) == len(set(ids)) == 3 * 2 * 2 * 2  # features x layers x selectors x ks, none twice
    assert comparable(tmp_path / "slurm") == expected
    assert json.loads((tmp_path / "slurm" / "run.json").read_text())["status"] == "complete"


def running_step(logs: Path) -> bool:
    """Whether an array task's Python has started in its srun step and not finished (submitit's log says so). Called
    once a probe task is listed RUNNING: the extraction array has completed by then, so this is a probe task."""
    for path in logs.glob("*_*/*_log.out"):
        text = path.read_text(errors="replace")
        if "Starting with JobEnvironment" in text and "Job completed" not in text:
            return True
    return False


def test_an_interrupted_driver_cancels_its_array_and_the_same_command_resumes(
        slurm_cluster: SlurmCluster, plugins_path: str, tmp_path: Path) -> None:
    (tmp_path / "spec.yaml").write_text(spec_text(tmp_path / "slurm", tmp_path / "cache-slurm", 2.0, SLURM))
    command = [sys.executable, "-m", "probekit", "run", str(tmp_path / "spec.yaml")]
    driver = slurm_cluster.popen(command, env={"PYTHONPATH": plugins_path}, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True,
                                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as at a terminal
    try:
        task = running_probe_task(slurm_cluster)
        array = task.split("_")[0]
        # RUNNING in squeue comes before the task's srun step starts; interrupt once its Python has started, so the
        # cancelled step logs CANCELLED (before it, srun logs a refused or expired step instead)
        deadline = time.monotonic() + 60
        while not running_step(tmp_path / "slurm" / "slurm"):
            assert time.monotonic() < deadline, f"no task of {array} started its step\n{slurm_cluster.log_tail()}"
            time.sleep(0.1)
        driver.send_signal(signal.SIGINT)
        output, _ = driver.communicate(timeout=60)
    finally:
        driver.kill()
    assert driver.returncode == 130, output
    assert "interrupted: finished cells are saved" in output
    deadline = time.monotonic() + 30  # scancel'led: the array leaves the queue (KillWait is 2 s)
    while slurm_cluster.run(["squeue", "--noheader", "--array", "--format=%i", "--jobs", array]).stdout.strip():
        assert time.monotonic() < deadline, "the interrupted driver's array is still queued or running"
        time.sleep(0.2)
    logs = "".join(path.read_text() for path in (tmp_path / "slurm" / "slurm").glob(f"{array}_*/*_log.err"))
    assert "CANCELLED" in logs, logs  # killed by the driver's scancel, not left to finish
    resumed = slurm_cluster.run(command, env={"PYTHONPATH": plugins_path}, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "cells already on disk" in resumed.stdout
    assert comparable(tmp_path / "slurm") == local_rows(tmp_path, 2.0)
