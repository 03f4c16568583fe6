"""Faults around the activation cache, each with real processes: a cache directory that is someone's checkout, an entry
overwritten in place, kill -9 and SIGTERM during extraction, a cache on a full filesystem."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
from fault_tools import (
    in_mount_namespace,
    partial_files,
    probekit,
    result_rows,
    start_probekit,
    wait_for,
    write_spec,
)

pytestmark = pytest.mark.slow  # real processes, each run a few seconds

REPO = Path(__file__).resolve().parents[2]


def test_cache_rm_never_touches_files_it_did_not_write(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in ("README.md", "pyproject.toml"):
        shutil.copy(REPO / name, checkout / name)
    before = {path.name: path.read_bytes() for path in checkout.iterdir()}
    for command in (["rm"], ["rm", "--yes"], ["rm", "--partial"], ["du"], ["ls"]):
        result = probekit("cache", *command, "--dir", str(checkout), cwd=tmp_path)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert result.stderr.startswith(f"error: {checkout} is not a probekit activation cache")
        assert "Traceback" not in result.stderr
    assert {path.name: path.read_bytes() for path in checkout.iterdir()} == before


def test_removing_everything_asks_and_spares_foreign_files(tmp_path: Path, reference_rows) -> None:
    assert probekit("run", str(write_spec(tmp_path)), cwd=tmp_path).returncode == 0
    cache = tmp_path / "cache"
    (cache / "my-notes.txt").write_text("mine")
    usage = probekit("cache", "du", "--dir", "cache", cwd=tmp_path)
    own = sum(path.stat().st_size for path in cache.iterdir() if path.name != "my-notes.txt"
              and path.name != "CACHEDIR.TAG")
    assert "in 2 entries" in usage.stdout and f"{own / 2**20:.1f} MiB" in usage.stdout
    refused = probekit("cache", "rm", "--dir", "cache", cwd=tmp_path, input="")  # no terminal, no answer
    assert refused.returncode == 1 and "nothing removed" in refused.stdout and len(list(cache.glob("*.npy"))) == 2
    removed = probekit("cache", "rm", "--yes", "--dir", "cache", cwd=tmp_path)
    assert removed.returncode == 0
    assert sorted(path.name for path in cache.iterdir()) == ["CACHEDIR.TAG", "my-notes.txt"]


def test_an_entry_overwritten_in_place_is_detected_and_recomputed(tmp_path: Path, reference_rows) -> None:
    spec = write_spec(tmp_path)
    assert probekit("run", str(spec), cwd=tmp_path).returncode == 0
    # what a stray process could do: the same shape and size, other numbers (rows shuffled)
    entry = sorted((tmp_path / "cache").glob("*.npy"))[0]
    original = np.load(entry)
    shuffled = np.random.default_rng(0).permutation(original)
    with entry.open("r+b") as handle:
        handle.seek(entry.stat().st_size - original.nbytes)
        handle.write(shuffled.tobytes())
    assert np.load(entry).shape == original.shape

    listing = probekit("cache", "ls", "--dir", "cache", cwd=tmp_path)
    assert f"{entry.stem}" in listing.stdout and "damaged: checksum mismatch" in listing.stdout

    again = probekit("run", str(spec), "--output", "second", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"warning: activation cache entry {entry.name} is damaged (checksum mismatch" in again.stderr
    assert result_rows(tmp_path / "second") == reference_rows  # recomputed, not read from the damaged entry
    np.testing.assert_array_equal(np.load(entry), original)


def test_kill_9_during_extraction_leaves_a_partial_file_the_next_run_cleans(tmp_path: Path, reference_rows) -> None:
    spec = write_spec(tmp_path)
    run = start_probekit("run", str(spec), cwd=tmp_path)
    cache = tmp_path / "cache"
    wait_for(lambda: any(path.stat().st_size > 0 for path in partial_files(cache)), run, "extraction started")
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=60)
    stale = partial_files(cache)
    assert stale and all(path.stat().st_size > 0 for path in stale)

    listing = probekit("cache", "ls", "--dir", "cache", cwd=tmp_path)
    assert listing.stdout.count("left by a killed run") == len(stale)
    usage = probekit("cache", "du", "--dir", "cache", cwd=tmp_path)
    assert f"{len(stale)} partial or orphan files" in usage.stdout

    resumed = probekit("run", str(spec), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert f"warning: removed {len(stale)} file(s)" in resumed.stderr
    assert "left in the activation cache" in resumed.stderr
    assert partial_files(cache) == []
    assert result_rows(tmp_path / "out") == reference_rows


def test_cache_rm_partial_cleans_what_a_killed_run_left(tmp_path: Path) -> None:
    run = start_probekit("run", str(write_spec(tmp_path)), cwd=tmp_path)
    wait_for(lambda: any(path.stat().st_size > 0 for path in partial_files(tmp_path / "cache")), run,
             "extraction started")
    run.kill()
    run.wait(timeout=60)
    removed = probekit("cache", "rm", "--partial", "--dir", "cache", cwd=tmp_path)
    assert removed.returncode == 0 and partial_files(tmp_path / "cache") == []


def test_sigterm_during_extraction_ends_like_ctrl_c(tmp_path: Path, reference_rows) -> None:
    spec = write_spec(tmp_path)
    run = start_probekit("run", str(spec), cwd=tmp_path)
    wait_for(lambda: any(path.stat().st_size > 0 for path in partial_files(tmp_path / "cache")), run,
             "extraction started")
    run.send_signal(signal.SIGTERM)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 143
    assert stderr.strip() == "terminated: finished cells are saved; run the same command again to resume"
    assert partial_files(tmp_path / "cache") == []
    manifest = json.loads((tmp_path / "out" / "run.json").read_text())
    assert manifest["status"] == "running" and manifest["runs"][-1]["finished_at"] is None

    resumed = probekit("run", str(spec), cwd=tmp_path)
    assert resumed.returncode == 0 and "warning" not in resumed.stderr
    assert result_rows(tmp_path / "out") == reference_rows


def test_a_full_cache_filesystem_is_one_clear_error_and_leaves_nothing_behind(tmp_path: Path,
                                                                              mount_namespace) -> None:
    """The cache on a 2 MiB tmpfs: one layer's entry (3.7 MB) cannot fit."""
    spec = write_spec(tmp_path, output=tmp_path / "out", cache=tmp_path / "cache")
    (tmp_path / "cache").mkdir()
    script = f"""
        mount -t tmpfs -o size=2m tmpfs {tmp_path / 'cache'}
        set +e
        "$PROBEKIT" run {spec}
        echo "exit=$?"
        ls -A {tmp_path / 'cache'}
    """
    result = in_mount_namespace(script, cwd=tmp_path)
    assert "exit=2" in result.stdout, (result.stdout, result.stderr)
    assert f"error: no space left on the device of the activation cache {tmp_path / 'cache'}" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.strip().splitlines()[-1] == "CACHEDIR.TAG"  # no partial file, no orphan entry
