"""A real one-node Slurm cluster for tests: munged, slurmctld and slurmd from Debian's packages
(`bash .ci/slurm-packages`), run as root in the foreground inside a private network namespace (loopback only: nothing
listens outside it), with every file in one directory. `SlurmctldHost` and `NodeAddr` are 127.0.0.1,
`proctrack/linuxproc`, `task/none`, no accounting.

A test asks for the `slurm_cluster` fixture (tests/cluster/conftest.py: one cluster per session, in a short directory
under /tmp, skipped with `skip_reason()` when not root or not installed) and runs its Slurm commands, or a driver that
uses submitit, inside the namespace through `run`/`popen`:

    def test_something(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
        done = slurm_cluster.run(["sbatch", "--parsable", f"--output={tmp_path}/out", "--wrap", "echo hi"])
        job_id = done.stdout.strip()
        slurm_cluster.run([sys.executable, "-m", "probekit", "run", "spec.yaml"], env={"PYTHONPATH": ...})

`run` is subprocess.run (text, captured output unless told otherwise), `popen` subprocess.Popen; both add `env`
(SLURM_CONF) and /usr/sbin to PATH, and merge a given `env` over os.environ. Jobs inherit that environment, so they run
with the same Python and see the same files. munged's socket needs no variable: slurm.conf names it.

There is no accounting (`accounting_storage/none`, no slurmdbd), so `sacct` answers nothing and submitit's own job
state stays UNKNOWN for a task that ended without a result. The probekit `slurm` executor does not need it: it polls
`squeue --array` and takes a task that left the queue without its result pickle as failed (its stderr log says why:
`*** JOB ... CANCELLED ...`). A test must not wait on submitit's `done()`/`result()` for such a task.
Outside a fixture: `with SlurmCluster(directory) as cluster: ...` (a directory of at most ~60 bytes).

Start-up takes about 1 s; a job starts 1-3 s after sbatch. Tear-down stops the daemons and kills, by PID, every
process left in the namespace (jobs, job steps); each daemon runs under a small reaper that kills and reaps whatever
the daemon orphaned (slurmstepd), so nothing outlives the `with` block, not even a zombie.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from netns import NetworkNamespace, die_with_parent, namespace_problem

#: What the cluster and the tests run; munged, slurmctld and slurmd live in /usr/sbin (not on a user's PATH).
DAEMONS = ("munged", "slurmctld", "slurmd", "slurmstepd")
CLIENTS = ("sbatch", "srun", "squeue", "sinfo", "scancel", "scontrol")
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/sbin"])

PARTITION = "debug"


def _which(name: str) -> str | None:
    return shutil.which(name, path=SEARCH_PATH)


@functools.cache
def skip_reason() -> str | None:
    """Why this machine cannot run a SlurmCluster, or None when it can."""
    if os.geteuid() != 0:
        return "a Slurm cluster needs root (slurmd starts jobs as root; a private network namespace)"
    missing = [name for name in DAEMONS + CLIENTS if _which(name) is None]
    if missing:
        return f"Slurm is not installed (missing {', '.join(missing)}): run `bash .ci/slurm-packages` as root"
    return namespace_problem(SEARCH_PATH)


def available() -> bool:
    return skip_reason() is None


#: Each daemon runs under this reaper: a child subreaper (PR_SET_CHILD_SUBREAPER) that runs the daemon, forwards
#: SIGTERM/SIGINT to it and, once it has exited, SIGKILLs and reaps every process orphaned below it (slurmd double-forks
#: each slurmstepd, which would otherwise become a zombie of PID 1 and outlive the cluster), then exits with its status.
_REAPER = """\
import ctypes, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
daemon = os.fork()
if daemon == 0:
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    os.execvp(sys.argv[1], sys.argv[1:])
def forward(number, frame):
    if daemon is not None:
        os.kill(daemon, number)
for number in (signal.SIGTERM, signal.SIGINT):
    signal.signal(number, forward)
me = str(os.getpid())
def children():
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == me and fields[0] != "Z":
            found.append(int(entry))
    return found
code = 1
while True:
    try:
        pid, status = os.wait()
    except ChildProcessError:
        break
    if pid == daemon:
        code = os.waitstatus_to_exitcode(status)
        daemon = None
    if daemon is None:
        for pid in children():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
sys.exit(code if code >= 0 else 128 - code)
"""


def _memory_mb() -> int:
    """Total memory in MB as slurmd reports it (RealMemory of `slurmd -C`: MemTotal / 1024)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


