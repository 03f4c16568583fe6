"""The activation cache: hits, misses on every key part, damaged entries, plain numpy files, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from probekit.cache import ActivationCache, CacheKey
from probekit.cli import app
from probekit.contracts import ProbeSites, ProbingDataset
from probekit.extraction import extract_activations, iter_activation_batches
from probekit.registry import PluginRegistry
from probekit.spec import validate_spec_text
from probekit.sweep import run_sweep
from probekit_plugins.models.huggingface import HuggingFaceModel
from probekit_plugins.models.pythia import Pythia


@pytest.fixture(scope="module")
def pythia(tiny_neox_dir: Path) -> Pythia:
    return Pythia(Pythia.Params(name=str(tiny_neox_dir)))


@pytest.fixture(scope="module")
def dataset(pythia) -> ProbingDataset:
    texts = ["one two three four five six seven", "eight nine ten", "a longer sentence with many more words in it"]
    sequences = [np.asarray(pythia.tokenizer(t)["input_ids"]) for t in texts]
    return ProbingDataset(sequences, ProbeSites([2, 0, 1, 2, 0], [5, 1, 0, 1, 3], [6, 2, 1, 2, 4]), [])


def store(cache: ActivationCache, adapter, dataset, layers) -> dict[int, CacheKey]:
    keys = {layer: CacheKey(adapter.identity, dataset.activation_fingerprint, layer) for layer in layers}
    cache.store(keys, (len(dataset.sites), adapter.d_mlp), iter_activation_batches(adapter, dataset, layers, 8))
    return keys


def test_round_trip_is_a_plain_numpy_file(tmp_path: Path, pythia, dataset) -> None:
    cache = ActivationCache(tmp_path / "cache")
    keys = store(cache, pythia, dataset, [0, 2])  # batches of 8 tokens: several batches, rows out of order
    expected = extract_activations(pythia, dataset, [0, 2], batch_tokens=1000)
    for layer, key in keys.items():
        path = tmp_path / "cache" / f"{key.digest}.npy"
        with path.open("rb") as handle:
            assert np.lib.format.read_magic(handle) == (1, 0)
        plain = np.load(path, allow_pickle=False)  # readable without probekit, never a pickle
        np.testing.assert_allclose(plain, expected[layer], atol=1e-5)
        np.testing.assert_array_equal(cache.load(key, plain.shape), plain)
    assert not list((tmp_path / "cache").glob(".partial*"))


def test_every_key_part_makes_a_miss(tmp_path: Path, pythia, dataset) -> None:
    cache = ActivationCache(tmp_path)
    key = store(cache, pythia, dataset, [1])[1]
    shape = (len(dataset.sites), pythia.d_mlp)
    assert cache.load(key, shape) is not None
    other_sites = ProbingDataset(dataset.sequences, ProbeSites([0], [1], [2]), []).activation_fingerprint
    for changed in (CacheKey(key.model.replace(":float32", ":bfloat16"), key.sites, 1),
                    CacheKey(key.model, other_sites, 1), CacheKey(key.model, key.sites, 2)):
        assert cache.load(changed, shape) is None
    assert cache.load(key, shape) is not None  # misses never remove other entries


@pytest.mark.parametrize("damage", ["truncate", "overwrite-same-size", "flip-description", "flip-one-bit"])
def test_damaged_entries_are_detected_and_removed(tmp_path: Path, pythia, dataset, damage: str) -> None:
    cache = ActivationCache(tmp_path)
    key = store(cache, pythia, dataset, [0])[0]
    data, meta = tmp_path / f"{key.digest}.npy", tmp_path / f"{key.digest}.json"
    shape = (len(dataset.sites), pythia.d_mlp)
    original = np.load(data)
    if damage == "truncate":
        data.write_bytes(data.read_bytes()[:-100])
    elif damage == "overwrite-same-size":  # another valid array of the same shape written over the entry in place
        with data.open("r+b") as handle:
            handle.seek(len(data.read_bytes()) - original.nbytes)
            handle.write(np.zeros_like(original).tobytes())
        assert np.load(data).shape == original.shape and data.stat().st_size == json.loads(meta.read_text())["bytes"]
    elif damage == "flip-one-bit":
        raw = bytearray(data.read_bytes())
        raw[-7] ^= 0x01
        data.write_bytes(bytes(raw))
    else:
        description = json.loads(meta.read_text())
        description["shape"][0] += 1
        meta.write_text(json.dumps(description))
    [entry] = cache.entries()
    assert entry.digest == key.digest and entry.problem is not None  # `cache ls` reports it as damaged
    assert cache.load(key, shape) is None
    assert not data.exists() and not meta.exists()


def test_a_data_file_without_its_description_is_a_miss_and_a_removable_orphan(tmp_path: Path, pythia,
                                                                                dataset) -> None:
    cache = ActivationCache(tmp_path)
    key = store(cache, pythia, dataset, [0])[0]
    (tmp_path / f"{key.digest}.json").unlink()
    assert cache.load(key, (len(dataset.sites), pythia.d_mlp)) is None
    assert [(leftover.path.name, leftover.state) for leftover in cache.leftovers()] == [(f"{key.digest}.npy", "orphan")]
    assert cache.remove_leftovers() > 0 and not (tmp_path / f"{key.digest}.npy").exists()


def test_failed_extraction_leaves_no_entry(tmp_path: Path, pythia, dataset) -> None:
    def broken_batches():
        yield from iter_activation_batches(pythia, dataset, [0], 8)
        raise RuntimeError("crash mid-extraction")

    cache = ActivationCache(tmp_path)
    with pytest.raises(RuntimeError):
        cache.store({0: CacheKey("m", "s", 0)}, (len(dataset.sites), pythia.d_mlp), broken_batches())
    assert [path.name for path in tmp_path.iterdir()] == ["CACHEDIR.TAG"]


SPEC = """\
models:
  - plugin: pythia
    params: {{name: "{model}"}}
