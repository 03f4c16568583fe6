"""Every example spec in examples/ stays valid: the plugins it names exist and its params pass their checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from probekit.cli import app

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("spec", sorted(EXAMPLES.glob("*.yaml")), ids=lambda path: path.stem)
def test_example_spec_validates(spec: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(EXAMPLES.parent)  # example paths are relative to the repository root
    result = CliRunner().invoke(app, ["validate", str(spec)])
    assert result.exit_code == 0, result.output
    assert "valid (fingerprint" in result.output
