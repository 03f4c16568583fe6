"""The fault suite's tools: the installed ``probekit`` command run as a real process, a small real spec, and a mount
namespace for faults the machine itself must produce (a full or read-only filesystem)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq

PROBEKIT = Path(sys.executable).parent / "probekit"

#: MiniLM on 200 stdlib sequences: extraction takes a few seconds (time to kill it), 2 features x 2 layers x 2 ks
SPEC = """\
models:
  - plugin: minilm
datasets:
  - plugin: text_features
    params: {{max_sequences: 200, sequence_length: 128, max_examples: 300, features: [all_digits, contains_digit]}}
layers: [0, 1]
selectors:
  - plugin: mean_diff
ks: [1, 2]
output: {output}
cache: {cache}
"""


def write_spec(directory: Path, output: Path | str = "out", cache: Path | str = "cache", text: str = SPEC) -> Path:
    """A spec file in ``directory`` (relative output and cache land next to it when run from there)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "spec.yaml"
    path.write_text(text.format(output=output, cache=cache))
    return path


def probekit(*args: str, cwd: Path, timeout: float = 300, **options) -> subprocess.CompletedProcess:
    """Run the installed console script as a user would, capturing its output (not a terminal)."""
    env = {**os.environ, "COLUMNS": "200", **options.pop("env", {})}
    return subprocess.run([str(PROBEKIT), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env,
                          **options)


def start_probekit(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([str(PROBEKIT), *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "COLUMNS": "200"})


def wait_for(condition: Callable[[], bool], process: subprocess.Popen, what: str, timeout: float = 120) -> None:
    """Poll until ``condition`` holds (every 10 ms), failing if the process ends first."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"the run ended (exit {process.returncode}) before {what}: {process.stderr.read()}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def partial_files(cache: Path) -> list[Path]:
    return sorted(cache.glob(".partial.*")) if cache.exists() else []


def result_rows(run_dir: Path) -> list[tuple]:
    """(cell, neurons, F1) of every row, sorted: what must be identical between a clean run and a recovered one."""
    rows = pq.read_table(run_dir / "results").to_pylist()
    return sorted((r["cell_id"], tuple(r["neuron_indices"]), round(r["f1"], 12)) for r in rows)


def can_unshare(flag: str) -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", flag, "true"], capture_output=True).returncode == 0


def in_mount_namespace(script: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a shell script in a private mount namespace (its mounts vanish with it), ``$PROBEKIT`` set."""
    env = {**os.environ, "PROBEKIT": str(PROBEKIT), "COLUMNS": "200"}
    return subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-ec", script], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
