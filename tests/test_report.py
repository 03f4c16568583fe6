"""The selector comparison of a run's report: Table 4's protocol computed by hand on a small result table."""

from __future__ import annotations

import json

import pyarrow as pa

from probekit.report import compare_selectors, markdown_report


def row(feature: str, layer: int, selector: str, k: int, f1: float, seconds: float, details: dict,
        positives: int = 50) -> dict:
    return {"model": "m", "dataset": "d", "feature": feature, "layer": layer, "selector": selector, "k": k, "f1": f1,
            "f1_low": f1 - 0.05, "f1_high": min(1.0, f1 + 0.05), "n_test_positive": positives, "n_test_groups": 50,
            "select_seconds": seconds, "selector_details": json.dumps(details), "neurons": [f"L{layer}.N0"] * k}


ROWS = [
    # selector a: f1 by (feature, layer, k); one selection call per (feature, layer), timed once for all ks
    row("x", 0, "a", 1, 0.50, 1.0, {}), row("x", 0, "a", 2, 0.60, 1.0, {}),
    row("x", 1, "a", 1, 0.70, 3.0, {}), row("x", 1, "a", 2, 0.65, 3.0, {}),
    row("y", 0, "a", 1, 0.90, 2.0, {}), row("y", 0, "a", 2, 0.95, 2.0, {}),
    row("y", 1, "a", 1, 0.80, 2.0, {}), row("y", 1, "a", 2, 0.85, 2.0, {}),
    # selector b certifies its cells: three proved, one not
    row("x", 0, "b", 1, 0.40, 5.0, {"status": "optimal", "gap": 0.0}),
    row("x", 0, "b", 2, 0.45, 5.0, {"status": "time_limit", "gap": 0.02}),
    row("y", 0, "b", 1, 0.60, 7.0, {"status": "optimal", "gap": 1e-5}),
    row("y", 0, "b", 2, 0.75, 7.0, {"status": "optimal", "gap": 0.0}),
]


def test_selectors_are_compared_by_the_best_layer_per_feature() -> None:
    a, b = compare_selectors(pa.Table.from_pylist(ROWS))
    assert a.selector == "a" and b.selector == "b"
    assert a.f1_by_k == {1: (0.70 + 0.90) / 2, 2: (0.65 + 0.95) / 2}  # best layer per feature, then the mean
    assert a.seconds == (1.0 + 3.0 + 2.0 + 2.0) / 4  # per selection call, not per k row
    assert a.certified is None
    assert b.f1_by_k == {1: (0.40 + 0.60) / 2, 2: (0.45 + 0.75) / 2}
    assert (b.proved, b.certified, b.seconds) == (3, 4, 6.0)


def test_report_has_the_comparison_only_when_there_is_something_to_compare() -> None:
    manifest = {"spec": {"name": "t", "models": [{"plugin": "m"}], "datasets": [{"plugin": "d"}],
                         "selectors": [{"plugin": "a"}, {"plugin": "b"}], "ks": [1, 2]},
                "spec_source": "t.yaml", "spec_fingerprint": "0", "status": "complete"}
    text = markdown_report(manifest, pa.Table.from_pylist(ROWS))
    assert "## Selectors compared" in text
    assert "| a | 0.800 | 0.800 | 2.00 | - |" in text and "| b | 0.500 | 0.600 | 6.00 | 3/4 |" in text
    only_a = markdown_report(manifest, pa.Table.from_pylist([r for r in ROWS if r["selector"] == "a"]))
    assert "## Selectors compared" not in only_a


def test_a_resumed_selection_counts_both_calls() -> None:
    resumed = [row("x", 0, "a", 1, 0.5, 1.5, {}), row("x", 0, "a", 2, 0.6, 0.25, {})]  # k = 2 chosen after a resume
    (summary,) = compare_selectors(pa.Table.from_pylist(resumed))
    assert summary.seconds == 1.75


def test_best_probes_show_their_interval_and_few_positives_are_flagged() -> None:
    manifest = {"spec": {"models": [{"plugin": "m"}], "datasets": [{"plugin": "d"}], "selectors": [{"plugin": "a"}],
                         "ks": [1]}, "spec_fingerprint": "f"}
    rows = [row("x", 0, "a", 1, 0.90, 1.0, {}), row("y", 0, "a", 1, 1.00, 1.0, {}, positives=3)]
    text = markdown_report(manifest, pa.Table.from_pylist(rows))
    [x_line] = [line for line in text.splitlines() if line.startswith("| x |")]
    [y_line] = [line for line in text.splitlines() if line.startswith("| y |")]
    assert "0.900 (0.850-0.950)" in x_line and x_line.endswith("|  |")
    assert "1.000 (0.950-1.000)" in y_line and "only 3 test positives" in y_line
    only_x = markdown_report(manifest, pa.Table.from_pylist(rows[:1]))
    assert "note" not in only_x.split("## Best probe")[1].splitlines()[4]  # no note column when nothing to note


def test_a_single_test_source_has_no_interval_and_is_noted() -> None:
    manifest = {"spec": {"models": [{"plugin": "m"}], "datasets": [{"plugin": "d"}], "selectors": [{"plugin": "a"}],
                         "ks": [1]}, "spec_fingerprint": "f"}
    lone = {**row("x", 0, "a", 1, 0.80, 1.0, {}), "f1_low": float("nan"), "f1_high": float("nan"), "n_test_groups": 1}
    text = markdown_report(manifest, pa.Table.from_pylist([lone]))
    [line] = [line for line in text.splitlines() if line.startswith("| x |")]
    assert "0.800 (n/a)" in line and "1 test source |" in line
