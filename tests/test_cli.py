"""The command line: exit codes, messages instead of tracebacks, plugin listing, the quickstart end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from probekit import __version__
from probekit.cli import app

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
PROBEKIT = Path(sys.executable).parent / "probekit"

# runs on the in-memory FakeModel (tests request the `fake_model_plugin` fixture); the quickstart keeps MiniLM
SPEC = """\
models:
  - plugin: fake
datasets:
  - plugin: text_features
    params: {max_sequences: 40, sequence_length: 64, max_examples: 200, min_positive_rate: 0.02}
layers: [0]
selectors:
  - plugin: mean_diff
ks: [1, 2]
"""


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"probekit {__version__}"


def test_validate_good_and_bad(tmp_path: Path, fake_model_plugin: str) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(SPEC)
    result = runner.invoke(app, ["validate", str(good)])
    assert result.exit_code == 0 and "valid (fingerprint" in result.output

    bad = tmp_path / "bad.yaml"
    bad.write_text(SPEC.replace("ks: [1, 2]", "ks: [1, 2]\nprobe: {C: -1}").replace("mean_diff", "meandiff"))
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}: invalid run spec (2 problem(s))" in result.stderr
    assert "line 8: selectors[0].plugin: unknown selectors 'meandiff'. Did you mean 'mean_diff'?" in result.stderr
    assert "line 10: probe.C: Input should be greater than 0" in result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_run_with_missing_spec_is_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2 and "file not found" in result.stderr


def test_list_plugins_json_describes_parameters() -> None:
    result = runner.invoke(app, ["list-plugins", "--json"])
    assert result.exit_code == 0
    listing = json.loads(result.stdout)
    selectors = {p["name"]: p for p in listing["selectors"]}
    assert selectors["mean_diff"]["package"] == "probekit" and selectors["mean_diff"]["error"] is None
    datasets = {p["name"]: p for p in listing["datasets"]}
    params = {p["name"]: p for p in datasets["text_features"]["parameters"]}
    assert params["max_sequences"]["default"] == 400 and params["max_sequences"]["description"]  # JSON values
    assert params["source"]["default"] == {"kind": "stdlib"} and params["features"]["default"] is None
    assert params["positive_fraction"]["default"] == [0.2, 0.5]
    assert {"minilm", "huggingface"} <= {p["name"] for p in listing["models"]}


def test_list_plugins_shows_broken_plugins(install_fake_distribution) -> None:
    install_fake_distribution("broken-probes", "raise RuntimeError('boom at import')\n",
                              {"probekit.datasets": {"exploding": "Whatever"}})
    listing = json.loads(runner.invoke(app, ["list-plugins", "--json"]).stdout)
    broken = next(p for p in listing["datasets"] if p["name"] == "exploding")
    assert broken["package"] == "broken-probes" and "RuntimeError: boom at import" in broken["error"]
    table = runner.invoke(app, ["list-plugins"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "BROKEN" in table.stdout and "text_features" in table.stdout


def test_report_on_a_non_run_directory(tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "not a probekit run directory" in result.stderr


def test_run_output_override_and_report(tmp_path: Path, fake_model_plugin: str) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    out = tmp_path / "elsewhere"
    result = runner.invoke(app, ["run", str(spec), "--output", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Best probe per feature" in result.stdout and "all_digits" in result.stdout
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["status"] == "complete" and manifest["runs"][0]["packages"]["torch"].startswith("2.")
    row = next(r for r in pq.read_table(out / "results").to_pylist() if r["feature"] == "all_digits")
    counts = manifest["datasets"]["fake / text_features"]["features"]["all_digits"]  # what the data really held
    assert counts["positive"] == row["n_train_positive"] + row["n_test_positive"]
    assert counts["positive"] + counts["negative"] == row["n_train"] + row["n_test"]
    assert counts["groups"] == row["n_train_groups"] + row["n_test_groups"]
    assert (out / "report.md").read_text().startswith("# probekit run")
    (out / "report.md").unlink()
    assert runner.invoke(app, ["report", str(out)]).exit_code == 0 and (out / "report.md").exists()


@pytest.mark.slow
def test_quickstart_end_to_end(tmp_path: Path) -> None:
    """The README's quickstart through the installed console script, as a user runs it."""
    env = {**os.environ, "COLUMNS": "160"}
    result = subprocess.run([str(PROBEKIT), "run", str(REPO / "examples" / "quickstart.yaml"), "--output",
                             str(tmp_path / "qs")], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = pq.read_table(tmp_path / "qs" / "results").to_pylist()
    assert {r["layer"] for r in rows} == set(range(6)) and {r["k"] for r in rows} == set(range(1, 9))
    best_one_sparse = {}
    for r in rows:
        if r["k"] == 1:
            best_one_sparse[r["feature"]] = max(best_one_sparse.get(r["feature"], 0.0), r["f1"])
    # measured on MiniLM: all_digits 0.996, contains_digit 0.996, is_not_alphanumeric 0.80 (k = 1, best layer)
    assert best_one_sparse["all_digits"] > 0.95 and best_one_sparse["contains_digit"] > 0.95
    assert best_one_sparse["is_not_alphanumeric"] > 0.7
    assert "Traceback" not in result.stderr


def test_datasets_preview_counts_and_marks_probed_tokens(tmp_path: Path) -> None:
    table = tmp_path / "docs.jsonl"
    table.write_text("\n".join(json.dumps({"text": f"{word} " * 30, "label": word}) for word in ["red", "blue"] * 6))
    params = json.dumps({"source": {"kind": "table", "path": str(table)}, "sequence_length": 16})
    result = runner.invoke(app, ["datasets", "preview", "labeled_sequences", "--model", "minilm", "--params", params,
                                 "--examples", "1"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "12 sequences, 12 probe sites (mean)" in result.stdout
    assert "│ blue    │    12 │        6 │        6 │      2 │" in result.stdout  # identical texts: one group per label
    assert "red red red" in result.stdout  # an example, decoded with the tokenizer's own spacing

    bad = runner.invoke(app, ["datasets", "preview", "labeled_sequences", "--model", "minilm", "--params",
                              "{sequence_length: 16}"])
    assert bad.exit_code == 2 and "error: --params: source: Field required" in bad.stderr
    no_model = runner.invoke(app, ["datasets", "preview", "labeled_sequences"])
    assert no_model.exit_code == 2 and "--model" in no_model.output  # which tokenizer: the user must say
    unknown = runner.invoke(app, ["datasets", "preview", "nope", "--model", "minilm"])
    assert unknown.exit_code == 2 and unknown.stderr.startswith("error: unknown datasets 'nope'.")
    assert "run spec" not in bad.stderr + unknown.stderr and "--params" not in unknown.stderr


def test_a_run_whose_every_feature_is_skipped_says_so(tmp_path: Path, fake_model_plugin: str) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC + "min_per_class: 100000\n")
    result = runner.invoke(app, ["run", str(spec), "--output", str(tmp_path / "out")])
    assert result.exit_code == 0
    assert "warning: no result rows: every feature was skipped" in result.stderr
    assert "results in" not in result.stdout and "need 100000 of each" in result.stdout
