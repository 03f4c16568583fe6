"""The new selectors through `probekit run` on the real MiniLM: every cell is written, OSP rows carry a certificate."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

from probekit.cli import app

runner = CliRunner()

SPEC = """\
models:
  - plugin: minilm
datasets:
  - plugin: text_features
    params: {{max_sequences: 40, sequence_length: 64, max_examples: 200, features: [all_digits, is_not_alphanumeric]}}
layers: [0]
selectors:
{selectors}
ks: [1, 2]
"""

SELECTORS = """\
  - plugin: random
  - plugin: f_stat
  - plugin: mutual_info
  - plugin: l1_logreg
  - plugin: adaptive_threshold
  - plugin: osp
    params: {time_limit: 10}
"""


def test_every_new_selector_writes_its_rows(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(selectors=SELECTORS))
    result = runner.invoke(app, ["run", str(spec), "--output", str(tmp_path / "run")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = pq.read_table(tmp_path / "run" / "results").to_pylist()
    cells = {(r["feature"], r["selector"], r["k"]) for r in rows}
    selectors = {"random", "f_stat", "mutual_info", "l1_logreg", "adaptive_threshold", "osp"}
    assert cells == {(f, s, k) for f in ("all_digits", "is_not_alphanumeric") for s in selectors for k in (1, 2)}
    for row in rows:
        assert len(set(row["neuron_indices"])) == row["k"] and 0 <= row["f1"] <= 1
        if row["selector"] == "osp":
            certificate = json.loads(row["selector_details"])
            assert certificate["status"] in ("optimal", "time_limit")
            assert certificate["lower_bound"] <= certificate["objective"]
    best = max(r["f1"] for r in rows if r["feature"] == "all_digits" and r["selector"] == "osp" and r["k"] == 1)
    assert best > 0.8  # one MiniLM layer-0 neuron reads digits
    # the report compares the selectors, with osp's certified cells (2 features x 2 ks)
    report = (tmp_path / "run" / "report.md").read_text()
    compared = [line.split(" | ")[0].lstrip("| ") for line in report.split("## Selectors compared")[1].splitlines()
                if line.startswith("| ") and not line.startswith("| selector")]
    assert compared == ["random", "f_stat", "mutual_info", "l1_logreg", "adaptive_threshold", "osp"]
    osp_line = next(line for line in report.splitlines() if line.startswith("| osp |"))
    assert osp_line.rstrip(" |").endswith("/4")
    assert "Selectors: mean over features" in result.output


def test_osp_k_beyond_its_candidates_is_a_spec_error_before_any_work(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.format(selectors="  - plugin: osp\n    params: {candidates: 1}\n"))
    expected = "line 9: selectors[0].params: osp: k = 2 exceeds the 1 candidate neurons it solves over"
    for command in (["validate", str(spec)], ["run", str(spec), "--output", str(tmp_path / "run")]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2
        assert expected in result.stderr and "raise 'candidates' or lower 'ks'" in result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "results").exists()
