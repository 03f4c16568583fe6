"""Units as Ray tasks, on an existing Ray cluster or on a local instance started for the run.

Ray is optional (``pip install 'probekit[ray]'``). Data passes by path, so on a cluster of several machines the run
directory and the activation cache must be on a filesystem every node mounts (absolute paths, checked). Ray retries
nothing itself here (``max_retries=0``): the driver retries failed units, as it does on every executor.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Sequence
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field

from probekit.api import ExecutionContext, Executor, Job, JobOutcome, PluginParams, RunError, failure, run_unit


class TaskResources(BaseModel):
    """What one unit of a kind asks Ray for."""

    model_config = ConfigDict(extra="forbid")

    cpus: float = Field(1, gt=0, description="CPUs per task")
    gpus: float = Field(0, ge=0, description="GPUs per task")


class Ray(Executor):
    """Ray tasks: an existing cluster (`address`) or a local instance started for the run and stopped after it."""

    class Params(PluginParams):
        address: Optional[str] = Field(None, description="host:port of a running cluster's head (e.g. "
                                       "10.0.0.5:6379); unset: start a local instance for this run")
        num_cpus: Optional[int] = Field(None, ge=1, description="CPUs of the local instance (default: all)")
        extraction: TaskResources = Field(default_factory=TaskResources, description="resources of an "
                                          "extraction unit (it loads the model)")
        probe: TaskResources = Field(default_factory=TaskResources, description="resources of a probe unit")
        connect_timeout_s: float = Field(10, gt=0, description="seconds to wait for `address` to answer")

    def __init__(self, params: PluginParams | None = None) -> None:
        super().__init__(params)
        self.context: ExecutionContext | None = None
        self.running: dict[Any, Job] = {}
        self.started = False

    @property
    def parallelism(self) -> int:
        """Probe units the cluster runs at once (before it is connected: the local instance's CPUs)."""
        if self.started:
            import ray

            cpus = ray.cluster_resources().get("CPU", 1)
        else:
            cpus = self.params.num_cpus or os.cpu_count() or 1
        return max(1, int(cpus // self.params.probe.cpus))

    def check(self, context: ExecutionContext) -> None:
        try:
            import ray
        except ImportError:
            raise RunError("executor 'ray' needs Ray, which a plain install leaves out: "
                           "pip install 'probekit[ray]'") from None
        address = self.params.address
        if address is not None:
            if not context.paths_absolute:
                raise RunError("executor 'ray' on a cluster: the spec's `output` and `cache` must be absolute paths "
                               "on a filesystem every node mounts; write them as absolute paths in the spec")
            host, _, port = address.rpartition(":")
            try:
                socket.create_connection((host, int(port)), timeout=self.params.connect_timeout_s).close()
            except (OSError, ValueError) as error:
                raise RunError(f"executor 'ray': cannot reach the Ray cluster at {address} ({error}); start it with "
                               "`ray start --head`, or leave `address` unset to start a local instance") from None
        # workers get the environment of the cluster's `ray start`, not this process's: pass what decides which
        # probekit and plugins they import and where models are cached
        env = {name: os.environ[name] for name in ("PYTHONPATH", "HF_HOME", "HF_HUB_OFFLINE") if name in os.environ}
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        try:
            ray.init(address=address, num_cpus=self.params.num_cpus if address is None else None,
                     include_dashboard=False, log_to_driver=False, configure_logging=False,
                     runtime_env={"env_vars": env} if env else None)
        except (ConnectionError, RuntimeError) as error:
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise RunError(f"executor 'ray': cannot connect to {where}: {error}") from None
        self.started = True
        self.context = context

    def run(self, jobs: Sequence[Job]) -> Iterator[JobOutcome]:
        import ray

        for job in jobs:
            resources: TaskResources = getattr(self.params, job.kind)
            task = ray.remote(run_unit).options(num_cpus=resources.cpus, num_gpus=resources.gpus, max_retries=0,
                                                name=job.name)
            self.running[task.remote(job.payload)] = job
        while self.running:
            ready, _ = ray.wait(list(self.running), num_returns=1)
            for reference in ready:
                job = self.running.pop(reference)
                try:
                    yield JobOutcome(job, result=ray.get(reference))
                except Exception as error:  # the unit raised in its worker, or the worker died
                    yield failure(job, error, self.context)

    def cancel(self) -> None:
        import ray

        for reference in self.running:
            ray.cancel(reference, force=True)
        self.running = {}

    def close(self) -> None:
        if self.started:
            import ray

            ray.shutdown()
            self.started = False
