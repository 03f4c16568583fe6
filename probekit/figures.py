"""Matplotlib figures made without pyplot's global state (safe in any process, no display needed), shared by
``probekit inspect`` and the report page."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def new_figure(rows: int, columns: int, width: float = 5.0, height: float = 3.2) -> tuple[Figure, Any]:
    """A figure of ``rows`` x ``columns`` axes, each ``width`` x ``height`` inches (the axes always a 2-D array)."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width * columns, height * rows), layout="constrained")
    return figure, figure.subplots(rows, columns, squeeze=False)
