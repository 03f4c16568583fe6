"""What the HTML report of a large run costs, against a small one, measured side by side in one process: seconds to
read the run's result table, seconds to build report.html, the page's size, and headless Chromium's time to load it
and take a full-page screenshot.

    .venv/bin/python benchmarks/bench_report.py              # 1,000 features x 32 layers against 20 x 6 (a few minutes)
    .venv/bin/python benchmarks/bench_report.py --smoke      # tiny sizes: checks that it runs (well under 30 s)
    .venv/bin/python benchmarks/bench_report.py --profile    # also: where the large page's build time goes (cProfile)

The runs are synthetic result tables (no model is loaded): one model (pythia-6.9b's shape: 32 layers of 16,384
neurons), one dataset, one selector (mean_diff), ks 1-8 and the random_neurons control, so the large run has 1,000 x
32 x 8 = 256,000 probe rows and as many control rows. F1 is realistic in shape: each feature has a quality and a best
layer, F1 falls off away from that layer and rises with k, with noise; the random-neuron control stays low; precision
and recall are consistent with F1, the bootstrap interval a few points wide. The rows (RESULT_SCHEMA) are written as a
few Parquet parts under results/ with a complete run.json (``RunManifest``); the spec has no activation cache, so
the histograms section lists the features it cannot draw, as a real run whose cache was deleted does.

Each repeat reads the results (``RunDirectory.read_results``), builds the page (``probekit.html_report.html_report``)
and, where ``chromium`` is on PATH, opens it from file:// in a fresh page of one headless Chromium and takes a full-page
screenshot; the large and the small run alternate, after one untimed build and load of the small page (imports, font
cache, the browser's first page). Times are the median over the repeats, their range in brackets; the last row is
large / small of each median.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from probekit.html_report import html_report
from probekit.manifest import RunManifest
from probekit.results import RESULT_SCHEMA, RunDirectory

MODEL, DATASET, SELECTOR, D_MLP = "pythia-6.9b", "text_features", "mean_diff", 16_384
PARTS = 8


@dataclass(frozen=True)
class Size:
    name: str
    features: int
    layers: int
    ks: list[int]

    @property
    def label(self) -> str:
        return f"{self.name}: {self.features:,} features x {self.layers} layers x ks {self.ks[0]}-{self.ks[-1]}"


def _lists(lengths: np.ndarray, values: list[Any] | np.ndarray, kind: pa.DataType) -> pa.ListArray:
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values, kind))


def synthetic_table(size: Size, seed: int = 0) -> pa.Table:
    """Every probe row and random-neuron control row of a run of ``size``, in RESULT_SCHEMA."""
    rng = np.random.default_rng(seed)
    features = np.array([f"feature_{i:04d}" for i in range(size.features)])
    ks = np.array(size.ks)
    # one row per (feature, layer, k, control): control 0 = the probe, 1 = random neurons
    f, layer, k, control = (a.ravel() for a in np.meshgrid(np.arange(size.features), np.arange(size.layers), ks,
                                                           [0, 1], indexing="ij"))
    n = f.size
    quality = rng.beta(4, 2, size.features) * 0.65 + 0.3  # F1 of the feature at its best layer and the largest k
    best_layer = rng.uniform(0, size.layers - 1, size.features)
    width = max(size.layers / 4, 1.0)
    near = np.exp(-0.5 * ((layer - best_layer[f]) / width) ** 2)
    rises = 1 - 0.45 * np.exp(-(k - 1) / 2.5)
    probe_f1 = quality[f] * (0.45 + 0.55 * near) * rises + rng.normal(0, 0.02, n)
    random_f1 = 0.12 + 0.02 * k + 0.1 * quality[f] * near + rng.normal(0, 0.03, n)
    f1 = np.clip(np.where(control == 0, probe_f1, random_f1), 0.0, 1.0)
    precision = np.clip(f1 * np.exp(rng.normal(0, 0.15, n)), f1 / 1.9 + 1e-9, 1.0)
    recall = f1 * precision / np.maximum(2 * precision - f1, 1e-9)
    over = recall > 1
    recall[over], precision[over] = 1.0, f1[over] / (2 - f1[over])
    half = rng.uniform(0.02, 0.08, n)
    n_train, n_test = 1_400, 600
    positive_rate = rng.uniform(0.05, 0.5, size.features)[f]

    neuron_indices = rng.integers(0, D_MLP, int(k.sum()))
    owner = np.repeat(layer, k)
    neurons = [f"L{a}.N{b}" for a, b in zip(owner.tolist(), neuron_indices.tolist())]
    probe = control == 0
    score_lengths = np.where(probe, k, 0)
    ids = rng.bytes(10 * n).hex()
    columns = {
        "spec_fingerprint": pa.array(["3f1c9a7be0d24c61"] * n),
        "cell_id": pa.array([ids[i * 20:(i + 1) * 20] for i in range(n)]),
        "model": pa.array([MODEL] * n),
        "model_identity": pa.array([f"EleutherAI/{MODEL}@main float32"] * n),
        "dataset": pa.array([DATASET] * n),
        "dataset_fingerprint": pa.array(["a41d07c2e95f3b18"] * n),
        "feature": pa.array(features[f]),
        "layer": pa.array(layer, pa.int32()),
        "selector": pa.array(np.where(probe, SELECTOR, "")),
        "k": pa.array(k, pa.int32()),
        "control": pa.array(np.where(probe, "", "random_neurons")),
        "neurons": _lists(k, neurons, pa.string()),
        "neuron_indices": _lists(k, neuron_indices, pa.int64()),
        "coefficients": _lists(k, rng.normal(0, 1.5, int(k.sum())), pa.float64()),
        "intercept": pa.array(rng.normal(-1, 0.5, n)),
        "f1": pa.array(f1),
        "f1_low": pa.array(np.clip(f1 - half, 0, 1)),
        "f1_high": pa.array(np.clip(f1 + half, 0, 1)),
        "selectivity_shuffled": pa.nulls(n, pa.float64()),
        "selectivity_random": pa.nulls(n, pa.float64()),  # RunDirectory.read_results fills it in
        "precision": pa.array(precision),
        "recall": pa.array(recall),
        "mcc": pa.array(np.clip(f1 * 0.95 - 0.1 + rng.normal(0, 0.02, n), -1, 1)),
        "accuracy": pa.array(np.clip(1 - positive_rate * (1 - f1) * 1.2, 0, 1)),
        "balanced_accuracy": pa.array(np.clip(0.5 + 0.5 * f1 + rng.normal(0, 0.01, n), 0, 1)),
        "roc_auc": pa.array(np.clip(0.5 + 0.5 * f1 ** 0.7 + rng.normal(0, 0.01, n), 0, 1)),
        "n_train": pa.array(np.full(n, n_train)),
        "n_test": pa.array(np.full(n, n_test)),
        "n_train_positive": pa.array((positive_rate * n_train).astype(np.int64)),
        "n_test_positive": pa.array((positive_rate * n_test).astype(np.int64)),
        "n_train_groups": pa.array(np.full(n, 280)),
        "n_test_groups": pa.array(np.full(n, 120)),
        "prefilter_size": pa.array(np.where(probe, 1024, D_MLP)),
        "select_seconds": pa.array(np.where(probe, rng.uniform(0.001, 0.004, n), 0.0)),
        "fit_seconds": pa.array(rng.uniform(0.004, 0.03, n)),
        "selection_scores": pa.ListArray.from_arrays(
            pa.array(np.concatenate([[0], np.cumsum(score_lengths)]).astype(np.int32)),
            pa.array(np.sort(rng.exponential(0.5, int(score_lengths.sum())))[::-1].copy()),
            mask=pa.array(~probe)),
        "selector_details": pa.array(["{}"] * n),
    }
    return pa.table(columns, schema=RESULT_SCHEMA)


def spec_of(size: Size, output: Path) -> dict[str, Any]:
    """The normalised spec of such a run (every default filled in, as run.json records it)."""
    return {
        "name": f"bench-report-{size.name}", "output": str(output), "cache": None,
        "models": [{"plugin": "pythia", "label": MODEL, "params": {
            "name": f"EleutherAI/{MODEL}", "revision": None, "dtype": "float32", "device": "cpu",
            "trust_remote_code": False}}],
        "datasets": [{"plugin": DATASET, "label": None, "params": {
            "max_sequences": 4000, "sequence_length": 128, "max_examples": 2000, "min_positive_rate": 0.02,
            "positive_fraction": [0.2, 0.5], "seed": 0, "skip_first": 10, "source": {"kind": "stdlib"},
            "windows_per_document": 4, "features": [f"feature_{i:04d}" for i in range(size.features)]}}],
        "selectors": [{"plugin": SELECTOR, "label": None, "params": {}}],
        "layers": list(range(size.layers)), "ks": size.ks, "controls": ["random_neurons"],
        "prefilter": 1024, "min_per_class": 5, "on_bad_feature": "skip",
        "probe": {"C": 1.0, "max_iter": 1000}, "split": {"by": "group", "seed": 42, "test_fraction": 0.3},
        "extraction": {"batch_tokens": 4096},
        "executor": {"plugin": "local", "params": {}, "max_retries": 1, "pairs_per_unit": 32},
    }


def write_run(size: Size, path: Path) -> RunDirectory:
    """A complete run directory of ``size``: results/part-*.parquet (a few parts, page checksums on, as a sweep
    writes them) and run.json."""
    directory = RunDirectory(path)
    directory.results_dir.mkdir(parents=True)
    table = synthetic_table(size)
    step = -(-table.num_rows // PARTS)
    for index, start in enumerate(range(0, table.num_rows, step)):
        pq.write_table(table.slice(start, step), directory.results_dir / f"part-{index:03d}.parquet",
                       write_page_checksum=True)
    manifest = RunManifest.new(spec_of(size, path), "3f1c9a7be0d24c61", f"bench-{size.name}.yaml")
    manifest.start_run(f"bench-{size.name}.yaml")
    manifest.mark_completed(MODEL, DATASET)
    manifest.finish_run()
    directory.write_manifest(manifest)
    return directory


def browser() -> AbstractContextManager[Any]:
    """One headless Chromium (the system's: playwright never downloads one), or None without ``chromium``."""
    chromium = shutil.which("chromium")
    if chromium is None:
        return nullcontext(None)
    from contextlib import contextmanager

    from playwright.sync_api import sync_playwright

    @contextmanager
    def launched() -> Any:
        with sync_playwright() as playwright:
            opened = playwright.chromium.launch(executable_path=chromium,
                                                args=["--no-sandbox"] if os.geteuid() == 0 else [])
            try:
                yield opened
            finally:
                opened.close()

    return launched()


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def load_and_screenshot(chromium: Any, page_path: Path) -> tuple[int, int]:
    """Open the page in a fresh context, wait for it to load, take a full-page screenshot; (its height, PNG bytes)."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(page_path.as_uri(), wait_until="load", timeout=300_000)
        shot = page.screenshot(full_page=True, type="png", timeout=300_000)
        return page.evaluate("document.documentElement.scrollHeight"), len(shot)
    finally:
        context.close()


@dataclass
class Measured:
    rows: int = 0
    read: list[float] | None = None
    build: list[float] | None = None
    browse: list[float] | None = None
    page_bytes: int = 0
    page_height: int = 0
    screenshot_bytes: int = 0


def summary(values: list[float] | None) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def ratio(large: list[float] | None, small: list[float] | None) -> str:
    if not large or not small:
        return "-"
    return f"{statistics.median(large) / statistics.median(small):.0f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat")
    parser.add_argument("--repeats", type=int, default=None, help="repeats (default 3; 1 with --smoke)")
    parser.add_argument("--profile", action="store_true", help="cProfile one build of the large page")
    args = parser.parse_args()
    if args.smoke:
        sizes = [Size("large", 40, 4, [1, 2, 3]), Size("small", 5, 2, [1, 2, 3])]
    else:
        sizes = [Size("large", 1_000, 32, list(range(1, 9))), Size("small", 20, 6, list(range(1, 9)))]
    repeats = args.repeats or (1 if args.smoke else 3)

    with tempfile.TemporaryDirectory(prefix="probekit-bench-report-") as scratch, browser() as chromium:
        runs = {}
        for size in sizes:
            seconds, directory = timed(lambda size=size: write_run(size, Path(scratch) / size.name))
            print(f"wrote {size.label} in {seconds:.1f} s: "
                  f"{sum(p.stat().st_size for p in directory.results_dir.iterdir()) / 1e6:.1f} MB of Parquet",
                  flush=True)
            runs[size.name] = directory
        warm = runs[sizes[-1].name]  # one untimed build and load first: imports, font cache, the browser's start
        (warm.path / "report.html").write_text(html_report(warm.path, warm.read_manifest(), warm.read_results()))
        if chromium is not None:
            load_and_screenshot(chromium, warm.path / "report.html")
        measured = {size.name: Measured(read=[], build=[], browse=[] if chromium else None) for size in sizes}
        for repeat in range(repeats):
            for size in sizes if repeat % 2 == 0 else sizes[::-1]:
                directory, out = runs[size.name], measured[size.name]
                seconds, table = timed(directory.read_results)
                out.read.append(seconds)
                out.rows = table.num_rows
                manifest = directory.read_manifest()
                seconds, page = timed(lambda: html_report(directory.path, manifest, table))  # noqa: B023
                out.build.append(seconds)
                encoded = page.encode()
                out.page_bytes = len(encoded)
                (directory.path / "report.html").write_bytes(encoded)
                if chromium is not None:
                    seconds, (out.page_height, out.screenshot_bytes) = timed(
                        lambda: load_and_screenshot(chromium, directory.path / "report.html"))  # noqa: B023
                    out.browse.append(seconds)
                print(f"repeat {repeat + 1}/{repeats} {size.name} done", flush=True)

        large, small = (measured[size.name] for size in sizes)
        print()
        print(f"### HTML report: large run against small run ({repeats} repeat{'s' * (repeats > 1)}, median (range))")
        print()
        print("| run | result rows | read results (s) | build report.html (s) | page size | "
              "Chromium load + full-page screenshot (s) | page height | screenshot |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for size in sizes:
            out = measured[size.name]
            browse = summary(out.browse) if chromium else "- (no chromium on PATH)"
            print(f"| {size.label} | {out.rows:,} | {summary(out.read)} | {summary(out.build)} | "
                  f"{out.page_bytes / 1e6:.2f} MB | {browse} | "
                  f"{f'{out.page_height:,} px' if chromium else '-'} | "
                  f"{f'{out.screenshot_bytes / 1e6:.1f} MB' if chromium else '-'} |")
        print(f"| large / small | {large.rows / small.rows:.0f}x | {ratio(large.read, small.read)} | "
              f"{ratio(large.build, small.build)} | {large.page_bytes / small.page_bytes:.1f}x | "
              f"{ratio(large.browse, small.browse)} | "
              f"{f'{large.page_height / small.page_height:.1f}x' if chromium else '-'} | "
              f"{f'{large.screenshot_bytes / small.screenshot_bytes:.1f}x' if chromium else '-'} |")

        if args.profile:
            directory = runs[sizes[0].name]
            table, manifest = directory.read_results(), directory.read_manifest()
            profiler = cProfile.Profile()
            profiler.runcall(html_report, directory.path, manifest, table)
            stream = io.StringIO()
            pstats.Stats(profiler, stream=stream).sort_stats("cumulative").print_stats(30)
            print()
            print(f"### where the build of the {sizes[0].name} page goes (cProfile, cumulative)")
            print()
            print("```")
            print("\n".join(line.rstrip() for line in stream.getvalue().splitlines() if line.strip()))
            print("```")


if __name__ == "__main__":
    main()
