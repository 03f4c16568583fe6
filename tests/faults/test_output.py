"""Output where it is read off a terminal (CI logs, `| tee`): progress as plain lines, tables at their natural width,
help without type labels on flags."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fault_tools import probekit, write_spec

pytestmark = pytest.mark.slow  # real processes, each run a few seconds


def test_progress_is_plain_lines_and_tables_do_not_wrap_off_a_terminal(tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    result = probekit("run", str(spec), cwd=tmp_path, env={"COLUMNS": "60"})  # stdout is a pipe, 60 columns
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "extract (model, dataset) pairs: started, 1 to do" in lines
    assert any(re.fullmatch(r"extract \(model, dataset\) pairs: done, 1 in \d+ s", line) for line in lines)
    cells = re.search(r"(\d+) new result rows", result.stdout)[1]  # one bar over every cell of the run
    assert f"probe cells: started, {cells} to do" in lines
    assert any(re.fullmatch(rf"probe cells: done, {cells} in \d+ s", line) for line in lines)
    assert "\x1b[" not in result.stdout  # no terminal control sequences in a log
    for feature in ("all_digits", "contains_digit"):  # each table row on one line, whatever the width
        [row] = [line for line in lines if line.startswith(f"│ {feature} ")]
        assert "mean_diff" in row and "L0" in row


def test_help_has_no_type_labels_on_flags() -> None:
    for command in (["list-plugins", "--help"], ["cache", "rm", "--help"], ["run", "--help"]):
        result = probekit(*command, cwd=Path.cwd())
        assert result.returncode == 0 and "<bool>" not in result.stdout, result.stdout
    assert "--json" in probekit("list-plugins", "--help", cwd=Path.cwd()).stdout
