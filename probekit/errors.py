"""Errors a user can fix: bad specs, unknown or broken plugins, bad input data.

The CLI prints these as messages (exit code 2) instead of tracebacks; anything else is a bug.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class ProbekitError(Exception):
    """A problem caused by the user's input, with a message that says what and where."""


class SpecError(ProbekitError):
    """A run spec that does not validate; carries one line per problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"{source}: invalid run spec ({len(problems)} problem(s)):\n{lines}")


class PluginError(ProbekitError):
    """An unknown, duplicated, broken or contract-violating plugin."""


class RunError(ProbekitError):
    """A run that cannot go on (bad data, a failing plugin); finished results stay on disk."""


def guarded(action: Callable[[], T], what: str) -> T:
    """Run a plugin's code; an unexpected exception becomes a :class:`RunError` naming the plugin (``what``)."""
    try:
        return action()
    except ProbekitError:
        raise
    except Exception as error:  # third-party code can fail in any way; name it instead of dumping a traceback
        raise RunError(f"{what}: {type(error).__name__}: {error}") from error
