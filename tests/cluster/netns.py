"""A private network namespace for the cluster tests: loopback only (lo up, plus 127.0.0.2), held open by a sleeping
process; commands run inside it through `nsenter`; `close()` kills, by PID, every process left in it (SIGSTOP first,
so that nothing can fork a replacement between the listing and the kill). Needs root, `unshare`, `nsenter` and `ip`.

The Slurm and Ray test clusters (slurm_cluster.py, ray_cluster.py) are namespaces with daemons started inside.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

TOOLS = ("unshare", "nsenter", "ip")
_PR_SET_PDEATHSIG = 1
#: lo up, plus a second loopback address: Slurm resolves even "127.0.0.1" with AI_ADDRCONFIG, which glibc answers
#: only when some IPv4 address other than 127.0.0.1 is configured ("Unable to resolve" otherwise)
_LOOPBACK = "ip link set lo up && ip addr add 127.0.0.2/8 dev lo"


def namespace_problem(search_path: str | None = None) -> str | None:
    """Why this machine cannot create a NetworkNamespace, or None when it can."""
    if os.geteuid() != 0:
        return "a private network namespace needs root"
    missing = [name for name in TOOLS if shutil.which(name, path=search_path) is None]
    if missing:
        return f"missing {', '.join(missing)} (util-linux, iproute2)"
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        return "cannot create a network namespace (`unshare -n` failed)"
    return None


def die_with_parent() -> None:
    """In a child before exec: be killed when the test process dies, even by SIGKILL (no stray daemons)."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class NetworkNamespace:
    """A loopback-only network namespace; ``env`` is added to the environment of every command run inside it."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.env = dict(env or {})
        self._holder: subprocess.Popen[str] | None = None

    def __enter__(self) -> NetworkNamespace:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        """Open the namespace; a cluster also starts its daemons in it."""
        self.open()

    def stop(self) -> None:
        """Close the namespace; a cluster stops its daemons first."""
        self.close()

    def open(self) -> None:
        self._holder = subprocess.Popen(["unshare", "-n", "sh", "-c", f"{_LOOPBACK} && echo up && exec sleep infinity"],
                                        stdout=subprocess.PIPE, text=True, preexec_fn=die_with_parent)
        assert self._holder.stdout is not None
        if self._holder.stdout.readline().strip() != "up":
            raise RuntimeError("could not create the network namespace")

    # -- running commands inside -------------------------------------------------------------------------------------

    def command(self, args: Sequence[str]) -> list[str]:
        """``args`` prefixed so that they run inside the namespace."""
        if self._holder is None:
            raise RuntimeError("the namespace is not open")
        return ["nsenter", f"--net=/proc/{self._holder.pid}/ns/net", "--", *args]

    def _kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {**kwargs, "env": {**os.environ, **self.env, **kwargs.pop("env", {})}}

    def run(self, args: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """subprocess.run inside the namespace; captures text output unless told otherwise."""
        if not {"stdout", "stderr", "capture_output"} & kwargs.keys():
            kwargs["capture_output"] = True
        kwargs.setdefault("text", True)
        return subprocess.run(self.command(args), **self._kwargs(kwargs))

    def popen(self, args: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """subprocess.Popen inside the namespace."""
        return subprocess.Popen(self.command(args), **self._kwargs(kwargs))

    # -- processes inside ------------------------------------------------------------------------------------------

    def pids(self) -> list[int]:
        """The live processes (not zombies) in the namespace, the holder included."""
        identity = self._identity()
        return _live_pids(identity) if identity else []

    def close(self, timeout: float = 10.0) -> None:
        """Kill every process left in the namespace, then the holder, and wait until none is left."""
        if self._holder is None:
            return
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in self.pids():
                if pid != self._holder.pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, sig)
        identity = self._identity()
        self._holder.kill()
        self._holder.wait()
        if self._holder.stdout:
            self._holder.stdout.close()
        self._holder = None
        deadline = time.monotonic() + timeout
        while identity and _live_pids(identity) and time.monotonic() < deadline:
            time.sleep(0.05)

    @property
    def is_open(self) -> bool:
        return self._holder is not None

    def _identity(self) -> str | None:
        if self._holder is None:
            return None
        try:
            return os.readlink(f"/proc/{self._holder.pid}/ns/net")
        except OSError:
            return None


def _live_pids(identity: str) -> list[int]:
    """The processes (not zombies) whose network namespace is ``identity`` (``net:[inode]``)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            if os.readlink(entry / "ns" / "net") == identity and \
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                pids.append(int(entry.name))
    return pids
