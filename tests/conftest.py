"""Shared pytest fixtures."""

import os
from collections.abc import Iterator

import pytest

from tests.tooling.slurm_cluster import (
    ClusterInfo,
    cluster_available,
    ensure_cluster,
    is_running,
    stop_cluster,
)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[ClusterInfo]:
    """The real single-node Slurm test cluster; stopped at the end only if this session started it.

    Skips where the cluster cannot run here, but fails under CI=true: CI must run these tests.
    """
    available, reason = cluster_available()
    if not available:
        message = f"REAL SLURM TEST CLUSTER UNAVAILABLE, Slurm tests not run: {reason}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    started_here = not is_running()
    yield ensure_cluster()
    if started_here:
        stop_cluster()
