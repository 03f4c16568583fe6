"""Benchmark of every neuron selector: runtime per (feature, layer) and test F1 for k = 1..8, the paper's Table 4
beside it, OSP certificates at the paper's settings and with weak regularisation, and OSP against abess.

    .venv/bin/python benchmarks/bench_selectors.py            # full run (about 5 minutes on a 2-core machine)
    .venv/bin/python benchmarks/bench_selectors.py --quick    # smaller sizes and time limits (about 1-2 minutes)
    .venv/bin/python benchmarks/bench_selectors.py --smoke    # tiny sizes: checks that the benchmark runs (the tests)

Data: activation-shaped synthetic sets (GELU of correlated pre-activations, 1,024 prefiltered neurons, a planted
sparse signal of 4 neurons with one redundant noisy copy each, strong and weak signal; n = 2,000 and 8,000 train
rows) and real all-MiniLM-L6-v2 activations on the paper's text features (through probekit's MiniLM adapter and
extraction). Every figure is measured in the run that prints it. `pip install -e ".[bench]"` adds abess.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from probekit.contracts import Selector
from probekit.probing import fit_and_evaluate, mean_difference, stratified_split, top_k
from probekit_plugins.selectors.adaptive_threshold import AdaptiveThreshold
from probekit_plugins.selectors.f_statistic import FStatistic
from probekit_plugins.selectors.hinge_svm import solve_hinge_svm
from probekit_plugins.selectors.l1_logistic import L1Logistic
from probekit_plugins.selectors.mean_diff import MeanDifference
from probekit_plugins.selectors.mutual_info import MutualInformation
from probekit_plugins.selectors.osp import OptimalSparseProbe, class_weights, feature_scale
from probekit_plugins.selectors.random_neurons import RandomNeurons

KS = list(range(1, 9))
#: label shifts of the planted neurons' pre-activations: strength x (1.5 .. 0.6)
STRONG, WEAK = 2.5, 1.2
#: Gurnee et al. 2023, Table 4: mean test F1 for k = 1..8 and runtime per trial (s)
PAPER_TABLE4 = {
    "random": ([0.573, 0.629, 0.663, 0.690, 0.712, 0.729, 0.743, 0.755], 0.257),
    "mean_diff": ([0.832, 0.857, 0.867, 0.874, 0.880, 0.884, 0.887, 0.890], 0.292),
    "f_stat": ([0.832, 0.856, 0.867, 0.874, 0.880, 0.884, 0.887, 0.890], 0.303),
    "l1_logreg": ([0.818, 0.853, 0.871, 0.882, 0.890, 0.897, 0.902, 0.906], 7.796),
    "mutual_info": ([0.831, 0.851, 0.863, 0.869, 0.876, 0.880, 0.884, 0.886], 32.241),
    "osp": ([0.831, 0.861, 0.876, 0.884, 0.891, 0.896, 0.899, 0.902], 53.028),
}


@dataclass
class Task:
    """One (feature, layer): train rows (the prefiltered candidates) and test rows."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray


def gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(0.7978845608 * (x + 0.044715 * x**3)))


def synthetic_task(n_train: int, d: int, strength: float, seed: int) -> Task:
    """GELU activations of correlated pre-activations; 4 planted neurons shift with the label (strength x
    1.5 .. 0.6), each with a redundant noisy copy (a correlated distractor); 25 % positives."""
    rng = np.random.default_rng(seed)
    n = int(round(n_train / 0.7))
    y = rng.random(n) < 0.25
    factors = rng.standard_normal((n, 32))
    loadings = rng.standard_normal((32, d)) * (rng.random(d) < 0.1) * 0.8
    pre = rng.standard_normal((n, d)) + factors @ loadings - rng.uniform(0.5, 2.0, d)
    signal = rng.choice(d, 4, replace=False)
    pre[:, signal] += np.outer(y, strength * np.linspace(1.5, 0.6, 4))
    others = np.setdiff1d(np.arange(d), signal)
    for j, decoy in zip(signal, rng.choice(others, 4, replace=False)):
        pre[:, decoy] = 0.7 * pre[:, j] + 0.7 * rng.standard_normal(n) - 0.5
    X = gelu(pre).astype(np.float32)
    train, test = stratified_split(y, 0.3, seed)
    label = "strong" if strength >= STRONG else "weak"
    return Task(f"synthetic n={n_train} {label}", X[train], y[train], X[test], y[test])


def minilm_tasks(layer: int, max_sequences: int, max_examples: int, prefilter: int) -> list[Task]:
    """Real all-MiniLM-L6-v2 activations at one layer on the paper's text features (stdlib text)."""
    from probekit.extraction import extract_activations
    from probekit_plugins.datasets.text_features import TextFeatures
    from probekit_plugins.models.huggingface import MiniLM

    model = MiniLM(MiniLM.Params())
    dataset = TextFeatures(TextFeatures.Params(max_sequences=max_sequences, max_examples=max_examples)).build(
        model.tokenizer)
    activations = extract_activations(model, dataset, [layer])[layer]
    tasks = []
    for feature in dataset.features:
        y = feature.labels
        if min(int(y.sum()), int((~y).sum())) < 20:
            continue
        X = activations[feature.sites]
        train, test = stratified_split(y, 0.3, 42)
        candidates = top_k(mean_difference(X[train], y[train]), min(prefilter, X.shape[1]))
        tasks.append(Task(f"MiniLM L{layer} {feature.name}", X[train][:, candidates], y[train],
                          X[test][:, candidates], y[test]))
    return tasks


