"""Control baselines: is an F1 about the feature, or would any labels or any neurons do as well?

- ``shuffled_labels`` (the selectivity control of Hewitt & Liang 2019): the same prefilter, selector and probe trained
  on the training labels permuted (one seeded permutation per feature), evaluated on the true test labels.
- ``random_neurons``: k neurons drawn at random from the whole layer (not the prefilter), probed as usual.

Each control is a cell of its own (a row with its ``control`` column set), so it is seeded, resumed and run on every
executor like any cell. Selectivity is a probe's F1 minus its control's F1 (same feature, layer and k; same selector
for shuffled labels).
"""

from __future__ import annotations

import zlib
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

Control = Literal["shuffled_labels", "random_neurons"]
CONTROLS: tuple[Control, ...] = ("shuffled_labels", "random_neurons")
#: the result column giving each probe's selectivity against each control
SELECTIVITY = {"shuffled_labels": "selectivity_shuffled", "random_neurons": "selectivity_random"}


def _seed(seed: int, feature: str, *more: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(feature.encode()), *more])


def shuffled_labels(y_train: np.ndarray, seed: int, feature: str) -> np.ndarray:
    """The training labels permuted: one permutation per (seed, feature), the same for every layer and selector."""
    return _seed(seed, feature).permutation(y_train)


def random_neurons(d_mlp: int, k: int, seed: int, feature: str, layer: int) -> np.ndarray:
    """k distinct neurons of the whole layer drawn at random (sorted), seeded by (seed, feature, layer, k)."""
    return np.sort(_seed(seed, feature, layer, k).choice(d_mlp, size=k, replace=False))


def with_selectivity(table: pa.Table) -> pa.Table:
    """``table`` with ``control`` "" for probe rows (older parts have none), and each probe row's selectivity
    against each control present: its F1 minus the matching control row's F1 (null without one)."""
    control = pc.fill_null(table.column("control"), "")
    table = table.set_column(table.schema.get_field_index("control"), "control", control)
    is_probe = pc.equal(control, "")
    order = pa.array(range(table.num_rows), pa.int64())
    for name, column in SELECTIVITY.items():
        keys = ["model", "dataset", "feature", "layer", "k"] + (["selector"] if name == "shuffled_labels" else [])
        reference = table.filter(pc.equal(control, name)).select([*keys, "f1"]).rename_columns([*keys, "control_f1"])
        joined = (table.select(keys).append_column("row", order)
                  .join(reference, keys, join_type="left outer", use_threads=False).sort_by("row"))
        difference = pc.subtract(table.column("f1"), joined.column("control_f1"))
        values = pc.if_else(is_probe, difference, pa.nulls(table.num_rows, pa.float64()))
        table = table.set_column(table.schema.get_field_index(column), column, values.cast(pa.float64()))
    return table


def probe_rows(table: pa.Table) -> pa.Table:
    """Only the probes' own rows (no control rows); a table without the control columns (built by hand, or by an
    older probekit) gets them, empty."""
    for name, kind in (("control", pa.string()), *((column, pa.float64()) for column in SELECTIVITY.values())):
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, kind))
    is_probe = pc.equal(pc.fill_null(table.column("control"), ""), "")
    return table if pc.all(is_probe).as_py() is not False else table.filter(is_probe)


def control_rows(table: pa.Table) -> pa.Table:
    """Only the control rows (none in a table without a control column)."""
    if "control" not in table.column_names:
        return table.slice(0, 0)
    return table.filter(pc.not_equal(pc.fill_null(table.column("control"), ""), ""))
