"""What verifying the activation cache costs: reading an entry through ``ActivationCache.load`` (a memory map whose
xxh3-128 checksum is computed before it is handed out) against a bare ``numpy.load`` memory map, each followed by the
same use of every row (the column means over all sites, as a probe's prefilter reads them).

Measured side by side in one run, alternating the contenders, files warm in the page cache (the common case for a
cached re-run; a cold read costs the same disk time either way):

    python benchmarks/bench_cache.py            # 50 MB and 1 GB entries (the figures in docs/performance.md)
    python benchmarks/bench_cache.py --quick    # a smoke run in a few seconds
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from probekit.cache import ActivationCache, CacheKey, array_checksum

D_MLP = 1536  # MiniLM's neurons per layer


def build_entry(cache: ActivationCache, n_sites: int, seed: int) -> tuple[CacheKey, tuple[int, int]]:
    shape = (n_sites, D_MLP)
    key = CacheKey("benchmark-model", f"sites-{n_sites}", seed)
    rng = np.random.default_rng(seed)
    batches = ((np.arange(start, min(start + 4096, n_sites)),
                {seed: rng.standard_normal((min(4096, n_sites - start), D_MLP), dtype=np.float32)})
               for start in range(0, n_sites, 4096))
    cache.store({seed: key}, shape, batches)
    return key, shape


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def measure(cache: ActivationCache, key: CacheKey, shape: tuple[int, int], repeats: int) -> list[float]:
    """Ratios (verified load + use) / (bare load + use), the contenders alternating."""
    path = cache.root / f"{key.digest}.npy"

    def verified() -> None:
        cache.load(key, shape).mean(axis=0, dtype=np.float64)

    def bare() -> None:
        np.load(path, mmap_mode="r").mean(axis=0, dtype=np.float64)

    bare(), verified()  # warm the page cache
    ratios = []
    for _ in range(repeats):
        plain = timed(bare)
        ratios.append(timed(verified) / plain)
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one small entry, three repeats")
    args = parser.parse_args()
    sizes = [2_000] if args.quick else [8_000, 160_000]  # 12 MB; 49 MB (a quickstart layer is ~50 MB) and 1 GB
    repeats = 3 if args.quick else 9
    print(f"{'entry':>10}  {'verified / bare load, then a full read':>40}  {'checksum speed':>14}")
    with tempfile.TemporaryDirectory(prefix="probekit-bench-cache-") as directory:
        cache = ActivationCache(Path(directory))
        for index, n_sites in enumerate(sizes):
            key, shape = build_entry(cache, n_sites, index)
            ratios = measure(cache, key, shape, repeats)
            megabytes = n_sites * D_MLP * 4 / 1e6
            path = cache.root / f"{key.digest}.npy"
            values = np.load(path, mmap_mode="r")
            seconds = min(timed(lambda: array_checksum(values)) for _ in range(3))
            middle, low, high = statistics.median(ratios), min(ratios), max(ratios)
            print(f"{megabytes:>7.0f} MB  {middle:>21.2f} (range {low:.2f}-{high:.2f})"
                  f"  {megabytes / 1000 / seconds:>9.1f} GB/s")


if __name__ == "__main__":
    main()
