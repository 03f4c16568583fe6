"""`probekit plan`: cells, units, tokens and cache size against an independent count, cells already done after a
partial run, nothing written, and a model that cannot be loaded reported as unknown."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from probekit.cli import app
from probekit.plan import plan_sweep
from probekit.registry import PluginRegistry
from probekit.spec import validate_spec_text
from probekit.sweep import run_sweep
from probekit.testing import FakeModel

pytestmark = pytest.mark.usefixtures("fake_model_plugin")

PARAMS = {"max_sequences": 60, "sequence_length": 64, "max_examples": 300, "min_positive_rate": 0.02,
          "features": ["all_digits", "leading_capital", "has_leading_space", "is_not_ascii"]}


def spec_text(output: Path) -> str:
    return ("models:\n  - plugin: fake\ndatasets:\n  - plugin: text_features\n"
            f"    params: {PARAMS}\n".replace("'", "") +
            f"layers: [0, 1]\nselectors:\n  - plugin: mean_diff\n  - plugin: f_stat\nks: [1, 2, 3]\n"
            f"output: {output}\ncache: {output.parent / 'cache'}\n"
            "executor: {plugin: processes, params: {workers: 2}, pairs_per_unit: 2}\n")


def files(directory: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in directory.rglob("*")} if directory.exists() else {}


def test_plan_counts_what_a_run_will_do_and_writes_nothing(tmp_path: Path, fake_model: FakeModel) -> None:
    text = spec_text(tmp_path / "run")
    plan = plan_sweep(validate_spec_text(text, "spec.yaml", PluginRegistry()))
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()
    # independently: the dataset built directly on the fake model's tokenizer
    text_features = PluginRegistry().get("datasets", "text_features")
    dataset = text_features(text_features.Params(**PARAMS)).build(fake_model.tokenizer)
    usable = [f for f in dataset.features if min(f.labels.sum(), (~f.labels).sum()) >= 5]
    (pair,) = plan.pairs
    assert pair.problem is None
    assert pair.tokens == sum(len(ids) for ids in dataset.sequences) and pair.sites == len(dataset.sites)
    assert pair.features == len(usable) == 3  # is_not_ascii: no token of these windows is non-ASCII
    assert pair.cells == 3 * 2 * 2 * 3 and pair.done == 0  # features x layers x selectors x ks
    assert pair.cache_bytes == len(dataset.sites) * fake_model.d_mlp * 2 * np.dtype("float32").itemsize
    assert plan.parallelism == 2 and 2 <= pair.probe_units <= 3 * 2  # at most 2 pairs per unit, at most 1 per pair

    # the run submits the units the plan counted; after it, remove one result part: its cells are to do again
    summary = run_sweep(validate_spec_text(text, "spec.yaml", PluginRegistry()))
    manifest = json.loads((tmp_path / "run" / "run.json").read_text())
    assert manifest["runs"][-1]["units"] == {"extraction": 1, "probe": pair.probe_units}
    part = sorted((tmp_path / "run" / "results").glob("*.parquet"))[0]
    part.unlink()
    before = files(tmp_path)
    again = plan_sweep(validate_spec_text(text, "spec.yaml", PluginRegistry())).pairs[0]
    assert files(tmp_path) == before
    assert again.done == summary.new_rows - 2 * 3 and again.probe_units == 1


def test_plan_on_the_command_line_reports_an_unloadable_model_as_unknown(tmp_path: Path) -> None:
    text = spec_text(tmp_path / "run").replace(
        "models:\n  - plugin: fake\n", f"models:\n  - plugin: fake\n  - plugin: pythia\n"
                                       f"    params: {{name: {tmp_path / 'no-such-checkpoint'}}}\n")
    (tmp_path / "spec.yaml").write_text(text)
    result = CliRunner().invoke(app, ["plan", str(tmp_path / "spec.yaml")])
    assert result.exit_code == 0, result.output
    assert "36 cells, 0 already done; 2 extraction unit(s) at most" in result.output
    assert "pythia / text_features: unknown (" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()
