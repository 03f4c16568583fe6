"""Every benchmark script runs as documented (``python benchmarks/<name>.py``, from the repository root), in its
smallest mode, and prints what it is meant to print; and no script in the repository shadows a standard module.

Only that the benchmarks run is checked here: their figures depend on the machine, so none is asserted.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: script -> (arguments of its smallest run, lines or cells its output must contain)
SMOKE_RUNS: dict[str, tuple[list[str], list[str]]] = {
    "bench_cache.py": (["--quick"], ["verified / bare load, then a full read", "GB/s"]),
    "bench_cell_cost.py": (["--quick"], [
        "seconds per (feature, layer) cell", "| (a) probekit", "| (a') probekit.cells.probe_cells",
        "| (b) SAEBench-like", "| (c) plain SelectKBest", "| a / c, probekit / plain (target <= 0.7) |",
        "target a / c <= 0.7: ", "same numbers: every cell and k",
        "max |F1 interval - the earlier bootstrap's| = 0.0e+00",
    ]),
    "bench_executors.py": (["--smoke"], [
        "| local (1 worker) |", "| processes (2 workers) |", "speed-up over local", "overhead per unit",
        "| local | ", "cells ratio", "time ratio",
    ]),
    "bench_extraction.py": (["--smoke", "--profile"], [
        "plain HF base model + hooks", "vs plain (target >= 0.95)", "x all layers (target >= 2.5)",
        "where probekit's time goes", "torch operators", "peak RSS", "written to the cache",
    ]),
    "bench_selectors.py": (["--smoke"], [
        "### synthetic n=300 strong", "### synthetic n=300 weak", "### MiniLM layer 3", "OSP on MiniLM",
        "### OSP at the paper's settings", "### OSP with weak regularisation", "### OSP vs abess",
        *(f"| {method} | " for method in
          ("random", "mean_diff", "f_stat", "mutual_info", "l1_logreg", "adaptive_threshold", "osp")),
    ]),
    "bench_report.py": (["--smoke", "--profile"], [
        "### HTML report: large run against small run", "read results (s)", "build report.html (s)", "page size",
        "Chromium load + full-page screenshot (s)", "| large: 40 features x 4 layers x ks 1-3 | 960 |",
        "| small: 5 features x 2 layers x ks 1-3 | 60 |", "| large / small | 16x |",
        "where the build of the large page goes",
    ]),
}
#: smoke runs over about 10 seconds (they load a model, or open a browser)
SLOW = {"bench_executors.py", "bench_extraction.py", "bench_selectors.py", "bench_report.py"}


def test_every_benchmark_has_a_smoke_run() -> None:
    assert sorted(path.name for path in (ROOT / "benchmarks").glob("*.py")) == sorted(SMOKE_RUNS)


def test_no_script_shadows_a_standard_module() -> None:
    """A script's folder comes first on sys.path, so a script named like a standard module breaks its imports."""
    scripts = [path for folder in ("benchmarks", "examples", "tests") for path in (ROOT / folder).rglob("*.py")]
    assert scripts
    assert [str(path.relative_to(ROOT)) for path in scripts if path.stem in sys.stdlib_module_names] == []


@pytest.mark.parametrize(
    "script", [pytest.param(name, marks=[pytest.mark.slow] if name in SLOW else []) for name in SMOKE_RUNS]
)
def test_benchmark_smoke_run(script: str) -> None:
    arguments, expected = SMOKE_RUNS[script]
    done = subprocess.run([sys.executable, f"benchmarks/{script}", *arguments], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, f"exit code {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert [text for text in expected if text not in done.stdout] == []
