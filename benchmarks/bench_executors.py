"""Benchmark of the executors on a probe-bound sweep: `local` against `processes` with 2 workers and `slurm` on a
real one-node cluster with 2 CPUs (the loopback cluster of the tests), measured side by side in one run; the
per-unit overhead of each; and how the time grows with the cells.

    .venv/bin/python benchmarks/bench_executors.py            # full run (about 12 minutes on a 2-core machine)
    .venv/bin/python benchmarks/bench_executors.py --smoke    # tiny sizes, one repeat: checks that it runs

The sweep: the real all-MiniLM-L6-v2 on two offline datasets, the quickstart's text features (4 usable features, 7,434
sites) and code_language (8 languages, 60 files each), all 6 layers: 72 (feature, layer) pairs, selectors mean_diff,
l1_logreg and osp, ks 1-8 (the paper's). The
activations are cached first (untimed), so every timed run only probes. Each repeat runs the three executors one
after another into fresh run directories, all as `probekit run` processes (the Slurm one inside the cluster's
network namespace); a run's time is its driver's own (run.json's start to finish), so interpreter start-up is not
counted. Ratios are per repeat (the same repeat's local time over the executor's), reported as median (range).

Per-unit overhead: the worker time of a run that went to neither selecting nor fitting (``workers x wall -
sum of the rows' select and fit seconds``), divided by its units (extraction and probe, from run.json); it includes
building the datasets, reading activations, splits, the prefilter and writing parts, which local pays too, and
workers idle while others finish. The Slurm cluster needs root and the Slurm packages
(`bash .ci/slurm-packages`); without them the Slurm column is skipped, with the reason.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "cluster"))
from slurm_cluster import SlurmCluster  # noqa: E402

#: two offline datasets of the real MiniLM: 4 text features (7,434 sites) and 8 code languages (about 800 sites)
DATASETS = ("  - plugin: text_features\n"
            "    params: {source: {kind: stdlib}, max_sequences: 400, sequence_length: 128}\n"
            "  - plugin: code_language\n    params: {documents_per_label: 60}\n")
SMOKE_DATASETS = ("  - plugin: text_features\n"
                  "    params: {source: {kind: stdlib}, max_sequences: 60, sequence_length: 64}\n")
EXECUTORS = {
    "local": "executor:\n  plugin: local\n",
    "processes": "executor:\n  plugin: processes\n  params: {workers: 2}\n",
    "slurm": "executor:\n  plugin: slurm\n  params: {poll_seconds: 0.5, extraction: {cpus: 2}, probe: {cpus: 1},\n"
             "           array_parallelism: 2}\n",
}
WORKERS = {"local": 1, "processes": 2, "slurm": 2}
#: the default: probe units of at most 32 pairs, about two per worker
PAIRS_PER_UNIT = 32


def spec(output: Path, cache: Path, datasets: str, layers: str, selectors: str, ks: str, executor: str) -> str:
    return (f"models:\n  - plugin: minilm\ndatasets:\n{datasets}"
            f"layers: {layers}\nselectors:\n{selectors}ks: {ks}\noutput: {output}\ncache: {cache}\n{executor}")


def run_seconds(run_dir: Path) -> float:
    """The driver's own time of the last run into ``run_dir`` (run.json, to the millisecond)."""
    last = json.loads((run_dir / "run.json").read_text())["runs"][-1]
    return (datetime.fromisoformat(last["finished_at"]) - datetime.fromisoformat(last["started_at"])).total_seconds()


def compute_seconds(run_dir: Path) -> float:
    """Seconds the rows spent selecting (once per pair and selector) and fitting (once per row)."""
    rows = pq.read_table(run_dir / "results", columns=["feature", "layer", "selector", "select_seconds",
                                                       "fit_seconds"]).to_pylist()
    selections = {(r["feature"], r["layer"], r["selector"]): r["select_seconds"] for r in rows}
    return sum(selections.values()) + sum(r["fit_seconds"] for r in rows)


def n_cells(run_dir: Path) -> int:
    return pq.read_table(run_dir / "results", columns=["cell_id"]).num_rows


