"""The launcher (`python -m fishflow.serving.replicas`, the `server` rule's command) with real demo
servers:
several replicas, the restart of a replica that dies, failure reporting and clean stops."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fishflow.serving.endpoint import read_endpoint, wait_for_endpoint
from fishflow.speaking.dispatch import ReplicaPool

from fishflow.errors import ServerError, TransientError
from fishflow.planning.plan import Plan
from fishflow.serving.client import with_retries
from fishflow.serving.replicas import replica_devices
from tests.e2e.conftest import TEXTS
from tests.helpers import make_config

SERVER = {"demo": {"engine": "tone"}, "startup_timeout_s": 30, "backoff_s": 0.05}


def spec(tmp_path: Path, **server) -> dict:
    config = make_config(tmp_path, TEXTS, server={**SERVER, **server})
    voices = [voice.spec() for voice in Plan(config).voices.values()]
    return {"server": config["server"], "voices": voices, "servers_dir": str(tmp_path / "servers")}


class Launcher:
    def __init__(self, tmp_path: Path, env: dict | None = None, **server):
        self.spec = spec(tmp_path, **server)
        self.endpoint = tmp_path / "servers" / "b00000.endpoint.json"
        self.log = tmp_path / "logs" / "b00000.log"
        command = [
            sys.executable,
            "-m",
            "fishflow.serving.replicas",
            "--spec",
            json.dumps(self.spec),
        ]
        command += ["--endpoint", str(self.endpoint), "--log", str(self.log)]
        self.process = subprocess.Popen(command, env={**os.environ, **(env or {})})

    def ready(self, count: int, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = read_endpoint(self.endpoint) or {}
            if sum(r["state"] == "ready" for r in info.get("replicas", ())) == count:
                return info
            time.sleep(0.1)
        raise AssertionError(f"not {count} ready replicas: {info}\n{self.log.read_text()}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(timeout=30)


@pytest.fixture
def launched(tmp_path):
    started = []

    def launch(**kwargs) -> Launcher:
        started.append(Launcher(tmp_path, **kwargs))
        return started[-1]

    yield launch
    for launcher in started:
        if launcher.process.poll() is None:
            launcher.process.kill()


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def wait_dead(pids, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while any(alive(pid) for pid in pids):
        assert time.monotonic() < deadline, f"still running: {[p for p in pids if alive(p)]}"
        time.sleep(0.1)


@pytest.mark.parametrize(
    ("replicas", "per_gpu", "visible", "expected"),
    [
        ("auto", 1, None, [None]),
        ("auto", 1, "", [None]),
        ("auto", 1, "2,3", ["2", "3"]),
        ("auto", 2, "2,3", ["2", "2", "3", "3"]),
        (3, 1, None, [None, None, None]),
        (3, 1, "0,1", ["0", "1", "0"]),
    ],
)
def test_replicas_get_one_gpu_each_times_servers_per_gpu(replicas, per_gpu, visible, expected):
    server = {"replicas": replicas, "servers_per_gpu": per_gpu}
    assert replica_devices(server, visible) == expected


def test_replicas_serve_on_their_own_ports_pinned_to_their_gpus(launched):
    launcher = launched(replicas=2, env={"CUDA_VISIBLE_DEVICES": "5,7"})
    info = launcher.ready(2)
    replicas = info["replicas"]
    assert len({r["url"] for r in replicas}) == 2
    assert [r["cuda_visible_devices"] for r in replicas] == ["5", "7"]
    assert oct(launcher.endpoint.stat().st_mode & 0o777) == "0o600"  # it holds the API key
    # Each replica's own environment carries its GPU.
    for replica in replicas:
        environ = Path(f"/proc/{replica['pid']}/environ").read_bytes().split(b"\0")
        assert f"CUDA_VISIBLE_DEVICES={replica['cuda_visible_devices']}".encode() in environ
    log = launcher.log.read_text()
    assert log.count("server ready at") == 2, log
    assert launcher.stop() == 0
    wait_dead([r["pid"] for r in replicas])
    # The structured record beside the log: starts with their start-up, GPU use not made up.
    record = json.loads(launcher.log.with_suffix(".json").read_text())
    (run,) = record["runs"]
    assert [(s["replica"], s["restart"]) for s in run["starts"]] == [("r0", 0), ("r1", 0)]
    assert all(s["startup_s"] > 0 for s in run["starts"])
    assert run["finished_at"] >= run["ready_at"] >= run["started_at"]
    assert run["gpu"] == {"measured": False, "reason": "the servers run on CPU"}
    assert launcher.spec["voices"] and "api_key" not in json.dumps(record)


def test_a_replica_that_dies_is_restarted_and_requests_move_to_the_others(launched):
    launcher = launched(replicas=2, max_restarts=1)
    info = launcher.ready(2)
    victim = info["replicas"][0]
    pool = ReplicaPool(launcher.endpoint, info, launcher.spec["server"], threading.Event())
    os.kill(victim["pid"], signal.SIGKILL)
    # Every request succeeds, on the survivor, once the pool has re-read the endpoint file.
    for _ in range(10):
        with_retries(lambda: health_via(pool), retries=2, backoff_s=0.3)
    restarted = replica_when(launcher, 0, lambda r: r["restarts"] == 1 and r["state"] == "ready")
    assert restarted["pid"] != victim["pid"] and restarted["workdir"].endswith("r0.1")
    starts = json.loads(launcher.log.with_suffix(".json").read_text())["runs"][0]["starts"]
    assert [(s["replica"], s["restart"]) for s in starts] == [("r0", 0), ("r1", 0), ("r0", 1)]
    assert "server exited with code -9; restart 1 of 1" in launcher.log.read_text()
    # A second death exhausts max_restarts: the replica is given up, the other goes on.
    os.kill(restarted["pid"], signal.SIGKILL)
    replica_when(launcher, 0, lambda r: r["state"] == "failed")
    final = read_endpoint(launcher.endpoint)
    assert "error" not in final and final["replicas"][1]["state"] == "ready"
    assert launcher.stop() == 0


def health_via(pool: ReplicaPool) -> None:
    with pool.slot() as client:
        try:
            client.health()
        except TransientError:
            pool.refresh()
            raise


def replica_when(launcher: Launcher, index: int, condition, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while not condition(replica := read_endpoint(launcher.endpoint)["replicas"][index]):
        assert time.monotonic() < deadline, replica
        time.sleep(0.1)
    return replica


def test_when_every_replica_fails_to_start_the_endpoint_carries_the_error(launched):
    launcher = launched(replicas=2, startup_timeout_s=1, demo={"engine": "tone", "warmup_s": 30})
    assert launcher.process.wait(timeout=30) == 1
    info = read_endpoint(launcher.endpoint)
    assert info["error"].startswith("all 2 replicas failed; r0: the server did not answer")
    assert "ready_at" not in info
    with pytest.raises(ServerError, match="the server failed to start: all 2 replicas failed"):
        wait_for_endpoint(launcher.endpoint, 5)
    wait_dead([r["pid"] for r in info["replicas"]])


def test_servers_die_with_a_killed_launcher(launched):
    launcher = launched(replicas=2)
    pids = [r["pid"] for r in launcher.ready(2)["replicas"]]
    launcher.process.kill()  # what Snakemake does to the service of a failed group
    launcher.process.wait(timeout=10)
    wait_dead(pids)
