"""Progress display for long runs: rich's live bars on a terminal, plain periodic lines elsewhere (CI logs, ``tee``).

The sweep only needs :class:`ProgressDisplay`'s three methods, so it runs the same under either display, or none.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol


class ProgressDisplay(Protocol):
    """What the sweep reports: tasks with an optional total, advanced step by step, removed when done."""

    def add_task(self, description: str, total: float | None = None) -> int: ...

    def advance(self, task_id: int, advance: float = 1) -> None: ...

    def remove_task(self, task_id: int) -> None: ...


class NoProgress:
    """Shows nothing (library use, tests)."""

    def add_task(self, description: str, total: float | None = None) -> int:
        return 0

    def advance(self, task_id: int, advance: float = 1) -> None:
        pass

    def remove_task(self, task_id: int) -> None:
        pass


@dataclass
class _Task:
    description: str
    total: float | None
    completed: float = 0.0
    started: float = 0.0
    last_line: float = 0.0


class PlainProgress:
    """One line when a task with a total starts, every ``interval`` seconds while it runs, and when it ends."""

    def __init__(self, write: Callable[[str], None], interval: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.write, self.interval, self.clock = write, interval, clock
        self.tasks: dict[int, _Task] = {}
        self.next_id = 0

    def add_task(self, description: str, total: float | None = None) -> int:
        task_id, self.next_id = self.next_id, self.next_id + 1
        started = self.clock()
        self.tasks[task_id] = _Task(description, total, started=started, last_line=started)
        if total is not None:
            self.write(f"{description}: started, {total:,.0f} to do")
        return task_id

    def advance(self, task_id: int, advance: float = 1) -> None:
        task = self.tasks[task_id]
        task.completed += advance
        now = self.clock()
        if task.total is not None and task.completed >= task.total:
            self.write(f"{task.description}: done, {task.completed:,.0f} in {now - task.started:.0f} s")
            task.total = None  # reported once
        elif task.total is not None and now - task.last_line >= self.interval:
            self.write(f"{task.description}: {task.completed:,.0f} / {task.total:,.0f} "
                       f"({100 * task.completed / task.total:.0f} %), {now - task.started:.0f} s")
            task.last_line = now

    def remove_task(self, task_id: int) -> None:
        self.tasks.pop(task_id, None)


@contextmanager
def progress_display() -> Iterator[ProgressDisplay]:
    """Live bars on a terminal; elsewhere (CI logs, a pipe to tee) a plain line per task every 10 seconds."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from probekit.terminal import console

    if not console.is_terminal:
        yield PlainProgress(lambda line: console.print(line, markup=False, highlight=False))
        return
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        yield progress