datasets:
  - plugin: text_features
    params: {{max_sequences: 30, sequence_length: 48, max_examples: 150, features: [has_leading_space, all_digits]}}
selectors:
  - plugin: mean_diff
ks: [1, 2]
output: {output}
cache: {cache}
"""


def test_second_run_reads_the_cache_and_loads_no_weights(tmp_path: Path, tiny_neox_dir: Path, monkeypatch) -> None:
    def run(output: str):
        text = SPEC.format(model=tiny_neox_dir, output=tmp_path / output, cache=tmp_path / "cache")
        return run_sweep(validate_spec_text(text, "spec.yaml", PluginRegistry()))

    first = run("first")
    assert first.new_rows > 0 and len(list((tmp_path / "cache").glob("*.npy"))) == 3  # one per layer

    def no_weights(self):
        raise AssertionError("weights were loaded although every activation was cached")

    with monkeypatch.context() as patched:
        patched.setattr(HuggingFaceModel, "load_model", no_weights)
        second = run("second")
    assert second.new_rows == first.new_rows
    columns = ["feature", "layer", "k", "neuron_indices", "f1"]
    a = pq.read_table(tmp_path / "first" / "results").select(columns).to_pylist()
    b = pq.read_table(tmp_path / "second" / "results").select(columns).to_pylist()
    key = lambda r: (r["feature"], r["layer"], r["k"])  # noqa: E731
    assert sorted(a, key=key) == sorted(b, key=key)

    # a truncated entry is recomputed (weights load again), with identical results
    victim = sorted((tmp_path / "cache").glob("*.npy"))[0]
    victim.write_bytes(victim.read_bytes()[:200])
    third = run("third")
    c = pq.read_table(tmp_path / "third" / "results").select(columns).to_pylist()
    assert third.new_rows == first.new_rows and sorted(c, key=key) == sorted(a, key=key)


def test_cache_cli(tmp_path: Path, pythia, dataset) -> None:
    cache_dir = tmp_path / "cache"
    keys = store(ActivationCache(cache_dir), pythia, dataset, [0, 1])
    (cache_dir / "notes.txt").write_text("a file of the user's, not the cache's")
    own_bytes = sum(p.stat().st_size for p in cache_dir.glob("*.npy")) + sum(p.stat().st_size
                                                                             for p in cache_dir.glob("*.json"))
    runner = CliRunner()
    listing = runner.invoke(app, ["cache", "ls", "--dir", str(cache_dir)], env={"COLUMNS": "200"})
    assert listing.exit_code == 0 and keys[0].digest in listing.stdout and "2 entries (0 damaged)" in listing.stdout
    usage = runner.invoke(app, ["cache", "du", "--dir", str(cache_dir)])
    assert usage.exit_code == 0 and "in 2 entries" in usage.stdout
    assert ActivationCache(cache_dir).total_bytes() == own_bytes  # notes.txt is not counted
    missing = runner.invoke(app, ["cache", "rm", "nope", "--dir", str(cache_dir)])
    assert missing.exit_code == 2 and "no cache entry nope" in missing.stderr
    assert runner.invoke(app, ["cache", "rm", keys[0].digest, "--dir", str(cache_dir)]).exit_code == 0
    assert {p.stem for p in cache_dir.glob("*.npy")} == {keys[1].digest}

    declined = runner.invoke(app, ["cache", "rm", "--dir", str(cache_dir)], input="n\n")
    assert declined.exit_code == 1 and "Remove all 1 entries" in declined.stdout
    assert "nothing removed" in declined.stdout
    no_answer = runner.invoke(app, ["cache", "rm", "--dir", str(cache_dir)], input="")
    assert no_answer.exit_code == 1 and {p.stem for p in cache_dir.glob("*.npy")} == {keys[1].digest}
    assert runner.invoke(app, ["cache", "rm", "--dir", str(cache_dir)], input="y\n").exit_code == 0
    assert sorted(p.name for p in cache_dir.iterdir()) == ["CACHEDIR.TAG", "notes.txt"]


def test_damage_is_shown_by_cache_ls(tmp_path: Path, pythia, dataset) -> None:
    key = store(ActivationCache(tmp_path), pythia, dataset, [0])[0]
    data = tmp_path / f"{key.digest}.npy"
    raw = bytearray(data.read_bytes())
    raw[-1] ^= 0x10  # same size, one value changed
    data.write_bytes(bytes(raw))
    listing = CliRunner().invoke(app, ["cache", "ls", "--dir", str(tmp_path)], env={"COLUMNS": "250"})
    assert listing.exit_code == 0 and "damaged: checksum mismatch" in listing.stdout
    assert "1 entries (1 damaged)" in listing.stdout


def test_cache_commands_refuse_a_directory_the_cache_did_not_write(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    files = {"README.md": "# mine", "pyproject.toml": "[project]", "data.npy": "x", "a1b2.json": "{}"}
    for name, text in files.items():
        (checkout / name).write_text(text)
    before = {p.name: p.read_bytes() for p in checkout.iterdir()}
    runner = CliRunner()
    for command in (["rm"], ["rm", "--yes"], ["rm", "--partial"], ["ls"], ["du"]):
        result = runner.invoke(app, ["cache", *command, "--dir", str(checkout)])
        assert result.exit_code == 2, command
        assert "is not a probekit activation cache" in result.stderr and "Traceback" not in result.output
    assert {p.name: p.read_bytes() for p in checkout.iterdir()} == before
    absent = runner.invoke(app, ["cache", "ls", "--dir", str(tmp_path / "nowhere")])
    assert absent.exit_code == 0 and "no activation cache" in absent.stdout


def test_partial_files_are_told_apart_by_their_lock(tmp_path: Path, pythia, dataset) -> None:
    import fcntl
    import os
    import time

    cache = ActivationCache(tmp_path)
    store(cache, pythia, dataset, [0])
    stale, live = tmp_path / ".partial.dead.npy", tmp_path / ".partial.alive.npy"
    for path in (stale, live):
        path.write_bytes(b"\0" * 4096)
        os.utime(path, (time.time() - 120, time.time() - 120))  # older than the grace period
    holder = os.open(live, os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)  # as a running extraction holds its partial file
    try:
        states = {leftover.path.name: leftover.state for leftover in cache.leftovers()}
        assert states == {stale.name: "stale", live.name: "writing"}
        listing = CliRunner().invoke(app, ["cache", "ls", "--dir", str(tmp_path)], env={"COLUMNS": "250"})
        assert "left by a killed run" in listing.stdout and "being written" in listing.stdout
        assert "2 leftover files" in listing.stdout
        removed = CliRunner().invoke(app, ["cache", "rm", "--partial", "--dir", str(tmp_path)])
        assert removed.exit_code == 0 and not stale.exists() and live.exists()
        assert len(cache.entries()) == 1 and cache.entries()[0].problem is None  # the entry itself is untouched
    finally:
        os.close(holder)
    assert [leftover.state for leftover in cache.leftovers()] == ["stale"]
