"""Executors change where units run, never the results: the `processes` executor against `local`, retries of units
whose worker died, failed units reported with their logs, the run directory's record of executors, and the errors
of an executor that cannot start. (Slurm and Ray against real daemons: tests/cluster.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from probekit.cli import app
from probekit.registry import PluginRegistry
from probekit.results import RunDirectory
from probekit.spec import validate_spec_text
from probekit.sweep import run_sweep

pytestmark = pytest.mark.usefixtures("fake_model_plugin")

FEATURES = ["all_digits", "leading_capital", "has_leading_space"]
#: columns that may differ between executors: how long things took
TIMINGS = {"select_seconds", "fit_seconds"}


def spec_text(output: Path, cache: Path, executor: str = "", selectors: tuple[str, ...] = ("mean_diff", "f_stat")) \
        -> str:
    return (
        "models:\n  - plugin: fake\n"
        "datasets:\n  - plugin: text_features\n"
        "    params: {max_sequences: 60, sequence_length: 64, max_examples: 300, min_positive_rate: 0.02,\n"
        f"             features: [{', '.join(FEATURES)}]}}\n"
        "layers: [0, 1]\nselectors:\n" + "".join(f"  - plugin: {name}\n" for name in selectors) +
        f"ks: [1, 2, 3]\noutput: {output}\ncache: {cache}\n" + executor
    )


def run(text: str, executor: str | None = None):
    return run_sweep(validate_spec_text(text, "test.yaml", PluginRegistry(), executor=executor))


def comparable(run_dir: Path) -> list[dict]:
    """Every row, sorted by cell, without timings (selector details keep no clock readings for these selectors)."""
    rows = pq.read_table(run_dir / "results").to_pylist()
    return sorted(({k: v for k, v in row.items() if k not in TIMINGS} for row in rows), key=lambda r: r["cell_id"])


def test_processes_write_the_same_rows_as_local(tmp_path: Path) -> None:
    local = run(spec_text(tmp_path / "local", tmp_path / "cache-local"))
    text = spec_text(tmp_path / "processes", tmp_path / "cache-processes",
                     "executor: {plugin: processes, params: {workers: 2}, pairs_per_unit: 2}\n")
    processes = run(text)
    assert processes.executor == "processes" and not processes.failed_units
    rows = comparable(tmp_path / "processes")
    assert rows == comparable(tmp_path / "local")
    assert len(rows) == local.new_rows == processes.new_rows == len(FEATURES) * 2 * 2 * 3
    # the executor is recorded per run, and is not part of the fingerprint
    manifests = [json.loads((tmp_path / name / "run.json").read_text()) for name in ("local", "processes")]
    assert manifests[0]["spec_fingerprint"] == manifests[1]["spec_fingerprint"]
    assert manifests[0]["runs"][-1]["executor"] == {"plugin": "local", "params": {}}
    assert manifests[1]["runs"][-1]["executor"] == {"plugin": "processes",
                                                    "params": {"workers": 2, "threads_per_worker": None}}
    assert manifests[1]["status"] == "complete"


def test_a_resumed_run_on_another_executor_submits_only_what_is_missing(tmp_path: Path) -> None:
    text = spec_text(tmp_path / "run", tmp_path / "cache")
    first = run(text)
    parts = sorted((tmp_path / "run" / "results").glob("*.parquet"))
    removed = pq.read_table(parts[0]).num_rows
    parts[0].unlink()
    (tmp_path / "run" / "run.json").write_text(
        (tmp_path / "run" / "run.json").read_text().replace('"complete"', '"running"'))
    manifest = json.loads((tmp_path / "run" / "run.json").read_text())
    manifest["completed"] = []
    (tmp_path / "run" / "run.json").write_text(json.dumps(manifest))
    cache_files = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").iterdir()}
    again = run(text, executor="processes")
    assert again.new_rows == removed and again.reused_cells == first.new_rows - removed
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").iterdir()} == cache_files  # nothing re-extracted
    runs = json.loads((tmp_path / "run" / "run.json").read_text())["runs"]
    assert [r["executor"]["plugin"] for r in runs] == ["local", "processes"]


def test_two_parts_with_the_same_cell_read_as_one_row(tmp_path: Path) -> None:
    run(spec_text(tmp_path / "run", tmp_path / "cache"))
    results = tmp_path / "run" / "results"
    before = pq.read_table(results).num_rows
    part = sorted(results.glob("*.parquet"))[0]
    table = pq.read_table(part)  # a retry that raced its slow original wrote the same cells again, later timings
    pq.write_table(table.set_column(table.schema.get_field_index("fit_seconds"), "fit_seconds",
                                    pa.array([9.0] * table.num_rows)), results / "part-zz-retry.parquet")
    rows = RunDirectory(tmp_path / "run").read_results()
    assert rows.num_rows == before and len(set(rows.column("cell_id").to_pylist())) == before
    assert 9.0 not in rows.column("fit_seconds").to_pylist()  # the first part (in name order) is kept


# A selector whose worker dies (os._exit: no exception, no traceback, as on an out-of-memory kill) the first
# `times` times it runs on feature all_digits; each death is counted in a file next to the spec.
DYING_SELECTOR = """
    import os
    from pathlib import Path

    from probekit.api import PluginParams, RankingSelector, mean_difference

    class Dying(RankingSelector):
        '''mean_diff, but its process dies the first few times.'''

        class Params(PluginParams):
            counter: str
            times: int = 1

        def score(self, X_train, y_train):
            counter = Path(self.params.counter)
            deaths = int(counter.read_text()) if counter.exists() else 0
            if deaths < self.params.times and X_train.shape[0] > 0 and y_train.mean() < 0.3:
                counter.write_text(str(deaths + 1))
                os._exit(3)
            return mean_difference(X_train, y_train)