class SlurmCluster(NetworkNamespace):
    """One node (this machine's CPUs and memory), one partition (`PARTITION`), in ``directory``, inside its own
    network namespace (`run`, `popen` and `command` run commands there)."""

    skip_reason = staticmethod(skip_reason)
    available = staticmethod(available)

    def __init__(self, directory: Path, start_timeout: float = 30.0) -> None:
        self.directory = Path(directory).resolve()
        self.start_timeout = start_timeout
        self.node = socket.gethostname().split(".")[0]
        self.cpus = len(os.sched_getaffinity(0))
        self.memory_mb = _memory_mb()
        self.partition = PARTITION
        self.conf = self.directory / "slurm.conf"
        self.logs = self.directory / "log"
        self.munge_socket = self.directory / "munge" / "munge.socket"
        #: the variables a Slurm client (and so a job, which inherits them) needs
        super().__init__({"PATH": SEARCH_PATH, "SLURM_CONF": str(self.conf)})
        self.startup_s: float | None = None
        self._daemons: dict[str, subprocess.Popen[bytes]] = {}

    # -- life cycle --------------------------------------------------------------------------------------------------

    def start(self) -> None:
        reason = skip_reason()
        if reason:
            raise RuntimeError(reason)
        began = time.monotonic()
        try:
            self._write_files()
            self.open()
            self._start("munged", ["munged", "--foreground", "--force", f"--socket={self.munge_socket}",
                                   f"--key-file={self.directory / 'munge' / 'munge.key'}",
                                   f"--pid-file={self.directory / 'munge' / 'munged.pid'}",
                                   f"--seed-file={self.directory / 'munge' / 'munged.seed'}",
                                   f"--log-file={self.logs / 'munged.log'}"])
            self._wait_for(self.munge_socket.exists, "munged's socket")
            self._start("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
            self._start("slurmd", ["slurmd", "-D", "-N", self.node, "-f", str(self.conf)])
            self._wait_for(self._node_idle, f"node {self.node} to be idle in `sinfo`")
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - began

    def stop(self) -> None:
        """Stop the daemons (SIGTERM, then SIGKILL), then kill every process left in the namespace, by PID."""
        if not self.is_open:
            return
        for process in reversed(self._daemons.values()):
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 5
        for process in self._daemons.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.close()
        self._daemons = {}

    # -- helpers -----------------------------------------------------------------------------------------------------

    def log_tail(self, lines: int = 30) -> str:
        """The end of each daemon's log, for error messages."""
        parts = []
        for path in sorted(self.logs.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name} ---\n" + "\n".join(text))
        return "\n".join(parts)

    def _write_files(self) -> None:
        for sub in ("state", "spool", "log", "munge"):
            (self.directory / sub).mkdir(parents=True, exist_ok=True)
        (self.directory / "munge").chmod(0o755)  # munged wants its socket reachable
        if len(str(self.directory / "spool" / f"{self.node}_4294967294.4294967294")) > 100:
            raise RuntimeError(f"{self.directory} is too long a path for the daemons' Unix sockets (108 bytes)")
        key = self.directory / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        (self.directory / "plugstack.conf").write_text("")
        d = self.directory
        self.conf.write_text(f"""\
ClusterName=probekit
SlurmctldHost={self.node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# no accounting: the executor learns that a task ended from squeue and its result pickle, not from sacct
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
PlugStackConfig={d}/plugstack.conf
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
# schedule a batch job at its submission, not up to 3 s later (the default); the scheduler still ticks each second
SchedulerParameters=batch_sched_delay=0
ReturnToService=2
# a cancelled job's steps get SIGKILL KillWait seconds after SIGTERM (submitit ignores SIGTERM)
KillWait=2
SlurmdTimeout=30
MessageTimeout=5
InactiveLimit=0
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.memory_mb} State=UNKNOWN
PartitionName={self.partition} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")

    def _start(self, name: str, args: list[str]) -> None:
        output = open(self.logs / f"{name}.out", "wb")
        with output:
            self._daemons[name] = self.popen([sys.executable, "-c", _REAPER, *args], stdout=output,
                                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             preexec_fn=die_with_parent)

    def _node_idle(self) -> bool:
        result = self.run(["sinfo", "--noheader", "--Node", "--format=%T"], timeout=10)
        return result.returncode == 0 and result.stdout.strip() == "idle"

    def _wait_for(self, condition: Any, what: str) -> None:
        deadline = time.monotonic() + self.start_timeout
        while not condition():
            for name, process in self._daemons.items():
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited ({process.returncode}) while waiting for {what}\n"
                                       f"{self._outputs()}{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {self.start_timeout:.0f} s waiting for {what}\n"
                                   f"{self._outputs()}{self.log_tail()}")
            time.sleep(0.05)

    def _outputs(self) -> str:
        parts = []
        for path in sorted(self.logs.glob("*.out")):
            if text := path.read_text(errors="replace").strip():
                parts.append(f"--- {path.name} ---\n{text[-3000:]}\n")
        return "".join(parts)
