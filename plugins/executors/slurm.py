"""Units as Slurm job arrays through submitit: extraction units on the GPU partition, probe units on CPU nodes.

Data passes by path, so the run directory and the activation cache must be on a filesystem every node mounts, given
as absolute paths. Each unit's log is submitit's ``<run dir>/slurm/<job id>_<task>_log.{out,err}``. submitit
serialises the unit's call (its own pickle files, written by this driver into the run directory and read by its
workers), as it does for every job it submits.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from probekit.api import ExecutionContext, Executor, Job, JobOutcome, PluginParams, RunError, run_unit

#: how long a task may be gone from the queue before its missing result counts as a failure (shared filesystems
#: show a new file to other nodes with a delay)
GRACE_SECONDS = 5.0
#: how long squeue may keep failing before the driver gives up on the cluster
SQUEUE_PATIENCE = 120.0


class UnitResources(BaseModel):
    """What one unit of a kind asks Slurm for (unset: the executor's defaults, then the cluster's)."""

    model_config = ConfigDict(extra="forbid")

    partition: Optional[str] = Field(None, description="partition for this kind of unit (default: `partition`)")
    cpus: int = Field(1, ge=1, description="CPUs per task")
    gpus: int = Field(0, ge=0, description="GPUs per task")
    mem_gb: Optional[float] = Field(None, gt=0, description="memory per task in GB (default: the partition's)")
    time_minutes: Optional[int] = Field(None, ge=1, description="time limit per task (default: `time_minutes`)")


class Slurm(Executor):
    """Slurm job arrays through submitit (map_array): one array of extraction units, then one of probe units."""

    class Params(PluginParams):
        partition: Optional[str] = Field(None, description="default partition (unset: the cluster's default)")
        account: Optional[str] = Field(None, description="account to charge (sbatch --account)")
        qos: Optional[str] = Field(None, description="quality of service (sbatch --qos)")
        time_minutes: int = Field(60, ge=1, description="default time limit per task")
        extraction: UnitResources = Field(default_factory=lambda: UnitResources(cpus=2),
                                          description="resources of an extraction unit (it loads the model)")
        probe: UnitResources = Field(default_factory=UnitResources,
                                     description="resources of a probe unit (CPU only, reads the cache)")
        array_parallelism: int = Field(64, ge=1, description="tasks of one array running at once at most "
                                       "(slurm_array_parallelism)")
        sbatch_options: dict[str, Union[str, int, bool]] = Field(
            default_factory=dict, description="extra `#SBATCH --key=value` options, e.g. {constraint: a100}")
        setup: list[str] = Field(default_factory=list, description="shell lines run on the node before the unit, "
                                 "e.g. ['module load cuda/12.1', 'source /shared/venv/bin/activate']")
        python: Optional[str] = Field(None, description="Python on the nodes (default: this interpreter, which "
                                      "must then be on the shared filesystem)")
        poll_seconds: float = Field(2.0, gt=0, description="how often the driver checks the array's tasks")

    def __init__(self, params: PluginParams | None = None) -> None:
        super().__init__(params)
        self.folder: Path | None = None
        self.active: list[Any] = []  # submitit jobs still queued or running
        self.squeue_failing_since: float | None = None

    @property
    def parallelism(self) -> int:
        return self.params.array_parallelism

    def check(self, context: ExecutionContext) -> None:
        if shutil.which("sbatch") is None:
            raise RunError("executor 'slurm': no `sbatch` on PATH; run probekit on a Slurm login node (or load "
                           "the cluster's Slurm module first), or choose another executor with --executor")
        if not context.paths_absolute:
            raise RunError("executor 'slurm': the spec's `output` and `cache` must be absolute paths on a filesystem "
                           f"every node mounts (output is resolved here to {context.run_dir}); write them as "
                           "absolute paths in the spec")
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise RunError("executor 'slurm' needs submitit: pip install submitit") from None
        self.folder = context.run_dir / "slurm"

    def run(self, jobs: Sequence[Job]) -> Iterator[JobOutcome]:
        for kind in ("extraction", "probe"):
            batch = [job for job in jobs if job.kind == kind]
            if batch:
                yield from self._run_array(kind, batch)

    def _run_array(self, kind: Literal["extraction", "probe"], jobs: list[Job]) -> Iterator[JobOutcome]:
        import submitit

        assert self.folder is not None, "check() runs first"
        executor = submitit.SlurmExecutor(folder=self.folder / "%j", python=self.params.python)
        executor.update_parameters(**self.sbatch_parameters(kind, len(jobs)))
        submitted = executor.map_array(run_unit, [job.payload for job in jobs])
        self.active = list(submitted)
        pending = dict(zip(submitted, jobs))
        gone_since: dict[Any, float] = {}
        while pending:
            queued = self._queued({job.job_id.split("_")[0] for job in pending})
            for task, job in list(pending.items()):
                if task.paths.result_pickle.exists():
                    pending.pop(task)
                    yield self._outcome(task, job)
                elif queued is not None and task.job_id not in queued:
                    # gone from the queue without a result (cancelled, killed, out of time, node failure): give the
                    # result file a moment to appear on a shared filesystem, then count the task as failed
                    if time.monotonic() - gone_since.setdefault(task, time.monotonic()) > GRACE_SECONDS:
                        pending.pop(task)
                        yield self._outcome(task, job)
            if pending:
                time.sleep(self.params.poll_seconds)
        self.active = []

    def sbatch_parameters(self, kind: str, n_tasks: int) -> dict[str, Any]:
        """submitit's SlurmExecutor parameters for an array of ``n_tasks`` units of ``kind``."""
        resources: UnitResources = getattr(self.params, kind)
        parameters: dict[str, Any] = {
            "job_name": f"probekit-{kind}",
            "time": resources.time_minutes or self.params.time_minutes,
            "cpus_per_task": resources.cpus,
            "ntasks_per_node": 1,
            "array_parallelism": min(self.params.array_parallelism, n_tasks),
            "setup": [f"export OMP_NUM_THREADS={resources.cpus}", *self.params.setup],
            "additional_parameters": dict(self.params.sbatch_options),
        }
        for name, value in (("partition", resources.partition or self.params.partition),
                            ("account", self.params.account), ("qos", self.params.qos)):
            if value:
                parameters[name] = value
        if resources.gpus:
            parameters["gpus_per_node"] = resources.gpus
        if resources.mem_gb:
            parameters["mem"] = f"{int(resources.mem_gb * 1024)}M"
        return parameters

    def _queued(self, array_ids: set[str]) -> set[str] | None:
        """The ids (``<array>_<task>``) of the arrays' tasks still pending or running; None when squeue fails, and
        a RunError once it has failed for ``SQUEUE_PATIENCE`` seconds (the controller is gone)."""
        try:
            listed = subprocess.run(["squeue", "--noheader", "--array", "--format=%i", "--jobs", ",".join(array_ids)],
                                    capture_output=True, text=True, timeout=60)
            problem = listed.stderr.strip() if listed.returncode != 0 else None
        except (OSError, subprocess.TimeoutExpired) as error:
            listed, problem = None, str(error)
        if problem is None or "Invalid job id" in problem:  # squeue refuses ids that have all left the queue
            self.squeue_failing_since = None
            return {line.strip() for line in listed.stdout.splitlines() if line.strip()} if problem is None else set()
        self.squeue_failing_since = self.squeue_failing_since or time.monotonic()
        if time.monotonic() - self.squeue_failing_since > SQUEUE_PATIENCE:
            raise RunError(f"executor 'slurm': squeue has failed for {SQUEUE_PATIENCE:.0f} s ({problem}); the "
                           "finished cells are saved: run the same command again when the cluster answers")
        return None

    @staticmethod
    def _outcome(task: Any, job: Job) -> JobOutcome:
        log = str(task.paths.stderr)
        if not task.paths.result_pickle.exists():  # ended without a result: cancelled, killed, out of time or memory
            return JobOutcome(job, error=f"Slurm task {task.job_id} ended without a result ({_why_ended(log)})",
                              log=log)
        try:
            return JobOutcome(job, result=task.result(), log=log)
        except Exception as error:  # the unit raised on the node: submitit's message ends with the exception
            lines = str(error).strip().splitlines() or [type(error).__name__]
            return JobOutcome(job, error=lines[-1], log=log)

    def cancel(self) -> None:
        """scancel every array this executor submitted that still has tasks (best effort, bounded in time)."""
        arrays = sorted({task.job_id.split("_")[0] for task in self.active})
        self.active = []
        if arrays:
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                subprocess.run(["scancel", *arrays], capture_output=True, timeout=30)


def _why_ended(log: str) -> str:
    """Slurm's own line about how a task ended (``*** JOB 7 ON node CANCELLED AT ... ***``), from its log."""
    try:
        lines = Path(log).read_text(errors="replace").splitlines()
    except OSError:
        return "no log"
    notes = [line.strip() for line in lines if "***" in line]
    return notes[-1] if notes else "cancelled, killed, or its node failed; see its log"