"""


def dying_spec(tmp_path: Path, times: int, retries: int) -> str:
    text = spec_text(tmp_path / "run", tmp_path / "cache", selectors=()).replace(
        "selectors:\n", f"selectors:\n  - plugin: dying\n    params: {{counter: {tmp_path / 'deaths'}, "
                        f"times: {times}}}\n")
    return text + f"executor: {{plugin: processes, params: {{workers: 2}}, pairs_per_unit: 1, " \
                  f"max_retries: {retries}}}\n"


def test_a_unit_whose_worker_died_is_retried_and_the_run_completes(tmp_path: Path, install_fake_distribution) \
        -> None:
    install_fake_distribution("dying-selector", DYING_SELECTOR, {"probekit.selectors": {"dying": "Dying"}})
    summary = run(dying_spec(tmp_path, times=1, retries=1))
    assert (tmp_path / "deaths").read_text() == "1"
    assert not summary.failed_units
    rows = pq.read_table(tmp_path / "run" / "results")
    ids = rows.column("cell_id").to_pylist()
    assert len(ids) == len(set(ids)) == summary.new_rows
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "complete"


def test_a_unit_that_keeps_failing_is_listed_with_its_log_and_finished_cells_stay(
        tmp_path: Path, install_fake_distribution) -> None:
    install_fake_distribution("dying-selector", DYING_SELECTOR, {"probekit.selectors": {"dying": "Dying"}})
    (tmp_path / "spec.yaml").write_text(dying_spec(tmp_path, times=100, retries=2))
    result = CliRunner().invoke(app, ["run", str(tmp_path / "spec.yaml")])
    assert result.exit_code == 1 and result.exception is None or isinstance(result.exception, SystemExit), \
        (result.output, result.exc_info)
    assert "unit(s) failed on executor 'processes' after their retries" in result.output
    assert "BrokenProcessPool" in result.output and "(log: " in result.output
    log = Path(result.output.split("(log: ")[1].split(")")[0])
    assert log.is_file() and "BrokenProcessPool" in log.read_text()
    assert "Traceback" not in result.output.split("(log: ")[0]
    manifest = json.loads((tmp_path / "run" / "run.json").read_text())
    assert manifest["status"] == "running" and manifest["completed"] == []
    # the units that did not meet the dying feature (or ran beside it) kept their rows; a second run adds the rest
    kept = pq.read_table(tmp_path / "run" / "results").num_rows if (tmp_path / "run" / "results").exists() else 0
    (tmp_path / "spec.yaml").write_text(dying_spec(tmp_path, times=0, retries=0))
    summary = run((tmp_path / "spec.yaml").read_text())
    assert summary.reused_cells == kept and not summary.failed_units
    assert pq.read_table(tmp_path / "run" / "results").num_rows == kept + summary.new_rows == 3 * 2 * 3


@pytest.mark.parametrize(("arguments", "message"), [
    (["--executor", "nope"], "--executor nope: executor.plugin: unknown executors 'nope'. Known: local, processes, "
                             "ray, slurm"),
    (["--executor", "slurm"], "executor 'slurm': the spec's `output` and `cache` must be absolute paths"),
    (["--executor", "ray"], "executor 'ray' needs Ray, which a plain install leaves out: pip install 'probekit[ray]'"),
])
def test_an_executor_that_cannot_start_stops_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              arguments: list[str], message: str) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as in a plain install, where Ray is not installed
    (tmp_path / "spec.yaml").write_text(spec_text(Path("run"), Path("cache")))
    result = CliRunner().invoke(app, ["run", str(tmp_path / "spec.yaml"), *arguments])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run" / "results").exists() and not (tmp_path / "cache").exists()


def test_slurm_without_sbatch_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    (tmp_path / "spec.yaml").write_text(spec_text(tmp_path / "run", tmp_path / "cache"))
    result = CliRunner().invoke(app, ["run", str(tmp_path / "spec.yaml"), "--executor", "slurm"])
    assert result.exit_code == 2
    assert "executor 'slurm': no `sbatch` on PATH" in result.output


def test_ray_at_an_unreachable_address_is_a_quick_clear_error(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    (tmp_path / "spec.yaml").write_text(spec_text(tmp_path / "run", tmp_path / "cache",
                                                  "executor: {plugin: ray, params: {address: '127.0.0.1:9', "
                                                  "connect_timeout_s: 2}}\n"))
    result = CliRunner().invoke(app, ["run", str(tmp_path / "spec.yaml")])
    assert result.exit_code == 2
    assert "executor 'ray': cannot reach the Ray cluster at 127.0.0.1:9" in result.output


def test_probe_units_cover_every_pair_once_balanced_by_sites_heaviest_first() -> None:
    from probekit.sweep import cut_probe_units

    todo = {("m", "heavy"): [(f"h{i}", layer, 2000) for layer in range(6) for i in range(4)],
            ("m", "light"): [(f"l{i}", layer, 100) for layer in range(6) for i in range(8)]}
    units = cut_probe_units(todo, pairs_per_unit=32, parallelism=2)
    covered = [(u.dataset, pair) for u in units for pair in u.pairs]
    assert sorted(covered) == sorted((d, (f, layer)) for (_, d), pairs in todo.items() for f, layer, _ in pairs)
    weights = [sum(2000 if u.dataset == "heavy" else 100 for _ in u.pairs) for u in units]
    assert weights == sorted(weights, reverse=True)  # heaviest first
    share = (24 * 2000 + 48 * 100) / 4
    assert max(weights) <= share and len(units) <= 2 * 2 + 2  # about two per worker, plus a remainder per dataset
    assert all(len(u.pairs) <= 32 for u in units)
    assert all(len(u.pairs) <= 3 for u in cut_probe_units(todo, pairs_per_unit=3, parallelism=2))


def test_the_executor_in_the_plugin_guide_runs_a_sweep_with_the_same_rows(tmp_path: Path,
                                                                          install_fake_distribution) -> None:
    guide = (Path(__file__).parents[1] / "docs" / "writing-plugins.md").read_text()
    code = guide.split("## Executors", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    install_fake_distribution("threads-executor", code, {"probekit.executors": {"threads": "Threads"}})
    run(spec_text(tmp_path / "local", tmp_path / "cache"))
    summary = run(spec_text(tmp_path / "threads", tmp_path / "cache", "executor: {plugin: threads}\n"))
    assert summary.executor == "threads" and not summary.failed_units
    assert comparable(tmp_path / "threads") == comparable(tmp_path / "local")
