"""Every example spec in examples/ stays valid: the plugins it names exist, its params pass their checks, and the
files it names (relative to the spec's own directory) exist."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from probekit.cli import app
from probekit.registry import PluginRegistry
from probekit.spec import load_spec

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("spec", sorted(EXAMPLES.glob("*.yaml")), ids=lambda path: path.stem)
def test_example_spec_validates(spec: Path) -> None:
    result = CliRunner().invoke(app, ["validate", str(spec)])  # from a temporary working directory
    assert result.exit_code == 0, result.output
    assert "valid (fingerprint" in result.output
    for dataset in load_spec(spec, PluginRegistry()).spec.datasets:
        for value in _strings(dataset.params):
            if value.startswith(str(EXAMPLES.parent)):  # a path inside the repository: it must exist
                assert Path(value).exists(), value


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []
