"""The local Ray cluster of ray_cluster.py works the way a `ray` executor will use it: a driver inside the namespace
connects, runs tasks of an importable module, and sees task errors, worker crashes and cancellations as the Ray
exceptions the executor must translate. Each driver is a subprocess that prints one JSON line."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest
import ray_fixture
from ray_cluster import RayCluster, skip_reason

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")
#: the fixture, until tests/cluster/conftest.py imports it (`from ray_fixture import ray_cluster`)
ray_cluster = ray_fixture.ray_cluster

TASKS = """
import os
import time


def square(x):
    return x * x, os.readlink("/proc/self/ns/net"), os.environ.get("PK_MARK")


def boom(x):
    raise ValueError(f"boom {x}")


def slow(path, seconds):
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\\n")
    time.sleep(seconds)
    return "done"
"""

#: the driver's preamble: connect, and helpers to wait for a task to start and to name an outcome
PREAMBLE = """
import json, os, signal, sys, time
import ray
import pk_ray_tasks

ray.init(address=sys.argv[1], log_to_driver=False, include_dashboard=False)
ENV = {"env_vars": {"PYTHONPATH": os.environ["PYTHONPATH"], "PK_MARK": "from-runtime-env"}}
out = {}


def at(name):
    # an absolute path: a worker's working directory is not the driver's
    return os.path.join(os.environ["PYTHONPATH"], name)


