"""The `ray` executor against a real Ray head (in a private network namespace, loopback only): the same rows as a
local run, on a running cluster and on a local instance the executor starts and stops itself."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from ray_cluster import RayCluster
from ray_fixture import ray_cluster  # noqa: F401
from test_slurm_executor import comparable, local_rows, plugins_path, spec_text  # noqa: F401

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("where", ["cluster", "local instance"])
def test_ray_writes_the_same_rows_as_local(ray_cluster: RayCluster, plugins_path: str, tmp_path: Path,  # noqa: F811
                                           where: str) -> None:
    address = f"address: '{ray_cluster.address}', " if where == "cluster" else "num_cpus: 2, "
    executor = f"executor:\n  plugin: ray\n  params: {{{address}probe: {{cpus: 1}}}}\n  pairs_per_unit: 1\n"
    (tmp_path / "spec.yaml").write_text(spec_text(tmp_path / "ray", tmp_path / "cache-ray", 0, executor))
    done = ray_cluster.run([sys.executable, "-m", "probekit", "run", str(tmp_path / "spec.yaml")],
                           env={"PYTHONPATH": plugins_path}, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr + ray_cluster.log_tail()
    assert comparable(tmp_path / "ray") == local_rows(tmp_path, 0)
    ids = pq.read_table(tmp_path / "ray" / "results").column("cell_id").to_pylist()
    assert len(ids) == len(set(ids)) == 3 * 2 * 2 * 2
    manifest = json.loads((tmp_path / "ray" / "run.json").read_text())
    assert manifest["status"] == "complete" and manifest["runs"][-1]["executor"]["plugin"] == "ray"
