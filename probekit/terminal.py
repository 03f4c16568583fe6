"""What the command line prints: the two consoles, user errors (one line, exit code 2), warnings, tables."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.measure import Measurement

from probekit.errors import ProbekitError
from probekit.files import describe_os_error

console = Console(soft_wrap=True)  # messages stay on one line (greppable); tables still fit
errors = Console(stderr=True, soft_wrap=True)

#: exit code for anything the user can fix (bad spec, unknown plugin, bad data, an unusable directory)
BAD_INPUT = 2


def fail(error: ProbekitError | str) -> typer.Exit:
    """Print a user error (no traceback) and return the exit to raise."""
    errors.print(f"error: {error}", markup=False, highlight=False, style="red")
    return typer.Exit(BAD_INPUT)


def warn(message: str) -> None:
    errors.print(f"warning: {message}", markup=False, highlight=False, style="yellow")


class _Warnings(logging.Handler):
    """probekit's own warnings (a damaged cache entry or result part, leftovers cleaned) as one line each."""

    def emit(self, record: logging.LogRecord) -> None:
        warn(record.getMessage())


logging.getLogger("probekit").addHandler(_Warnings(logging.WARNING))  # plugins log under "probekit.plugins..."


@contextmanager
def user_errors(what: str, after_full_disk: str = "") -> Iterator[None]:
    """Turn user and environment failures into one message and exit code 2; ``what`` names what was being written,
    ``after_full_disk`` what the user should know when the disk filled up."""
    try:
        yield
    except ProbekitError as error:
        raise fail(error) from None
    except OSError as error:  # a directory that cannot be created or written, a full disk
        message = describe_os_error(error, what)
        raise fail(message + (f" ({after_full_disk})" if after_full_disk and "no space left" in message else "")) \
            from None


def show(renderable: RenderableType) -> None:
    """Print a table; off a terminal at its natural width, so no cell (a feature name) is wrapped."""
    if console.is_terminal:
        console.print(renderable)
    else:
        natural = Measurement.get(console, console.options.update_width(100_000), renderable).maximum
        width = console.width
        console.width = max(natural, width)  # print() can only narrow the console, never widen it
        try:
            console.print(renderable)
        finally:
            console.width = width


def human_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


__all__ = ["BAD_INPUT", "console", "errors", "escape", "fail", "human_bytes", "show", "user_errors", "warn"]
