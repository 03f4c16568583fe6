"""Extraction speed and memory: probekit's nnsight engine against a plain Hugging Face forward with hooks.

Model: a pythia-70m-shaped GPT-NeoX with random weights (hidden 512, 6 layers, 2048 neurons per layer, 50,304-token
vocabulary), built locally. Batches of 32 x 128 random tokens, 8 probed token sites per sequence, CPU.

Measured side by side in one run (the contenders alternate, their order rotating from repeat to repeat):
  1. probekit, all 6 layers        vs  the base model (no LM head) run in full, hooks gathering the same sites
  2. probekit, layer 1 only        vs  probekit, all 6 layers
  3. peak RSS of a cached extraction of N sequences (separate processes), for two dataset sizes

Each timed pass follows one untimed batch of the same contender, as in a real extraction, where batch follows batch
(right after another contender, the allocator's memory is shaped for that one's tensors). Ratios are the median
(and range) of the per-repeat ratios. Every repeat's seconds and minor page faults are printed too: a repeat whose
large temporary tensors fault in fresh pages runs up to about 15 % slower, whichever contender it is.

    .venv/bin/python benchmarks/bench_extraction.py             # the figures in docs/performance.md
    .venv/bin/python benchmarks/bench_extraction.py --quick     # smaller sizes, fewer repeats
    .venv/bin/python benchmarks/bench_extraction.py --smoke     # tiny sizes: checks that the benchmark runs (the tests)
    .venv/bin/python benchmarks/bench_extraction.py --profile   # also: where probekit's time goes (cProfile)
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from probekit.cache import ActivationCache, CacheKey
from probekit.contracts import ProbeSites, ProbingDataset
from probekit.extraction import iter_activation_batches
from probekit_plugins.models.pythia import Pythia

SITES_PER_SEQUENCE = 8


def build_model(directory: Path) -> None:
    """Save a pythia-70m-shaped random GPT-NeoX and a small byte-level BPE tokenizer to ``directory``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    config = GPTNeoXConfig(vocab_size=50304, hidden_size=512, num_hidden_layers=6, num_attention_heads=8,
                           intermediate_size=2048, rotary_pct=0.25, use_parallel_residual=True,
                           max_position_embeddings=2048)
    GPTNeoXForCausalLM(config).save_pretrained(directory)
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.train_from_iterator(["random tokens are fed directly"], trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>").save_pretrained(directory)


def random_dataset(n_sequences: int, length: int, seed: int = 0) -> ProbingDataset:
    rng = np.random.default_rng(seed)
    sequences = [rng.integers(0, 50304, length) for _ in range(n_sequences)]
    positions = np.sort(rng.integers(0, length, (n_sequences, SITES_PER_SEQUENCE)), axis=1).ravel()
    sequence = np.repeat(np.arange(n_sequences), SITES_PER_SEQUENCE)
    return ProbingDataset(sequences, ProbeSites(sequence, positions, positions + 1), [])


def time_probekit(adapter: Pythia, dataset: ProbingDataset, layers: list[int], batch_tokens: int) -> float:
    started = time.perf_counter()
    for _ in iter_activation_batches(adapter, dataset, layers, batch_tokens):
        pass
    return time.perf_counter() - started


def time_plain_hooks(adapter: Pythia, dataset: ProbingDataset, batch_size: int) -> float:
    """The base model (embeddings + 6 blocks + final norm, no LM head), hooks gathering the probed sites."""
    base = adapter.model.gpt_neox
    sites = dataset.sites
    gathered: list[torch.Tensor] = []
    current: dict[str, torch.Tensor] = {}
    hooks = [layer.mlp.act.register_forward_hook(
        lambda module, args, output: gathered.append(output[current["row"], current["position"]]))
        for layer in base.layers]
    started = time.perf_counter()
    with torch.inference_mode():
        for first in range(0, len(dataset.sequences), batch_size):
            ids = torch.as_tensor(np.stack(dataset.sequences[first : first + batch_size]))
            chosen = (sites.sequence >= first) & (sites.sequence < first + batch_size)
            current["row"] = torch.as_tensor(sites.sequence[chosen] - first)
            current["position"] = torch.as_tensor(sites.start[chosen])
            base(input_ids=ids, attention_mask=torch.ones_like(ids))
            gathered.clear()
    elapsed = time.perf_counter() - started
    for hook in hooks:
        hook.remove()
    return elapsed


def peak_rss_child(model_dir: str, n_sequences: int, length: int, batch_tokens: int) -> None:
    """In a fresh process: extract all layers of ``n_sequences`` into a cache; print peak RSS in MiB as JSON."""
    adapter = Pythia(Pythia.Params(name=model_dir))
    dataset = random_dataset(n_sequences, length, seed=1)
    layers = list(range(adapter.n_layers))
    with tempfile.TemporaryDirectory() as cache_dir:
        cache = ActivationCache(Path(cache_dir))
        keys = {layer: CacheKey(adapter.identity, dataset.activation_fingerprint, layer) for layer in layers}
        started = time.perf_counter()
        cache.store(keys, (len(dataset.sites), adapter.d_mlp),
                    iter_activation_batches(adapter, dataset, layers, batch_tokens))
        seconds = time.perf_counter() - started
        cached_bytes = cache.total_bytes()
    print(json.dumps({"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "seconds": seconds, "cached_mib": cached_bytes / 2**20}))


def measure(run: Callable[[], object]) -> tuple[float, int]:
    """Wall-clock seconds and minor page faults of ``run()``."""
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    started = time.perf_counter()
    run()
    return time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults


#: where a profiled Python function lives, by a folder in its file's path
CODE_GROUPS = (("/nnsight/", "nnsight"), ("/probekit/", "probekit"), ("/plugins/", "probekit"),
               ("/transformers/", "transformers model code"), ("/torch/", "torch Python code"))


def time_shares(run: Callable[[], object]) -> dict[str, float]:
    """Share of ``run()``'s time by where it is spent (cProfile's own time per function), largest first."""
    profile = cProfile.Profile()
    profile.runcall(run)
    shares: dict[str, float] = {}
    for (filename, _, function), (_, _, own, _, _) in pstats.Stats(profile).stats.items():  # type: ignore[attr-defined]
        if filename == "~":  # a built-in: torch's operators are its methods and functions
            where = "torch operators" if "torch" in function else "other built-ins"
        else:
            where = next((group for folder, group in CODE_GROUPS if folder in filename), "other Python")
        shares[where] = shares.get(where, 0.0) + own
    total = sum(shares.values())
    return {where: seconds / total for where, seconds in sorted(shares.items(), key=lambda item: -item[1])}


def spread(values: Sequence[float], digits: int = 2) -> str:
    """'median (min-max)'."""
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=128, help="sequences per timing repeat")
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32, help="sequences per batch")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the notes' reference: 1)")
    parser.add_argument("--rss-sizes", default="1000,10000", help="dataset sizes for the peak-RSS runs ('': none)")
    parser.add_argument("--rss-length", type=int, default=32, help="tokens per sequence in the peak-RSS runs")
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats (about a minute)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat: checks that it runs")
    parser.add_argument("--profile", action="store_true", help="also print where probekit's time goes (cProfile)")
    parser.add_argument("--rss-child", nargs=4, metavar=("MODEL", "N", "LENGTH", "BATCH_TOKENS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.rss_child:
        model_dir, n, length, batch_tokens = args.rss_child
        peak_rss_child(model_dir, int(n), int(length), int(batch_tokens))
        return
    if args.quick:
        args.sequences, args.repeats, args.rss_sizes = 64, 5, "100,400"
    if args.smoke:
        args.sequences, args.length, args.batch, args.repeats, args.rss_sizes = 8, 16, 4, 1, "20"

    with tempfile.TemporaryDirectory() as model_dir:
        build_model(Path(model_dir))
        adapter = Pythia(Pythia.Params(name=model_dir))
        dataset = random_dataset(args.sequences, args.length)
        batch_tokens = args.batch * args.length
        tokens = args.sequences * args.length
        one_batch = random_dataset(args.batch, args.length, seed=2)

        def contender(name: str, data: ProbingDataset) -> Callable[[], object]:
            if name == "plain":
                return lambda: time_plain_hooks(adapter, data, args.batch)
            return lambda: time_probekit(adapter, data, list(range(6)) if name == "all" else [1], batch_tokens)

        names = ["all", "plain", "layer1"]
        contenders = {name: contender(name, dataset) for name in names}
        warm_ups = {name: contender(name, one_batch) for name in names}
        for run in contenders.values():  # loads the weights, pays the first trace's overheads
            run()
        seconds: dict[str, list[float]] = {name: [] for name in contenders}
        faults: dict[str, list[int]] = {name: [] for name in contenders}
        for repeat in range(args.repeats):
            for name in names[repeat % 3 :] + names[: repeat % 3]:  # no contender always runs after the same one
                # one untimed batch first: the memory the previous contender left is shaped for its own tensors,
                # and a real extraction runs batch after batch of the same contender
                warm_ups[name]()
                elapsed, page_faults = measure(contenders[name])
                seconds[name].append(elapsed)
                faults[name].append(page_faults)
        rate = {name: [tokens / value for value in values] for name, values in seconds.items()}
        vs_plain = [all_ / plain for all_, plain in zip(rate["all"], rate["plain"])]
        layer1_vs_all = [layer1 / all_ for layer1, all_ in zip(rate["layer1"], rate["all"])]

        print(f"pythia-70m-shaped random GPT-NeoX, {args.sequences} x {args.length} tokens per repeat, batch "
              f"{args.batch}, {SITES_PER_SEQUENCE} sites per sequence, {args.threads} thread(s), "
              f"{args.repeats} repeats: median (min-max); minor page faults per repeat, median")
        print(f"  plain HF base model + hooks, all 6 layers : {spread(rate['plain'], 0):>18} tok/s   "
              f"{statistics.median(faults['plain']):8.0f} faults")
        print(f"  probekit (nnsight, stop after layer 5)    : {spread(rate['all'], 0):>18} tok/s   "
              f"{statistics.median(faults['all']):8.0f} faults   ratio {spread(vs_plain)} vs plain (target >= 0.95)")
        print(f"  probekit, layer 1 only                    : {spread(rate['layer1'], 0):>18} tok/s   "
              f"{statistics.median(faults['layer1']):8.0f} faults   {spread(layer1_vs_all)}x all layers "
              "(target >= 2.5)")
        print("  each repeat, seconds (thousand page faults):")
        for name, label in zip(names, ("probekit all", "plain", "layer 1")):
            print(f"    {label:12s} " + "  ".join(f"{value:.2f} ({count / 1000:.0f})"
                                                    for value, count in zip(seconds[name], faults[name])))

        if args.profile:
            shares = time_shares(contenders["all"])
            print("  where probekit's time goes (all layers, cProfile): "
                  + ", ".join(f"{where} {share:.1%}" for where, share in shares.items()))

        for n in (int(size) for size in args.rss_sizes.split(",") if size):
            child = subprocess.run(
                [sys.executable, __file__, "--threads", str(args.threads), "--rss-child", model_dir, str(n),
                 str(args.rss_length), str(batch_tokens)], capture_output=True, text=True, check=True)
            result = json.loads(child.stdout.strip().splitlines()[-1])
            print(f"  cached extraction of {n:6d} x {args.rss_length} tokens, all layers: peak RSS "
                  f"{result['peak_rss_mib']:6.0f} MiB, {result['cached_mib']:7.0f} MiB written to the cache, "
                  f"{result['seconds']:6.1f} s")


if __name__ == "__main__":
    main()
