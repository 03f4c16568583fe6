"""A real one-node Ray cluster for tests: `ray start --head --block` run as root inside a private network namespace
(loopback only), with Ray's temporary directory (sessions, sockets, logs) in a short temporary directory.

    with RayCluster() as cluster:
        cluster.run([sys.executable, "-c", f"import ray; ray.init(address={cluster.address!r}); ..."])

Drivers must run inside the namespace (`run`/`popen`/`command`): `cluster.address` ("127.0.0.1:6379") means the
namespace's own loopback, which no process outside can reach, and nothing Ray opens is reachable from outside either.
Ray's workers are started by the raylet, so they get the environment of `ray start` (`env` here), not the driver's:
a driver passes its own variables with ``runtime_env={"env_vars": {...}}``.

Tear-down never uses `ray stop` (it kills every Ray process on the machine by name): it sends SIGTERM to the
`ray start --block` process (which stops the GCS, raylet, workers), then SIGKILLs, by PID, every process left in the
namespace (drivers, stray workers), so nothing outlives the `with` block. `skip_reason()` says why a machine cannot
run it (not root, Ray not installed, no namespaces).
"""

from __future__ import annotations

import functools
import importlib.util
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from netns import NetworkNamespace, die_with_parent, namespace_problem

PORT = 6379
#: what `ray start` prints once the GCS and the raylet are up and the node is registered
_STARTED = "Ray runtime started"
#: no usage reports (nothing could reach the internet from the namespace anyway: it would only time out)
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0"}


def _ray_cli() -> str | None:
    """The `ray` script next to this interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.exists() else shutil.which("ray")


@functools.cache
def skip_reason() -> str | None:
    """Why this machine cannot run a RayCluster, or None when it can."""
    if importlib.util.find_spec("ray") is None or _ray_cli() is None:
        return "Ray is not installed: pip install -e '.[ray]'"
    return namespace_problem()


def available() -> bool:
    return skip_reason() is None


class RayCluster(NetworkNamespace):
    """One head node with ``cpus`` CPUs and a small object store, in its own network namespace (`run`, `popen` and
    `command` run drivers there)."""

    skip_reason = staticmethod(skip_reason)
    available = staticmethod(available)

    def __init__(self, cpus: int = 2, object_store_mb: int = 256, start_timeout: float = 60.0,
                 stop_timeout: float = 10.0) -> None:
        self.cpus = cpus
        self.object_store_mb = object_store_mb
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.address = f"127.0.0.1:{PORT}"
        #: the variables every command in the namespace gets (and `ray start`, hence every worker). Token auth with
        #: this cluster's own token: Ray 2.60 reads (and a local `ray.init()` writes) ~/.ray/auth_token, and a
        #: `ray start` that finds one there turns token auth on, which a driver without the token cannot pass; an
        #: explicit RAY_AUTH_MODE and RAY_AUTH_TOKEN keep the cluster independent of the machine's ~/.ray
        self.token = secrets.token_hex(32)
        super().__init__({**RAY_ENV, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token})
        #: Ray's root temporary directory; short, as Ray's unix sockets live below it (108-byte limit on their paths)
        self.directory: Path | None = None
        self.log: Path | None = None
        self.startup_s: float | None = None
        self._head: subprocess.Popen[bytes] | None = None

    def python(self, code: str, **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """Run ``code`` with this interpreter inside the namespace (a driver)."""
        return self.run([sys.executable, "-c", code], **kwargs)

    # -- life cycle --------------------------------------------------------------------------------------------------

    def start(self) -> None:
        reason = skip_reason()
        if reason:
            raise RuntimeError(reason)
        began = time.monotonic()
        try:
            self.directory = Path(tempfile.mkdtemp(prefix="rk-ray-", dir="/tmp"))
            self.log = self.directory / "ray-start.log"
            self.open()
            ray = _ray_cli()
            assert ray is not None
            with self.log.open("wb") as log:
                self._head = self.popen(
                    [ray, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={PORT}",
                     f"--num-cpus={self.cpus}", "--num-gpus=0", f"--object-store-memory={self.object_store_mb << 20}",
                     "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={self.directory / 't'}"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent,
                    cwd=self.directory)  # the workers' working directory: never the caller's
            self._wait_started()
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - began

    def _wait_started(self) -> None:
        assert self._head is not None and self.log is not None
        deadline = time.monotonic() + self.start_timeout
        while _STARTED not in self.log.read_text(errors="replace"):
            if self._head.poll() is not None:
                raise RuntimeError(f"`ray start` exited with {self._head.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Ray did not start within {self.start_timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM to `ray start` (it stops what it started), then SIGKILL to every process left in the namespace."""
        if not self.is_open:
            return
        if self._head is not None and self._head.poll() is None:
            self._head.terminate()
            try:
                self._head.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self._head.kill()
                self._head.wait()
        self.close()
        self._head = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)

    # -- helpers -----------------------------------------------------------------------------------------------------

    def worker_pids(self) -> list[int]:
        """The Ray worker processes (their command line is `ray::IDLE`, `ray::<task name>`, ...)."""
        return [pid for pid in self.pids() if _cmdline(pid).startswith("ray::") and "Agent" not in _cmdline(pid)]

    def log_tail(self, lines: int = 40) -> str:
        """The end of `ray start`'s output and of the raylet's and GCS's logs, for error messages."""
        parts = []
        paths = [self.log] if self.log else []
        if self.directory is not None:
            logs = self.directory / "t" / "session_latest" / "logs"
            paths += [logs / "raylet.out", logs / "gcs_server.out"]
        for path in paths:
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path.name} ---\n" + "\n".join(text))
        return "\n".join(parts)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""
