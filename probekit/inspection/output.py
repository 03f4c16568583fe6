"""What an analysis returns, and how it is shown and saved: tables of numbers (Parquet), a JSON description and a
matplotlib figure (PNG and SVG), so a notebook or the report can reuse them."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
from rich.table import Table

from probekit.files import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass
class Inspection:
    """The numbers of one analysis: named tables (the first is the one shown on the terminal), a description
    (model, corpus, neurons, settings) and a figure."""

    analysis: str
    tables: dict[str, pa.Table]
    description: dict[str, Any]
    figure: Figure | None = None
    #: lines shown under the table (e.g. which layers came from the activation cache)
    notes: list[str] = field(default_factory=list)

    def write(self, directory: Path) -> list[Path]:
        """``<analysis>[-<table>].parquet`` per table, ``<analysis>.json`` and ``<analysis>.png`` / ``.svg``."""
        directory.mkdir(parents=True, exist_ok=True)
        written = []
        for index, (name, table) in enumerate(self.tables.items()):
            path = directory / (f"{self.analysis}.parquet" if index == 0 else f"{self.analysis}-{name}.parquet")
            buffer = io.BytesIO()
            pq.write_table(table, buffer)
            atomic_write_bytes(path, buffer.getvalue())
            written.append(path)
        description = {"analysis": self.analysis, **self.description, "notes": self.notes,
                       "tables": {name: (f"{self.analysis}.parquet" if i == 0 else f"{self.analysis}-{name}.parquet")
                                  for i, name in enumerate(self.tables)}}
        path = directory / f"{self.analysis}.json"
        atomic_write_bytes(path, json.dumps(description, indent=2, default=str).encode())
        written.append(path)
        if self.figure is not None:
            for suffix in ("png", "svg"):
                buffer = io.BytesIO()
                self.figure.savefig(buffer, format=suffix, dpi=120, bbox_inches="tight")
                path = directory / f"{self.analysis}.{suffix}"
                atomic_write_bytes(path, buffer.getvalue())
                written.append(path)
        return written


def rich_table(table: pa.Table, title: str, limit: int = 40) -> Table:
    """A terminal table of the first ``limit`` rows; floats with 4 significant digits."""
    shown = Table(title=title)
    for name in table.column_names:
        shown.add_column(name, overflow="fold")
    for row in table.slice(0, limit).to_pylist():
        # a token is quoted, so that " 2023" and "2023" differ
        shown.add_row(*(repr(value) if name == "token" and isinstance(value, str) else _cell(value)
                        for name, value in row.items()))
    if table.num_rows > limit:
        shown.caption = f"{limit} of {table.num_rows} rows (--output DIR saves them all)"
    return shown


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, str):  # a token or a context with a line break or a tab stays on one line
        return value.replace("\n", "\\n").replace("\t", "\\t")
    return "" if value is None else str(value)
