"""The test cluster itself: a batch job runs and writes its output; submitit, run inside the cluster's namespace,
runs a job array there; and a task cancelled with scancel leaves the queue without a result and with CANCELLED in its
log, which is how the slurm executor (it polls squeue; the cluster has no accounting, so no sacct) sees it ended."""

from __future__ import annotations

import json
import re
import sys
import textwrap
import time
from pathlib import Path

import pytest
from slurm_cluster import SlurmCluster

pytestmark = pytest.mark.slow  # about 8 s together with the cluster's start-up: Slurm schedules within 1-3 s

#: a module for the jobs to import (submitit pickles functions by reference)
WORK = """\
import time


def work(x):
    if x == 1:
        time.sleep(300)  # cancelled long before
    if x == 3:
        raise ValueError("task 3 fails")
    return x * 10
"""


def submitit_snippet(cluster: SlurmCluster, code: str, *args: str, pythonpath: Path | None = None) -> dict:
    """Run ``code`` in the cluster's namespace with this interpreter; it prints one JSON object last."""
    env = {"PYTHONPATH": str(pythonpath)} if pythonpath else {}
    result = cluster.run([sys.executable, "-c", textwrap.dedent(code), *args], env=env, timeout=240)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{cluster.log_tail()}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def wait_until_gone(cluster: SlurmCluster, job_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while cluster.run(["squeue", "--noheader", "--jobs", job_id]).stdout.strip():
        assert time.monotonic() < deadline, f"job {job_id} still queued after {timeout} s"
        time.sleep(0.2)


def test_a_batch_job_runs_and_writes_its_output(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    output = tmp_path / "hello.out"
    submitted = slurm_cluster.run(["sbatch", "--parsable", f"--output={output}",
                                   "--wrap", "echo hello from $SLURM_JOB_ID"])
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip().split(";")[0]
    wait_until_gone(slurm_cluster, job_id)
    assert output.read_text() == f"hello from {job_id}\n"


def test_submitit_runs_a_job_array(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    outcome = submitit_snippet(slurm_cluster, """
        import json, operator, sys
        import submitit
        executor = submitit.AutoExecutor(folder=sys.argv[1], cluster="slurm")
        executor.update_parameters(slurm_array_parallelism=2, timeout_min=5, slurm_partition=sys.argv[2])
        jobs = executor.map_array(operator.mul, [1, 2, 3], [4, 5, 6])
        results = [job.result() for job in jobs]
        print(json.dumps({"ids": [job.job_id for job in jobs], "results": results,
                          "stdout": [str(job.paths.stdout) for job in jobs]}))
    """, str(tmp_path / "jobs"), slurm_cluster.partition)
    assert outcome["results"] == [4, 10, 18]
    array = outcome["ids"][0].split("_")[0]
    assert outcome["ids"] == [f"{array}_{task}" for task in range(3)]
    assert outcome["stdout"] == [str(tmp_path / "jobs" / f"{array}_{task}_0_log.out") for task in range(3)]


def test_a_cancelled_array_task_leaves_the_queue_without_a_result(slurm_cluster: SlurmCluster,
                                                                   tmp_path: Path) -> None:
    """What the slurm executor relies on, with no accounting (no sacct): a task cancelled while running leaves
    `squeue --array` within seconds, without a result pickle, and its stderr log says CANCELLED; the other tasks,
    the failing one included, leave their result pickles. submitit's `done()`/`result()` of the cancelled task would
    ask sacct, so it is never called."""
    (tmp_path / "pk_cluster_work.py").write_text(WORK)
    outcome = submitit_snippet(slurm_cluster, """
        import json, subprocess, sys, time
        import submitit
        from pk_cluster_work import work
        executor = submitit.AutoExecutor(folder=sys.argv[1], cluster="slurm")
        executor.update_parameters(slurm_array_parallelism=2, timeout_min=5)
        jobs = executor.map_array(work, [0, 1, 2, 3])
        slow = jobs[1]
        array = slow.job_id.split("_")[0]

        def queued():
            listed = subprocess.run(["squeue", "--noheader", "--array", "--format=%i", "--jobs", array],
                                    capture_output=True, text=True)
            if listed.returncode != 0:  # squeue refuses an array id once all its tasks have left the queue
                assert "Invalid job id" in listed.stderr, listed.stderr
                return set()
            return set(listed.stdout.split())

        squeue = ["squeue", "--noheader", "--format=%T", "--jobs", slow.job_id]
        deadline = time.monotonic() + 60
        while subprocess.run(squeue, capture_output=True, text=True).stdout.strip() != "RUNNING":
            assert time.monotonic() < deadline, "task 1 never ran"
            time.sleep(0.1)
        queued_before = sorted(queued())
        subprocess.run(["scancel", slow.job_id], check=True)
        cancelled = time.monotonic()
        while slow.job_id in queued():
            assert time.monotonic() < cancelled + 60, "the cancelled task is still queued after 60 s"
            time.sleep(0.1)
        seconds_to_gone = time.monotonic() - cancelled
        pickle_when_gone = slow.paths.result_pickle.exists()
        stderr_when_gone = slow.paths.stderr.read_text(errors="replace") if slow.paths.stderr.exists() else ""
        others = [job for job in jobs if job is not slow]
        while not all(job.paths.result_pickle.exists() for job in others):
            assert time.monotonic() < cancelled + 120, "the other tasks left no result within 120 s"
            time.sleep(0.1)
        outcomes = {}
        for job in others:
            try:
                outcomes[job.job_id] = {"result": job.result()}
            except Exception as error:
                outcomes[job.job_id] = {"error": type(error).__name__, "message": str(error)[:2000]}
        while queued():
            assert time.monotonic() < cancelled + 120, "the array is still queued"
            time.sleep(0.1)
        print(json.dumps({"ids": [job.job_id for job in jobs], "queued_before": queued_before,
                          "seconds_to_gone": seconds_to_gone, "pickle_when_gone": pickle_when_gone,
                          "pickle_at_end": slow.paths.result_pickle.exists(),
                          "stderr_when_gone": stderr_when_gone[-2000:],
                          "stderr_at_end": slow.paths.stderr.read_text(errors="replace")[-2000:],
                          "outcomes": outcomes, "seconds_to_all_results": time.monotonic() - cancelled}))
    """, str(tmp_path / "jobs"), pythonpath=tmp_path)
    print(json.dumps(outcome, indent=1))
    first, slow, third, failing = outcome["ids"]
    assert slow in outcome["queued_before"]
    assert outcome["seconds_to_gone"] < 10  # KillWait is 2 s
    assert not outcome["pickle_when_gone"] and not outcome["pickle_at_end"]
    assert "CANCELLED" in outcome["stderr_when_gone"]
    # slurmstepd's own line, which names the task's raw job id (not <array>_<task>)
    assert re.search(r"\*\*\* JOB \d+ ON \S+ CANCELLED AT ", outcome["stderr_at_end"]), outcome["stderr_at_end"]
    assert outcome["outcomes"][first] == {"result": 0}
    assert outcome["outcomes"][third] == {"result": 20}
    assert outcome["outcomes"][failing]["error"] == "FailedJobError"
    assert "ValueError: task 3 fails" in outcome["outcomes"][failing]["message"]
