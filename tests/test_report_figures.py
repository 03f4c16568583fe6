"""The numbers each figure of the HTML report is drawn from, on a hand-built result table whose answers are known;
and the page itself without a browser: sections, limits for large runs, partial runs, bad run directories."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from probekit.cli import app
from probekit.html_report import ReportLimits, html_report
from probekit.manifest import RunManifest
from probekit.report_data import (
    best_sparse_probes,
    feature_curves,
    layer_maps,
    model_curves,
    sparse_across_models,
)
from probekit.results import RESULT_SCHEMA


def row(model: str, feature: str, layer: int, selector: str, k: int, f1: float, control: str = "",
        dataset: str = "d", precision: float = 0.5, recall: float = 0.5) -> dict:
    return {"model": model, "dataset": dataset, "feature": feature, "layer": layer, "selector": selector, "k": k,
            "control": control, "f1": f1, "precision": precision, "recall": recall, "neurons": [f"L{layer}.N{k}"],
            "neuron_indices": list(range(k)), "cell_id": f"{model}{dataset}{feature}{layer}{selector}{k}{control}",
            "f1_low": f1 - 0.1, "f1_high": min(1.0, f1 + 0.1), "n_test_positive": 50, "n_test_groups": 30,
            "select_seconds": 0.5 if selector == "a" else 2.0, "selector_details": "{}"}


def known_table() -> pa.Table:
    """Two models, features x and y, layers 0 and 1, selectors a and b, ks 1 and 2, and both controls.

    The value is chosen so every best is known: f1 = 0.5 + 0.1 * layer + 0.05 * k (+ 0.02 for selector b) for x,
    and 0.3 + 0.1 * k for y at layer 0 only; model n is 0.1 lower everywhere."""
    rows = []
    for model, shift in (("m", 0.0), ("n", -0.1)):
        for layer in (0, 1):
            for selector, bonus in (("a", 0.0), ("b", 0.02)):
                for k in (1, 2):
                    rows.append(row(model, "x", layer, selector, k, 0.5 + 0.1 * layer + 0.05 * k + bonus + shift,
                                    precision=0.9, recall=0.4))
                    if layer == 0:
                        rows.append(row(model, "y", layer, selector, k, 0.3 + 0.1 * k + shift))
                    rows.append(row(model, "x", layer, selector, k, 0.2 + 0.01 * layer, control="shuffled_labels"))
            for k in (1, 2):
                rows.append(row(model, "x", layer, "", k, 0.3 + 0.02 * layer, control="random_neurons"))
    return pa.Table.from_pylist(rows, schema=RESULT_SCHEMA)


def test_feature_curves_take_the_best_selector_per_layer_and_the_best_control_over_layers() -> None:
    curves = feature_curves(known_table())
    x = curves[("m", "d", "x")]
    assert x.layers == {0: [(1, pytest.approx(0.57)), (2, pytest.approx(0.62))],
                        1: [(1, pytest.approx(0.67)), (2, pytest.approx(0.72))]}
    assert x.controls == {"random_neurons": [(1, pytest.approx(0.32)), (2, pytest.approx(0.32))],
                          "shuffled_labels": [(1, pytest.approx(0.21)), (2, pytest.approx(0.21))]}
    assert curves[("n", "d", "y")].layers == {0: [(1, pytest.approx(0.3)), (2, pytest.approx(0.4))]}
    assert curves[("n", "d", "y")].controls == {}
    assert list(curves) == sorted(curves)  # every feature once, in order


def test_layer_maps_at_the_smallest_and_largest_k() -> None:
    first, last = layer_maps(known_table())
    assert (first.k, last.k) == (1, 2) and first.layers == [0, 1]
    assert first.features == [("m", "d", "x"), ("m", "d", "y"), ("n", "d", "x"), ("n", "d", "y")]
    assert first.values[0] == [pytest.approx(0.57), pytest.approx(0.67)]
    assert first.values[1] == [pytest.approx(0.4), None]  # y has no layer-1 cell
    assert last.values[2] == [pytest.approx(0.52), pytest.approx(0.62)]


def test_model_curves_average_the_best_over_layers_within_each_dataset() -> None:
    (curve,) = model_curves(known_table(), ["n", "m"])
    assert list(curve.models) == ["n", "m"]  # the spec's order
    # k=1: x best 0.67, y best 0.4 -> mean 0.535 for m; k=2: 0.72 and 0.5; n is 0.1 lower
    assert curve.models["m"] == [(1, pytest.approx(0.535)), (2, pytest.approx(0.61))]
    assert curve.models["n"] == [(1, pytest.approx(0.435)), (2, pytest.approx(0.51))]
    across = sparse_across_models(known_table(), ["m", "n"])
    assert across == {("d", "x"): [pytest.approx(0.67), pytest.approx(0.57)],
                      ("d", "y"): [pytest.approx(0.4), pytest.approx(0.3)]}


def test_best_sparse_probes_are_the_best_at_the_smallest_k_with_their_precision_and_recall() -> None:
    probes = {p.feature: p for p in best_sparse_probes(known_table())}
    x = probes[("m", "d", "x")]
    assert (x.k, x.layer, x.selector, x.f1, x.precision, x.recall) == (1, 1, "b", pytest.approx(0.67), 0.9, 0.4)
    assert probes[("m", "d", "y")].layer == 0 and len(probes) == 4


def manifest(status: str = "complete", models: tuple[str, ...] = ("m", "n")) -> RunManifest:
    spec = {"name": "known", "models": [{"plugin": "fake", "label": m, "params": {}} for m in models],
            "datasets": [{"plugin": "text_features", "label": "d", "params": {}}],
            "selectors": [{"plugin": "a", "label": "a", "params": {}}, {"plugin": "b", "label": "b", "params": {}}],
            "ks": [1, 2], "cache": None}
    document = RunManifest.new(spec, "f" * 16, "known.yaml")
    document.status = status  # type: ignore[assignment]
    return document


def sections(page: str) -> list[str]:
    return [part.split('"', 1)[0] for part in page.split('<section id="')[1:]]


def test_the_page_has_a_section_per_figure_and_marks_a_partial_run(tmp_path: Path) -> None:
    page = html_report(tmp_path, manifest(), known_table())
    assert sections(page) == ["best", "layers", "selectors", "models", "precision-recall", "features", "activations"]
    assert "Partial report" not in page and "<script" not in page and "http" not in page.split("</style>")[1]
    assert page.count("<img") == 2 + 1 + 2 + 1 + 4  # heatmaps, selectors, models a+b, precision-recall, features
    # a hand-built table has no activations to histogram: the page says why, and how to get them
    assert ("m / d / x: the run&#x27;s prepared dataset is gone; `probekit inspect by-class L1.N0 --from-run "
            f"{tmp_path} --model m --dataset d --feature x` extracts them") in page
    single = html_report(tmp_path, manifest(status="running", models=("m",)),
                         known_table().filter(pa.compute.equal(known_table().column("model"), "m")))
    assert "Partial report" in single and "models" not in sections(single)


def test_a_large_run_gives_a_bounded_page(tmp_path: Path) -> None:
    rows = [row("m", f"feature{i:04d}", layer, "a", k, 0.5 + (i % 50) / 100 + 0.01 * layer)
            for i in range(300) for layer in range(4) for k in (1, 2)]
    limits = ReportLimits(feature_figures=5, heatmap_features=10, table_page=100)
    page = html_report(tmp_path, manifest(models=("m",)), pa.Table.from_pylist(rows, schema=RESULT_SCHEMA),
                       limits=limits)
    assert page.count("<img") == 2 + 1 + 5  # two heatmaps, precision-recall, 5 feature figures
    assert page.count("<details") == 3  # 300 features in pages of 100
    assert "The 5 features with the best sparsest F1 of 300" in page and "the 10 best features of 300" in page


def write_run(path: Path, table: pa.Table, status: str = "complete") -> None:
    (path / "results").mkdir(parents=True)
    pq.write_table(table, path / "results" / "part-0.parquet")
    (path / "run.json").write_text(manifest(status).to_json())


def test_report_html_from_the_command_line_and_its_bad_inputs(tmp_path: Path) -> None:
    runner = CliRunner()
    write_run(tmp_path / "run", known_table(), status="running")
    result = runner.invoke(app, ["report", str(tmp_path / "run"), "--html"])
    assert result.exit_code == 0, result.output
    assert "(partial: the run has not finished)" in result.output
    assert "Partial report" in (tmp_path / "run" / "report.html").read_text()
    for arguments, message in (
        ([str(tmp_path / "nowhere")], "no such run directory"),
        ([str(tmp_path)], "is not a probekit run directory (no run.json)"),
        ([str(tmp_path / "run"), "--html", "--metric", "f2"], "--metric f2: choose one of f1, precision"),
    ):
        result = runner.invoke(app, ["report", *arguments])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output
    empty = tmp_path / "empty"
    write_run(empty, RESULT_SCHEMA.empty_table())
    result = runner.invoke(app, ["report", str(empty), "--html"])
    assert result.exit_code == 2 and "holds no result rows yet" in result.output
    old = tmp_path / "old"
    write_run(old, known_table())
    document = json.loads((old / "run.json").read_text())
    document["format"] = 99
    (old / "run.json").write_text(json.dumps(document))
    result = runner.invoke(app, ["report", str(old), "--html"])
    assert result.exit_code == 2 and "run.json" in result.output and "Traceback" not in result.output, result.output


def test_run_writes_the_page_and_keeps_it_when_nothing_was_computed(fake_model_plugin: str, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"models: [{{plugin: {fake_model_plugin}}}]\n"
                    "datasets: [{plugin: text_features, params: {max_sequences: 60, sequence_length: 64, "
                    "min_positive_rate: 0.02, features: [all_digits]}}]\n"
                    "layers: [0]\nselectors: [{plugin: mean_diff}]\nks: [1]\n"
                    f"output: {tmp_path / 'run'}\ncache: {tmp_path / 'cache'}\n")
    runner = CliRunner()
    assert runner.invoke(app, ["run", str(spec)]).exit_code == 0
    page = tmp_path / "run" / "report.html"
    written = page.stat().st_mtime_ns
    assert "Partial report" not in page.read_text() and "all_digits" in page.read_text()
    assert runner.invoke(app, ["run", str(spec)]).exit_code == 0
    assert page.stat().st_mtime_ns == written  # nothing computed: the page stays
    page.write_text(page.read_text().replace("<h1>", "<p>Partial report</p><h1>"))  # as an interrupted run left it
    assert runner.invoke(app, ["run", str(spec)]).exit_code == 0
    assert "Partial report" not in page.read_text()  # the run is complete now: drawn again
