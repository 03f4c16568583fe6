"""Fixtures of the Slurm tests (the cluster itself is in slurm_cluster.py)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from slurm_cluster import SlurmCluster


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A running one-node cluster, shared by the session; skips unless root with Slurm installed.

    Its directory is a short one under /tmp (Unix socket paths hold 108 bytes; pytest's tmp_path is too long).
    """
    reason = SlurmCluster.skip_reason()
    if reason:
        pytest.skip(reason)
    directory = Path(tempfile.mkdtemp(prefix="pk-slurm-"))
    try:
        with SlurmCluster(directory) as cluster:
            yield cluster
    finally:
        shutil.rmtree(directory, ignore_errors=True)
