"""Session fixtures: the demo server and the REAL fish-speech 0.1.0 server, each on a free
loopback port in its own working directory, plain (`server`) and with --api-key (`keyed_server`).

The real server needs its own venv (built once, cached under .cache/) and starts in ~20 s; it is
only started for tests selected with its param, so `-m "not fishspeech"` never builds it.
"""

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from fishflow.client import FishSpeechClient
from fishflow.errors import ServerError
from fishflow.launch import free_loopback_port
from tests.tooling.fish_speech_env import build_tiny_checkpoints, run_server

DEMO, REAL = "demo", "fish-speech-0.1.0"
SERVERS = [DEMO, pytest.param(REAL, marks=pytest.mark.fishspeech)]
API_KEY = "fishflow-contract-key"
DEMO_START_TIMEOUT_S = 30
DEMO_STOP_TIMEOUT_S = 10


@dataclass(frozen=True)
class Server:
    kind: str  # DEMO or REAL
    url: str
    workdir: Path  # the server's cwd: it reads and creates references/<id>/ here
    api_key: str | None


@contextmanager
def run_demo_server(workdir: Path, api_key: str | None) -> Iterator[Server]:
    """The demo server as a subprocess; healthy before yielding, always stopped after."""
    port = free_loopback_port()
    command = [sys.executable, "-m", "fishflow.demo_server", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workdir", str(workdir)]
    command += ["--api-key", api_key] if api_key else []
    log = workdir / "server.log"
    with log.open("w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
    try:
        server = Server(DEMO, f"http://127.0.0.1:{port}", workdir, api_key)
        _wait_healthy(process, server, log)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(DEMO_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(DEMO_STOP_TIMEOUT_S)


def _wait_healthy(process: subprocess.Popen, server: Server, log: Path) -> None:
    client = FishSpeechClient(server.url, api_key=server.api_key)
    deadline = time.monotonic() + DEMO_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"demo server exited with {process.returncode}:\n{log.read_text()}")
        try:
            client.health(timeout=2)
            return
        except ServerError:  # not listening yet
            time.sleep(0.05)
    raise RuntimeError(
        f"demo server not healthy after {DEMO_START_TIMEOUT_S} s:\n{log.read_text()}"
    )


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> dict[str, str]:
    """Builds (or reuses) the real server's venv, then writes tiny random checkpoints."""
    return build_tiny_checkpoints(tmp_path_factory.mktemp("fish-checkpoints"))


@contextmanager
def _start(request, tmp_path_factory, api_key: str | None) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp(f"{request.param}{'-key' if api_key else ''}")
    if request.param == DEMO:
        with run_demo_server(workdir, api_key) as server:
            yield server
    else:
        checkpoints = request.getfixturevalue("tiny_checkpoints")
        with run_server(checkpoints, workdir, api_key=api_key) as real:
            yield Server(REAL, real.url, real.workdir, real.api_key)


@pytest.fixture(scope="session", params=SERVERS)
def server(request, tmp_path_factory) -> Iterator[Server]:
    with _start(request, tmp_path_factory, None) as running:
        yield running


@pytest.fixture(scope="session", params=SERVERS)
def keyed_server(request, tmp_path_factory) -> Iterator[Server]:
    """Started with --api-key API_KEY: every route wants `Authorization: Bearer API_KEY`."""
    with _start(request, tmp_path_factory, API_KEY) as running:
        yield running