def methods(osp_time_limit: float) -> dict[str, Callable[[], Selector]]:
    return {
        "random": lambda: RandomNeurons(),
        "mean_diff": lambda: MeanDifference(),
        "f_stat": lambda: FStatistic(),
        "mutual_info": lambda: MutualInformation(),
        "l1_logreg": lambda: L1Logistic(),
        "adaptive_threshold": lambda: AdaptiveThreshold(),
        "osp": lambda: OptimalSparseProbe(OptimalSparseProbe.Params(time_limit=osp_time_limit)),
    }


def run_methods(tasks: Sequence[Task], factories: dict[str, Callable[[], Selector]]) -> dict[str, dict]:
    """Per method: runtime of select() for all ks (per task) and test F1 of the retrained probe per k."""
    results: dict[str, dict] = {name: {"seconds": [], "f1": {k: [] for k in KS}, "osp": []} for name in factories}
    for task in tasks:
        for name, factory in factories.items():
            started = time.perf_counter()
            selections = factory().select(task.X_train, task.y_train, KS)
            results[name]["seconds"].append(time.perf_counter() - started)
            with threadpool_limits(limits=1, user_api="blas"):
                for k in KS:
                    chosen = np.asarray(selections[k].neurons)
                    fit = fit_and_evaluate(task.X_train[:, chosen], task.y_train, task.X_test[:, chosen],
                                           task.y_test, 1.0, 1000)
                    results[name]["f1"][k].append(fit.metrics["f1"])
            if name == "osp":
                results[name]["osp"].append({k: selections[k].details for k in KS})
    return results


def print_method_table(title: str, results: dict[str, dict]) -> None:
    print(f"\n### {title}\n")
    print("| method | " + " | ".join(f"F1 k={k}" for k in KS) + " | runtime s (max) | paper F1 k=1/8 | paper s |")
    print("|---|" + "---|" * (len(KS) + 3))
    for name, result in results.items():
        f1 = " | ".join(f"{np.mean(result['f1'][k]):.3f}" for k in KS)
        seconds = f"{np.mean(result['seconds']):.3f} ({np.max(result['seconds']):.3f})"
        paper_f1, paper_s = PAPER_TABLE4.get(name, (None, None))
        paper = f"{paper_f1[0]:.3f} / {paper_f1[-1]:.3f}" if paper_f1 else "-"
        print(f"| {name} | {f1} | {seconds} | {paper} | {paper_s if paper_s else '-'} |")


