"""Bad input: each mistake gets one message naming it and where (line, option, file), exit code 2, no traceback, and
`validate` rejects whatever `run` would reject."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from fault_tools import PROBEKIT, probekit
from typer.testing import CliRunner

from probekit.cli import app

VALID = """\
models:
  - plugin: minilm
datasets:
  - plugin: text_features
    params: {max_sequences: 20}
layers: [0]
selectors:
  - plugin: mean_diff
ks: [1, 2]
"""


def validate(text: str, tmp_path: Path) -> subprocess.CompletedProcess:
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    return CliRunner().invoke(app, ["validate", str(spec)])


@pytest.mark.parametrize(("field", "value"), [("layers", '"0-5000000000"'), ("ks", '"1-5000000000"'),
                                              ("ks", "[1, 5000000000]")])
@pytest.mark.slow
def test_huge_ranges_are_refused_before_they_are_expanded(tmp_path: Path, field: str, value: str) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(VALID.replace("layers: [0]", "layers: [0]" if field != "layers" else f"layers: {value}")
                    .replace("ks: [1, 2]", "ks: [1, 2]" if field != "ks" else f"ks: {value}"))
    started = time.monotonic()
    process = subprocess.Popen([str(PROBEKIT), "validate", str(spec)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    _, status, usage = os.wait4(process.pid, 0)
    stderr = process.stderr.read()
    assert os.waitstatus_to_exitcode(status) == 2, stderr
    assert time.monotonic() - started < 60
    assert usage.ru_maxrss < 1024 * 1024, f"validate used {usage.ru_maxrss / 1024:.0f} MiB"  # KiB: under 1 GiB
    limit = "layer 1023 (no model has more layers)" if field == "layers" else "prefilter (1024)"
    assert f"{field}: " in stderr and f"goes beyond {limit}" in stderr and "Traceback" not in stderr


def test_duplicate_keys_are_refused_with_both_lines(tmp_path: Path) -> None:
    result = validate(VALID + "ks: [3]\n", tmp_path)
    assert result.exit_code == 2
    assert "line 10: not valid YAML: duplicate key 'ks' (first at line 9)" in result.stderr
    nested = validate(VALID.replace("{max_sequences: 20}", "{max_sequences: 20, max_sequences: 30}"), tmp_path)
    assert nested.exit_code == 2 and "line 5: not valid YAML: duplicate key 'max_sequences' (first at line 5)" in \
        nested.stderr


def test_an_unclosed_bracket_is_reported_where_it_opens(tmp_path: Path) -> None:
    result = validate(VALID.replace("ks: [1, 2]", "ks: [1, 2\nprefilter: 10"), tmp_path)
    assert result.exit_code == 2
    assert "line 9: not valid YAML: '[' is never closed (expected ',' or ']', but got ':' at line 10)" in result.stderr


def test_validate_rejects_what_run_would_reject(tmp_path: Path) -> None:
    result = validate(VALID.replace("  - plugin: mean_diff", "  - plugin: random\n    params: {pool: 1}"), tmp_path)
    assert result.exit_code == 2
    assert ("line 9: selectors[0].params: random: k = 2 exceeds the 1 neurons it draws from (the smaller of "
            "params.pool = 1 and 1024 prefiltered neurons); raise 'pool' or lower 'ks'") in result.stderr


def test_an_unknown_key_gets_a_did_you_mean(tmp_path: Path) -> None:
    result = validate(VALID.replace("{max_sequences: 20}", "{max_sequence: 20}").replace("layers:", "layer:"),
                      tmp_path)
    assert result.exit_code == 2
    assert "line 5: datasets[0].params.max_sequence: unknown key. Did you mean 'max_sequences'?" in result.stderr
    assert "line 6: layer: unknown key. Did you mean 'layers'?" in result.stderr


@pytest.mark.slow
def test_a_csv_without_its_label_column_names_the_column(tmp_path: Path) -> None:
    (tmp_path / "docs.csv").write_text("text,topic\n" + "".join(f"some text {i},a\n" for i in range(10)))
    spec = tmp_path / "spec.yaml"
    spec.write_text(VALID.replace("plugin: text_features\n    params: {max_sequences: 20}",
                                  "plugin: labeled_sequences\n    params: {source: {kind: table, path: docs.csv}}"))
    result = probekit("run", str(spec), "--output", "out", cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert (f"{tmp_path / 'docs.csv'}:1: the header has no column 'label' (columns: text, topic); name the right one "
            "with source.label_field") in result.stderr
    assert "Traceback" not in result.stderr


def test_datasets_preview_of_an_unknown_plugin(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["datasets", "preview", "text_featurez", "--model", "minilm"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: unknown datasets 'text_featurez'. Did you mean 'text_features'?")
    assert "run spec" not in result.stderr


@pytest.mark.slow
def test_relative_source_paths_are_read_from_the_spec_files_directory(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    lines = [f'{{"text": "{(word + " ") * 20} number {i}", "label": "{word}"}}'
             for i, word in enumerate(["red", "blue"] * 8)]
    (project / "data" / "d.jsonl").write_text("\n".join(lines) + "\n")
    spec = project / "spec.yaml"
    dataset = "plugin: labeled_sequences\n    params: {source: {kind: table, path: data/d.jsonl}, sequence_length: 16}"
    spec.write_text(VALID.replace("plugin: text_features\n    params: {max_sequences: 20}", dataset)
                    + "min_per_class: 2\noutput: out\ncache: null\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = probekit("run", str(spec), cwd=elsewhere, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (elsewhere / "out" / "results").is_dir()  # outputs stay relative to the working directory
