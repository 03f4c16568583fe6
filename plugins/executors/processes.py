"""Units in worker processes on this machine: what a workstation user wants."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Optional

from pydantic import Field

from probekit.api import ExecutionContext, Executor, Job, JobOutcome, PluginParams, failure, run_unit


def available_cpus() -> int:
    """The CPUs this process may run on (its affinity mask, e.g. a Slurm allocation or `taskset`), not the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _limit_threads(threads: int) -> None:
    """In each worker, before any unit: BLAS, OpenMP and torch use ``threads`` threads (workers x threads <= CPUs)."""
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)
    import torch

    torch.set_num_threads(threads)


class Processes(Executor):
    """Worker processes on this machine (spawned), ``workers`` units at a time; BLAS threads split between them."""

    class Params(PluginParams):
        workers: Optional[int] = Field(None, ge=1, description="worker processes (default: the CPUs this process "
                                       "may use)")
        threads_per_worker: Optional[int] = Field(None, ge=1, description="BLAS / torch threads per worker "
                                                  "(default: CPUs // workers, at least 1)")

    def __init__(self, params: PluginParams | None = None) -> None:
        super().__init__(params)
        self.workers = self.params.workers or available_cpus()
        self.threads = self.params.threads_per_worker or max(1, available_cpus() // self.workers)
        self.pool: ProcessPoolExecutor | None = None
        self.context: ExecutionContext | None = None

    @property
    def parallelism(self) -> int:
        return self.workers

    def check(self, context: ExecutionContext) -> None:
        self.context = context

    def run(self, jobs: Sequence[Job]) -> Iterator[JobOutcome]:
        if self.pool is None:  # started on first use, again after a worker died (a broken pool takes no work)
            self.pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_limit_threads, initargs=(self.threads,))
        running: dict[Future[str], Job] = {self.pool.submit(run_unit, job.payload): job for job in jobs}
        broken = False
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                job = running.pop(future)
                error = future.exception()
                if error is None:
                    yield JobOutcome(job, result=future.result())
                    continue
                broken = broken or "BrokenProcessPool" in type(error).__name__
                yield failure(job, error, self.context)
        if broken:
            self.close()

    def cancel(self) -> None:
        """Drop queued units and terminate the workers (their running units' finished parts stay)."""
        if self.pool is not None:
            # listed before shutdown(), which forgets them; terminated after it, so the pool starts no replacement
            workers = list((getattr(self.pool, "_processes", None) or {}).values())
            self.pool.shutdown(wait=False, cancel_futures=True)
            for worker in workers:
                worker.terminate()
            self.pool = None

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None
