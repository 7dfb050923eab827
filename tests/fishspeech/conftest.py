"""Session fixtures running the REAL fish-speech 0.1.0 API server on CPU with tiny checkpoints."""

from collections.abc import Iterator

import pytest

from tests.tooling.fish_speech_env import RunningServer, build_tiny_checkpoints, run_server


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> dict[str, str]:
    """Builds (or reuses) the server venv, then writes tiny random checkpoints."""
    return build_tiny_checkpoints(tmp_path_factory.mktemp("fish-checkpoints"))


@pytest.fixture(scope="session")
def fish_server(tiny_checkpoints, tmp_path_factory) -> Iterator[RunningServer]:
    """The server in its own working directory (references/ lives there); ~20 s to start."""
    with run_server(tiny_checkpoints, tmp_path_factory.mktemp("fish-server")) as server:
        yield server


@pytest.fixture(scope="session")
def fish_server_with_key(tiny_checkpoints, tmp_path_factory) -> Iterator[RunningServer]:
    """A second instance, started with --api-key (server.api_key)."""
    workdir = tmp_path_factory.mktemp("fish-server-key")
    with run_server(tiny_checkpoints, workdir, api_key="fishflow-test-key") as server:
        yield server
