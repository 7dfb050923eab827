"""Session fixture `server`: the demo server and each REAL fish-speech server (0.1.0 from PyPI, the
git commits d3df505 and 3dd1f85), one at a time, each on a free loopback port in its own working
directory, started ONCE with --api-key API_KEY (the real ones take 30-50 s to become healthy), so
every request sends the key and the 401 tests run on the same server.

The real servers share one venv (built once, cached under $FISHFLOW_TEST_CACHE) and start only
for tests selected with their param, so `-m "not fishspeech"` never builds it. A git server whose
source cannot be had skips its tests loudly (fails them under CI=true).
"""

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from fishflow.errors import ServerError
from fishflow.serving.client import FishSpeechClient
from fishflow.serving.replicas import free_loopback_port
from tests.helpers import skip_loudly
from tests.tooling.fish_speech_env import (
    GIT_S1,
    GIT_S2,
    PYPI_0_1_0,
    SourceUnavailable,
    cached_tiny_checkpoints,
    checkpoint_flags,
    ensure_install,
    run_server,
)

DEMO = "demo"
PYPI = "fish-speech-0.1.0"
GIT_S1_KIND = "fish-speech-git-s1"
GIT_S2_KIND = "fish-speech-git-s2"
REAL_VERSIONS = {PYPI: PYPI_0_1_0, GIT_S1_KIND: GIT_S1, GIT_S2_KIND: GIT_S2}
GIT_KINDS = (GIT_S1_KIND, GIT_S2_KIND)
SERVERS = [DEMO, *(pytest.param(kind, marks=pytest.mark.fishspeech) for kind in REAL_VERSIONS)]
API_KEY = "fishflow-contract-key"
DEMO_START_TIMEOUT_S = 30
DEMO_STOP_TIMEOUT_S = 10


@dataclass(frozen=True)
class Server:
    kind: str  # DEMO or a key of REAL_VERSIONS
    url: str
    workdir: Path  # the server's cwd: it reads and creates references/<id>/ here
    api_key: str


@contextmanager
def run_demo_server(workdir: Path, api_key: str) -> Iterator[Server]:
    """The demo server as a subprocess; healthy before yielding, always stopped after."""
    port = free_loopback_port()
    command = [sys.executable, "-m", "fishflow.serving.demo_server", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workdir", str(workdir), "--api-key", api_key]
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


@contextmanager
def run_real_server(kind: str, workdir: Path) -> Iterator[Server]:
    version = REAL_VERSIONS[kind]
    try:
        ensure_install(version)
    except SourceUnavailable as error:
        skip_loudly(f"REAL {kind} SERVER UNAVAILABLE, its contract tests not run: {error}")
    checkpoints = checkpoint_flags(cached_tiny_checkpoints(version), version)
    with run_server(checkpoints, workdir, api_key=API_KEY, version=version) as real:
        print(f"\n{kind}: healthy after {real.start_seconds:.1f} s")
        yield Server(kind, real.url, real.workdir, API_KEY)


@pytest.fixture(scope="session", params=SERVERS)
def server(request, tmp_path_factory) -> Iterator[Server]:
    """Started with --api-key API_KEY: every route wants `Authorization: Bearer API_KEY`."""
    workdir = tmp_path_factory.mktemp(request.param)
    if request.param == DEMO:
        context = run_demo_server(workdir, API_KEY)
    else:
        context = run_real_server(request.param, workdir)
    with context as running:
        yield running