def n_pairs(run_dir: Path) -> int:
    return len(list((run_dir / "results").glob("*.parquet")))  # one result part per (feature, layer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat (checks that it runs)")
    args = parser.parse_args()
    # SIGTERM (a timeout, `kill`) unwinds like Ctrl-C, so that the cluster below is stopped and leaves nothing behind
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))
    # osp proves most supports in well under a second here; its time limit bounds the few hard ones (60 s in the paper)
    selectors = "  - plugin: mean_diff\n  - plugin: l1_logreg\n  - plugin: osp\n    params: {time_limit: 0.5}\n"
    if args.smoke:
        datasets, layers, small_layers, ks, repeats = SMOKE_DATASETS, "[0, 1]", "[1]", "[1]", 1
    else:  # the growth runs: one layer (12 pairs) against all six (72 pairs)
        datasets, layers, small_layers, ks, repeats = DATASETS, "all", "[5]", '"1-8"', 3
    work = Path(tempfile.mkdtemp(prefix="pk-bench-"))  # short: the cluster's Unix sockets live under it
    cache = work / "cache"
    python = [sys.executable, "-m", "probekit", "run"]

    def write(name: str, text: str) -> Path:
        path = work / f"{name}.yaml"
        path.write_text(text)
        return path

    def probekit_run(path: Path, cluster: SlurmCluster | None = None) -> None:
        """``probekit run path`` (inside the cluster's namespace when given); stops the benchmark if it fails."""
        command = python + [str(path)]
        done = cluster.run(command, cwd=ROOT, timeout=1800) if cluster else \
            subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=1800)
        if done.returncode != 0:
            raise SystemExit(f"probekit run {path} failed:\n{done.stdout}\n{done.stderr}")

    # fill the activation cache (untimed): every later run only probes
    probekit_run(write("warm", spec(work / "warm", cache, datasets, layers, "  - plugin: mean_diff\n", "[1]", "")))

    reason = SlurmCluster.skip_reason()
    cluster = None if reason else SlurmCluster(work / "slurm")
    names = list(EXECUTORS) if cluster else ["local", "processes"]
    seconds: dict[str, list[float]] = {name: [] for name in names}
    overhead: dict[str, list[float]] = {name: [] for name in names}
    try:
        if cluster:
            cluster.start()
        for repeat in range(repeats):
            for name in names:
                output = work / f"{name}-{repeat}"
                path = write(f"{name}-{repeat}", spec(output, cache, datasets, layers, selectors, ks,
                                                      EXECUTORS[name] + f"  pairs_per_unit: {PAIRS_PER_UNIT}\n"))
                probekit_run(path, cluster if name == "slurm" else None)
                wall = run_seconds(output)
                seconds[name].append(wall)
                units = json.loads((output / "run.json").read_text())["runs"][-1]["units"]
                overhead[name].append((WORKERS[name] * wall - compute_seconds(output)) / sum(units.values()))
        # growth with cells: the small sweep (one layer) against the full one timed above, local and processes
        growth = {}
        for name in ("local", "processes"):
            output = work / f"growth-{name}"
            probekit_run(write(f"growth-{name}", spec(output, cache, datasets, small_layers, selectors, ks,
                                                      EXECUTORS[name] + f"  pairs_per_unit: {PAIRS_PER_UNIT}\n")))
            growth[name] = (run_seconds(output), n_cells(output))
    finally:
        if cluster:
            cluster.stop()

    def summary(values: list[float], digits: int = 2) -> str:
        return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"

    first = work / f"{names[0]}-0"
    print(f"sweep: MiniLM, layers {layers}, {n_pairs(first)} (feature, layer) pairs, {n_cells(first)} cells "
          f"(mean_diff, l1_logreg, osp; ks {ks}), at most {PAIRS_PER_UNIT} pairs per probe unit; {repeats} "
          "repeat(s); activations cached")
    print("\n| executor | seconds, median (range) | speed-up over local | overhead per unit (s) |")
    print("|---|---|---|---|")
    for name in names:
        ratios = [local / other for local, other in zip(seconds["local"], seconds[name])]
        print(f"| {name} ({WORKERS[name]} worker{'s' if WORKERS[name] > 1 else ''}) | {summary(seconds[name])} | "
              f"{summary(ratios)}x | {summary(overhead[name])} |")
    if reason:
        print(f"\nslurm: skipped ({reason})")
    print("\n| executor | one layer: cells, s | all layers: cells, s (median) | cells ratio | time ratio |")
    print("|---|---|---|---|---|")
    for name, (small_s, small_cells) in growth.items():
        full_s = statistics.median(seconds[name])
        cells = n_cells(first)
        print(f"| {name} | {small_cells}, {small_s:.2f} | {cells}, {full_s:.2f} | {cells / small_cells:.1f}x | "
              f"{full_s / small_s:.1f}x |")


if __name__ == "__main__":
    main()
