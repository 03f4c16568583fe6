"""Interrupting a run on the `processes` executor, as real processes: Ctrl-C (SIGINT) or SIGTERM to the driver stops
its worker processes, keeps every finished part, and the same command then computes only the missing cells and ends
with the rows of a clean run."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from fault_tools import PROBEKIT, SPEC, probekit, result_rows, wait_for, write_spec

pytestmark = pytest.mark.slow  # real processes, a few seconds each

# mean_diff that takes 3 s per selection, so that units are still running when the driver is interrupted
SLOW_SELECTOR = """
    import time

    from probekit.api import PluginParams, RankingSelector, mean_difference

    class Slow(RankingSelector):
        '''mean_diff, slowly.'''

        Params = PluginParams

        def score(self, X_train, y_train):
            time.sleep(3.0)
            return mean_difference(X_train, y_train)
"""
PROCESSES = "executor: {{plugin: processes, params: {{workers: 2}}, pairs_per_unit: 1}}\n"  # format()ted


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (the spawned workers and multiprocessing's helper)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize(("number", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_driver_stops_its_workers_and_the_same_command_resumes(
        tmp_path: Path, install_fake_distribution, number: int, exit_code: int) -> None:
    module = install_fake_distribution("slow-selector", SLOW_SELECTOR, {"probekit.selectors": {"slow": "Slow"}})
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(tmp_path / module)}
    spec = write_spec(tmp_path, text=SPEC.replace("plugin: mean_diff", "plugin: slow") + PROCESSES)
    reference = write_spec(tmp_path / "reference", text=SPEC.replace("plugin: mean_diff", "plugin: slow"))
    assert subprocess.run([str(PROBEKIT), "run", str(reference)], cwd=reference.parent, env=env,
                          capture_output=True).returncode == 0

    # as at a terminal: SIGINT at its default (a shell's background job, as CI may be, inherits it ignored)
    driver = subprocess.Popen([str(PROBEKIT), "run", str(spec)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    parts = tmp_path / "out" / "results"
    wait_for(lambda: parts.is_dir() and any(parts.glob("*.parquet")), driver, "the first result part")
    workers = children(driver.pid)
    assert workers, "the processes executor runs its units in child processes"
    driver.send_signal(number)
    _, errors = driver.communicate(timeout=60)
    assert driver.returncode == exit_code, errors
    assert "finished cells are saved; run the same command again to resume" in errors and "Traceback" not in errors
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in workers if alive(pid)], "a worker outlived the interrupted driver"

    kept = len(result_rows(tmp_path / "out"))
    assert 0 < kept < 8  # 2 features x 2 layers x 2 ks: some, not all
    resumed = probekit("run", str(spec), cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / module)})
    assert resumed.returncode == 0, resumed.stderr
    assert f"{8 - kept} new result rows, {kept} cells already on disk" in resumed.stdout
    assert result_rows(tmp_path / "out") == result_rows(reference.parent / "out")
