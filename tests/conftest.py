"""Shared pytest fixtures."""

from collections.abc import Iterator

import pytest

from tests.helpers import skip_loudly
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
        skip_loudly(f"REAL SLURM TEST CLUSTER UNAVAILABLE, Slurm tests not run: {reason}")
    started_here = not is_running()
    yield ensure_cluster()
    if started_here:
        stop_cluster()