def print_certificates(title: str, details: dict[int, dict]) -> None:
    print(f"\n### {title}\n")
    print("| k | status | objective | lower bound | gap | cuts | master solves | supports solved | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k, d in details.items():
        print(f"| {k} | {d['status']} | {d['objective']:.4f} | {d['lower_bound']:.4f} | {d['gap']:.1e} | "
              f"{d['cuts']} | {d['master_solves']} | {d['supports_evaluated']} | {d['seconds']:.2f} |")
    seconds = [d["seconds"] for d in details.values()]
    proved = [k for k, d in details.items() if d["status"] == "optimal"]
    print(f"\nproved optimal (gap <= 1e-4): k = {proved}; median {statistics.median(seconds):.2f} s per k, "
          f"max {max(seconds):.2f} s, total {sum(seconds):.1f} s")


def svm_objective(X: np.ndarray, y: np.ndarray, support: Sequence[int], gamma: float) -> float:
    """The OSP objective (balanced hinge loss + ||w||^2 / (2 gamma)) of one support, solved exactly."""
    labels = np.where(y, 1.0, -1.0)
    return solve_hinge_svm(np.ascontiguousarray(X[:, list(support)], dtype=np.float64), labels,
                           class_weights(y, "balanced"), gamma).primal


def compare_with_abess(task: Task, params: OptimalSparseProbe.Params, osp: dict[int, dict], label: str) -> None:
    """abess (splicing best-subset, logistic loss) on OSP's 50 candidates: SVM objective of its support."""
    try:
        from abess.linear import LogisticRegression as AbessLogistic
    except ImportError:
        print(f"\n### OSP vs abess ({label})\n\nabess is not installed (pip install -e '.[bench]'); skipped.")
        return
    y = task.y_train
    columns = top_k(mean_difference(task.X_train, y), min(params.candidates, task.X_train.shape[1]))
    X = task.X_train[:, columns].astype(np.float64)
    X = X / feature_scale(X, params.scaling)
    gamma = params.gamma or 1.0 / np.sqrt(len(y))
    print(f"\n### OSP vs abess ({label})\n")
    print("| k | OSP objective (status) | abess support's objective | abess / OSP objective | OSP s | abess s |")
    print("|---|---|---|---|---|---|")
    ratios = []
    for k in KS:
        started = time.perf_counter()
        model = AbessLogistic(support_size=[k], thread=1)
        model.fit(X, y.astype(float), sample_weight=class_weights(y, "balanced"))
        abess_seconds = time.perf_counter() - started
        support = np.flatnonzero(model.coef_)
        objective = svm_objective(X, y, support, gamma) if len(support) == k else float("nan")
        d = osp[k]
        ratio = objective / d["objective"]
        ratios.append((d["seconds"] / abess_seconds, ratio))
        print(f"| {k} | {d['objective']:.4f} ({d['status']}) | {objective:.4f} | {ratio:.5f} | "
              f"{d['seconds']:.2f} | {abess_seconds:.3f} |")
    print(f"\nOSP/abess runtime ratio: median {statistics.median(r for r, _ in ratios):.1f}x; abess's objective is "
          f"worse than OSP's for {sum(o > 1 + 1e-9 for _, o in ratios)} of {len(KS)} ks, never better: "
          f"{all(o >= 1 - 1e-9 for _, o in ratios)}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and time limits (1-2 minutes)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and time limits: checks that it runs")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="train rows of the synthetic sets")
    parser.add_argument("--neurons", type=int, default=1024, help="prefiltered neurons (synthetic sets and MiniLM)")
    parser.add_argument("--osp-time-limit", type=float, default=None, help="OSP seconds per k (default 60)")
    parser.add_argument("--weak-time-limit", type=float, default=None, help="OSP seconds per k, weak regime")
    parser.add_argument("--minilm-sequences", type=int, default=None, help="MiniLM text sequences (0: skip)")
    parser.add_argument("--minilm-layer", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.smoke:
        args.sizes = args.sizes or [300]
        args.neurons, args.osp_time_limit, args.weak_time_limit = 64, 0.2, 0.2
        args.minilm_sequences = 20 if args.minilm_sequences is None else args.minilm_sequences
    sizes = args.sizes or ([2000] if args.quick else [2000, 8000])
    osp_limit = args.osp_time_limit or (10.0 if args.quick else 60.0)
    weak_limit = args.weak_time_limit or (5.0 if args.quick else 60.0)
    sequences = args.minilm_sequences if args.minilm_sequences is not None else (60 if args.quick else 400)
    print(f"# selectors benchmark: {' '.join(sys.argv)}")
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}; synthetic sizes {sizes}, d = {args.neurons}")

    factories = methods(osp_limit)
    largest = None
    for n in sizes:
        for strength in (STRONG, WEAK):
            task = synthetic_task(n, args.neurons, strength, args.seed)
            print_method_table(f"{task.name}, d = {args.neurons}", run_methods([task], factories))
            if strength == STRONG:
                largest = task
    if sequences:
        tasks = minilm_tasks(args.minilm_layer, sequences, 4000, args.neurons)
        sizes_real = sorted(len(t.y_train) for t in tasks)
        real = run_methods(tasks, factories)
        print_method_table(f"MiniLM layer {args.minilm_layer}: mean over {len(tasks)} text features "
                           f"(train rows {sizes_real[0]}-{sizes_real[-1]}, {tasks[0].X_train.shape[1]} candidates)",
                           real)
        cells = [d for per_task in real["osp"]["osp"] for d in per_task.values()]
        seconds = [d["seconds"] for d in cells]
        print(f"\nOSP on MiniLM (default settings): {sum(d['status'] == 'optimal' for d in cells)} of {len(cells)} "
              f"(feature, k) cells proved optimal; median {statistics.median(seconds):.2f} s per k, "
              f"max {max(seconds):.2f} s, largest gap {max(d['gap'] for d in cells):.1e}")
    else:
        print("\nMiniLM activations: skipped (--minilm-sequences 0).")

    assert largest is not None
    default = OptimalSparseProbe.Params(time_limit=osp_limit)
    osp = {k: s.details for k, s in OptimalSparseProbe(default).select(largest.X_train, largest.y_train, KS).items()}
    print_certificates(f"OSP at the paper's settings ({largest.name}, 50 candidates, time limit {osp_limit:g} s)",
                       osp)
    compare_with_abess(largest, default, osp, f"paper settings, {largest.name}")

    weak_task = synthetic_task(min(sizes) if args.smoke else 2000, args.neurons, STRONG, args.seed)
    n = len(weak_task.y_train)
    weak = OptimalSparseProbe.Params(gamma=100 / np.sqrt(n), scaling="standardize", time_limit=weak_limit)
    certificates = {k: s.details for k, s in OptimalSparseProbe(weak).select(
        weak_task.X_train, weak_task.y_train, KS).items()}
    print_certificates(f"OSP with weak regularisation (gamma = 100/sqrt(n), unit-variance features, "
                       f"{weak_task.name}, time limit {weak_limit:g} s)", certificates)
    compare_with_abess(weak_task, weak, certificates, f"weak regularisation, {weak_task.name}")


if __name__ == "__main__":
    main()
