"""Every unit in this process, one after another: the default, and what every other executor must agree with."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from probekit.api import ExecutionContext, Executor, Job, JobOutcome, PluginParams, failure, run_unit


class Local(Executor):
    """In this process, one unit after another (no parallelism; the reference for the other executors)."""

    Params = PluginParams

    def __init__(self, params: PluginParams | None = None) -> None:
        super().__init__(params)
        self.context: ExecutionContext | None = None

    def check(self, context: ExecutionContext) -> None:
        self.context = context

    def run(self, jobs: Sequence[Job]) -> Iterator[JobOutcome]:
        for job in jobs:
            try:
                yield JobOutcome(job, result=run_unit(job.payload))
            except Exception as error:  # an unexpected failure: reported (and retried) like a worker's
                yield failure(job, error, self.context)
