"""Fixtures of the fault suite (its tools are in fault_tools.py)."""

from __future__ import annotations

import pytest
from fault_tools import can_unshare, probekit, result_rows, write_spec


@pytest.fixture(scope="session")
def reference_rows(tmp_path_factory: pytest.TempPathFactory) -> list[tuple]:
    """The rows of one clean, uninterrupted run of SPEC."""
    directory = tmp_path_factory.mktemp("reference")
    result = probekit("run", str(write_spec(directory)), cwd=directory)
    assert result.returncode == 0, result.stderr
    return result_rows(directory / "out")


@pytest.fixture(scope="session")
def mount_namespace() -> None:
    """Skip unless this process may create a mount namespace (root, or unprivileged user namespaces)."""
    if not can_unshare("-m"):
        pytest.skip("needs `unshare -m` (a private mount namespace) to mount a small tmpfs; run as root")
