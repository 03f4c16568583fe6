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

import contextlib
import ctypes
import functools
import importlib.util
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

TOOLS = ("unshare", "nsenter", "ip")
PORT = 6379
#: what `ray start` prints once the GCS and the raylet are up and the node is registered
_STARTED = "Ray runtime started"
_PR_SET_PDEATHSIG = 1
#: no usage reports (nothing could reach the internet from the namespace anyway: it would only time out)
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0"}


def _ray_cli() -> str | None:
    """The `ray` script next to this interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.exists() else shutil.which("ray")


@functools.cache
def skip_reason() -> str | None:
    """Why this machine cannot run a RayCluster, or None when it can."""
    if os.geteuid() != 0:
        return "a Ray cluster in a private network namespace needs root"
    if importlib.util.find_spec("ray") is None or _ray_cli() is None:
        return "Ray is not installed: pip install -e '.[ray]'"
    missing = [name for name in TOOLS if shutil.which(name) is None]
    if missing:
        return f"missing {', '.join(missing)} (util-linux, iproute2)"
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        return "cannot create a network namespace (`unshare -n` failed)"
    return None


def available() -> bool:
    return skip_reason() is None


def _die_with_parent() -> None:
    """In the child before exec: be killed when the test process dies, even by SIGKILL."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class RayCluster:
    """One head node with ``cpus`` CPUs and a small object store, in its own network namespace."""

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
        self.env = {**RAY_ENV, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}
        #: Ray's root temporary directory; short, as Ray's unix sockets live below it (108-byte limit on their paths)
        self.directory: Path | None = None
        self.log: Path | None = None
        self.startup_s: float | None = None
        self._holder: subprocess.Popen[str] | None = None
        self._head: subprocess.Popen[bytes] | None = None

    # -- running commands in the namespace ---------------------------------------------------------------------------

    def command(self, args: Sequence[str]) -> list[str]:
        """``args`` prefixed so that they run inside the cluster's network namespace."""
        if self._holder is None:
            raise RuntimeError("the cluster is not running")
        return ["nsenter", f"--net=/proc/{self._holder.pid}/ns/net", "--", *args]

    def _kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        env = {**os.environ, **self.env, **kwargs.pop("env", {})}
        return {"env": env, **kwargs}

    def run(self, args: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """subprocess.run inside the namespace; captures text output unless told otherwise."""
        if not {"stdout", "stderr", "capture_output"} & kwargs.keys():
            kwargs["capture_output"] = True
        kwargs.setdefault("text", True)
        return subprocess.run(self.command(args), **self._kwargs(kwargs))

    def popen(self, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        return subprocess.Popen(self.command(args), **self._kwargs(kwargs))

    def python(self, code: str, **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """Run ``code`` with this interpreter inside the namespace (a driver)."""
        return self.run([sys.executable, "-c", code], **kwargs)

    # -- life cycle --------------------------------------------------------------------------------------------------

    def __enter__(self) -> RayCluster:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        reason = skip_reason()
        if reason:
            raise RuntimeError(reason)
        began = time.monotonic()
        try:
            self.directory = Path(tempfile.mkdtemp(prefix="rk-ray-", dir="/tmp"))
            self.log = self.directory / "ray-start.log"
            self._holder = subprocess.Popen(
                ["unshare", "-n", "sh", "-c", "ip link set lo up && echo up && exec sleep infinity"],
                stdout=subprocess.PIPE, text=True, preexec_fn=_die_with_parent)
            assert self._holder.stdout is not None
            if self._holder.stdout.readline().strip() != "up":
                raise RuntimeError("could not create the network namespace")
            ray = _ray_cli()
            assert ray is not None
            with self.log.open("wb") as log:
                self._head = self.popen(
                    [ray, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={PORT}",
                     f"--num-cpus={self.cpus}", "--num-gpus=0", f"--object-store-memory={self.object_store_mb << 20}",
                     "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={self.directory / 't'}"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent,
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
        if self._holder is None:
            return
        namespace = self._namespace()
        if self._head is not None and self._head.poll() is None:
            self._head.terminate()
            try:
                self._head.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self._head.kill()
                self._head.wait()
        # SIGSTOP first, so that nothing left can fork a replacement between the listing and the kill
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in self.pids() if namespace else []:
                if pid != self._holder.pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
        self._holder.kill()
        self._holder.wait()
        if self._holder.stdout:
            self._holder.stdout.close()
        deadline = time.monotonic() + 10
        while namespace and self._pids_in(namespace) and time.monotonic() < deadline:
            time.sleep(0.05)
        self._holder = None
        self._head = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)

    # -- helpers -----------------------------------------------------------------------------------------------------

    def pids(self) -> list[int]:
        """Every process in the cluster's network namespace (the holder, `ray start`, GCS, raylet, workers, ...)."""
        namespace = self._namespace()
        return self._pids_in(namespace) if namespace else []

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

    def _namespace(self) -> str | None:
        if self._holder is None:
            return None
        try:
            return os.readlink(f"/proc/{self._holder.pid}/ns/net")
        except OSError:
            return None

    @staticmethod
    def _pids_in(namespace: str) -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    if os.readlink(entry / "ns" / "net") == namespace:
                        pids.append(int(entry.name))
        return pids


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""