def started(path, count=1, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = [int(p) for p in open(path).read().split()] if os.path.exists(path) else []
        if len(pids) >= count:
            return pids
        time.sleep(0.05)
    return pids


def outcome(ref, timeout=60):
    try:
        return ["result", ray.get(ref, timeout=timeout)]
    except Exception as error:
        return [type(error).__name__, [c.__name__ for c in type(error).__mro__], str(error)]
"""


@pytest.fixture
def tasks_dir(tmp_path: Path) -> Path:
    """A directory holding the importable module `pk_ray_tasks` (put on the driver's PYTHONPATH, nowhere else)."""
    directory = tmp_path / "modules"
    directory.mkdir()
    (directory / "pk_ray_tasks.py").write_text(TASKS)
    return directory


def drive(cluster: RayCluster, tasks_dir: Path, body: str, timeout: float = 120) -> dict:
    """Run a driver (PREAMBLE + body, which fills `out`) inside the namespace; returns `out`.

    Its working directory is Ray's temporary directory, not the module's: Ray puts the driver's working directory
    and script directory on the workers' sys.path, which would hide whether PYTHONPATH reaches them."""
    code = PREAMBLE + textwrap.dedent(body) + "\nray.shutdown()\nprint(json.dumps(out))\n"
    result = cluster.run([sys.executable, "-c", code, cluster.address], env={"PYTHONPATH": str(tasks_dir)},
                         cwd=cluster.directory, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_tasks_run_with_the_driver_path_passed_through_runtime_env(ray_cluster: RayCluster, tasks_dir: Path) -> None:
    out = drive(ray_cluster, tasks_dir, """
        square = ray.remote(num_cpus=1)(pk_ray_tasks.square)
        out["bare"] = outcome(square.remote(2))
        out["env"] = ray.get([square.options(runtime_env=ENV).remote(x) for x in range(4)])
        out["resources"] = ray.cluster_resources()
        out["namespace"] = os.readlink("/proc/self/ns/net")
    """)
    # the workers are started by the raylet: the driver's PYTHONPATH does not reach them
    name, mro, message = out["bare"]
    assert name == "RayTaskError(RuntimeError)" and "RayTaskError" in mro
    assert "No module named 'pk_ray_tasks'" in message
    # runtime_env={"env_vars": ...} does
    assert [value for value, _, _ in out["env"]] == [0, 1, 4, 9]
    assert {mark for _, _, mark in out["env"]} == {"from-runtime-env"}
    assert {namespace for _, namespace, _ in out["env"]} == {out["namespace"]}  # the workers run in the namespace
    assert out["resources"]["CPU"] == ray_cluster.cpus


def test_a_task_that_raises_gives_a_ray_task_error_wrapping_the_original(ray_cluster: RayCluster,
                                                                         tasks_dir: Path) -> None:
    out = drive(ray_cluster, tasks_dir, """
        boom = ray.remote(num_cpus=1, max_retries=0, runtime_env=ENV)(pk_ray_tasks.boom)
        try:
            ray.get(boom.remote(3))
        except ray.exceptions.RayTaskError as error:
            out["type"] = type(error).__name__
            out["is_value_error"] = isinstance(error, ValueError)
            out["cause"] = [type(error.cause).__name__, str(error.cause)]
            out["last_line"] = str(error).splitlines()[-1]
    """)
    assert out["type"] == "RayTaskError(ValueError)" and out["is_value_error"]
    assert out["cause"] == ["ValueError", "boom 3"]
    assert out["last_line"] == "ValueError: boom 3"


def test_a_killed_worker_is_retried_by_default_and_a_crash_with_max_retries_0(ray_cluster: RayCluster,
                                                                               tasks_dir: Path) -> None:
    out = drive(ray_cluster, tasks_dir, """
        slow = ray.remote(num_cpus=1, runtime_env=ENV)(pk_ray_tasks.slow)
        # by default Ray re-runs a task whose worker died (max_retries=3)
        ref = slow.remote(at("default.pids"), 1)
        os.kill(started(at("default.pids"))[0], signal.SIGKILL)
        out["default_pids"] = started(at("default.pids"), 2)
        out["default"] = outcome(ref)
        # max_retries=0: the crash reaches the driver
        ref = slow.options(max_retries=0).remote(at("none.pids"), 30)
        os.kill(started(at("none.pids"))[0], signal.SIGKILL)
        out["none"] = outcome(ref)
        out["none_pids"] = started(at("none.pids"), 2, timeout=1)
    """)
    assert len(out["default_pids"]) == 2 and out["default"] == ["result", "done"]
    name, mro, _ = out["none"]
    assert name == "WorkerCrashedError" and "RayError" in mro
    assert len(out["none_pids"]) == 1


def test_cancel_force_kills_a_running_task_and_drops_a_queued_one(ray_cluster: RayCluster, tasks_dir: Path) -> None:
    out = drive(ray_cluster, tasks_dir, """
        slow = ray.remote(num_cpus=1, max_retries=0, runtime_env=ENV)(pk_ray_tasks.slow)
        running = [slow.remote(at("running.pids"), 30) for _ in range(2)]  # both CPUs
        pids = started(at("running.pids"), 2)
        queued = slow.remote(at("queued.pids"), 30)
        began = time.monotonic()
        for ref in [queued, *running]:
            ray.cancel(ref, force=True)
        out["outcomes"] = [outcome(ref)[0] for ref in [queued, *running]]
        out["seconds"] = time.monotonic() - began
        out["queued_started"] = os.path.exists(at("queued.pids"))
        time.sleep(1)
        out["workers_alive"] = [os.path.exists(f"/proc/{pid}") for pid in pids]
    """)
    assert out["outcomes"] == ["TaskCancelledError"] * 3
    assert out["seconds"] < 10 and not out["queued_started"]
    assert out["workers_alive"] == [False, False]


def test_everything_listens_on_loopback_only(ray_cluster: RayCluster) -> None:
    listening = ray_cluster.run(["ss", "-Hltnu"]).stdout.split("\n")
    addresses = [line.split()[4] for line in listening if line.strip()]
    assert addresses and all(a.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:")) for a in addresses), addresses


def test_stop_leaves_no_process_and_no_files(tmp_path: Path) -> None:
    home_ray = Path.home() / ".ray"
    had_home_ray = home_ray.exists()
    with RayCluster() as cluster:
        driver = cluster.popen([sys.executable, "-c", "import ray, time; ray.init(address='%s', log_to_driver=False);"
                                " ray.get(ray.remote(lambda: time.sleep(60)).remote())" % cluster.address])
        deadline = time.monotonic() + 60
        while not cluster.worker_pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        pids = cluster.pids()
        directory = cluster.directory
        assert len(pids) > 5 and driver.pid in pids
    driver.wait(timeout=5)
    assert [pid for pid in pids if os.path.exists(f"/proc/{pid}") and _alive(pid)] == []
    assert directory is not None and not directory.exists()
    assert home_ray.exists() == had_home_ray


def _alive(pid: int) -> bool:
    """True unless the process is gone or a zombie (waiting for a parent to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
