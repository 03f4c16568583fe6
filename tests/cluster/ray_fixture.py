"""The `ray_cluster` fixture: one local Ray head in a private network namespace (see ray_cluster.py), shared by the
tests of a module (starting one takes about 4 s, stopping it about 2 s). A test that breaks the cluster itself
(kills the raylet or the GCS) should start its own `RayCluster` instead.

A conftest makes it available with `from ray_fixture import ray_cluster  # noqa: F401`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ray_cluster import RayCluster, skip_reason


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[RayCluster]:
    """A running RayCluster (skips when this machine cannot run one: not root, Ray not installed, no namespaces)."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    with RayCluster() as cluster:
        yield cluster
