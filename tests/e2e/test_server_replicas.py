"""A generation job's server replicas (`fishflow.serving.replicas.Replicas`) with real demo
servers: replicas pinned to their GPUs, the restart of a replica that dies, failure reporting,
voice verification, clean stops, and servers that die with a job killed by SIGKILL."""

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from fishflow.errors import ServerError, TransientError
from fishflow.planning.plan import Plan
from fishflow.serving.api_key_shim import KEY_ENV
from fishflow.serving.client import with_retries
from fishflow.serving.replicas import Replicas, replica_devices
from fishflow.speaking.pool import ReplicaPool
from tests.e2e.conftest import TEXTS
from tests.helpers import make_config

SERVER = {"demo": {"engine": "tone"}, "startup_timeout_s": 30, "backoff_s": 0.05}


def settings(tmp_path: Path, **server) -> tuple[dict, list[dict]]:
    """A validated `server` config and the planned voices' specs."""
    config = make_config(tmp_path, TEXTS, server={**SERVER, **server})
    return config["server"], [voice.spec() for voice in Plan(config).voices.values()]


@pytest.fixture
def replicas(tmp_path):
    """Build and start `Replicas` (home and logs under tmp_path); always stopped afterwards."""
    started = []

    def start(voices: list[dict] | None = None, **server) -> Replicas:
        config, planned = settings(tmp_path, **server)
        servers = Replicas(
            config,
            planned if voices is None else voices,
            tmp_path / "servers" / "b00000-host-1",
            lambda tag: tmp_path / "logs" / "b00000" / f"{tag}.log",
        )
        started.append(servers)
        servers.start()
        return servers

    yield start
    for servers in started:
        servers.stop()


@pytest.fixture
def said(caplog) -> pytest.LogCaptureFixture:
    """What the replicas' thread logs (the job's log)."""
    caplog.set_level(logging.INFO, logger="fishflow.servers")
    return caplog


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


def wait_for(condition, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, f"{what} not met after {timeout} s"
        time.sleep(0.05)
    return value


def all_ready(servers: Replicas, count: int, timeout: float = 60) -> list:
    servers.wait_ready()
    return wait_for(
        lambda: len(ready := servers.ready()) == count and ready, timeout, f"{count} ready"
    )


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


def test_replicas_serve_on_their_own_ports_pinned_to_their_gpus(
    replicas, said, monkeypatch, tmp_path
):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    servers = replicas(replicas=2)
    ready = all_ready(servers, 2)
    assert len({r.url for r in ready}) == 2
    assert [r.cuda for r in ready] == ["5", "7"]
    key = servers.api_key
    assert key
    for replica in ready:
        # Each replica's own environment carries its GPU and the key, its command line neither.
        environ = Path(f"/proc/{replica.process.pid}/environ").read_bytes().split(b"\0")
        assert f"CUDA_VISIBLE_DEVICES={replica.cuda}".encode() in environ
        assert f"{KEY_ENV}={key}".encode() in environ
        assert key.encode() not in Path(f"/proc/{replica.process.pid}/cmdline").read_bytes()
        # Its own working folder and its own log (the server's output, from its command on).
        assert replica.workdir == tmp_path / "servers" / "b00000-host-1" / replica.tag
        assert (replica.workdir / "references" / "alice").is_dir()
        assert replica.log.read_text().startswith("fishflow: command: ")
    assert said.text.count("server ready at") == 2, said.text
    pids = [r.process.pid for r in ready]
    servers.stop()
    wait_dead(pids, timeout=1)  # stop() returns once they are gone
    # What the job keeps: starts with their start-up, GPU use not made up, and no API key.
    record = servers.record()
    assert record["replicas"] == 2 and record["cuda_visible_devices"] == "5,7"
    assert [(s["replica"], s["restart"]) for s in record["starts"]] == [("r0", 0), ("r1", 0)]
    assert all(s["startup_s"] > 0 for s in record["starts"])
    assert record["finished_at"] >= record["ready_at"] >= record["started_at"]
    assert record["gpu"] == {"measured": False, "reason": "the servers run on CPU"}
    assert key not in json.dumps(record)


def health_via(pool: ReplicaPool) -> str:
    """A health check through the pool, as a TTS request goes; the URL that answered."""
    with pool.slot() as client:
        try:
            client.health()
        except TransientError:
            pool.unreachable_at(client.url)
            raise
        return client.url


def served(pool: ReplicaPool, requests: int) -> set[str]:
    """The URLs that answered `requests` health checks, each retried as the job retries."""
    return {
        with_retries(lambda: health_via(pool), retries=2, backoff_s=0.3)[0] for _ in range(requests)
    }


def test_a_replica_that_dies_is_restarted_and_requests_move_to_the_others(replicas, said):
    servers = replicas(replicas=2, max_restarts=1)
    victim, survivor = all_ready(servers, 2)
    first_pid, first_url = victim.process.pid, victim.url
    pool = ReplicaPool(servers, servers.server, threading.Event())
    os.kill(first_pid, signal.SIGKILL)
    # Every request succeeds: a retry goes to the survivor once the victim is unreachable.
    answered = served(pool, 10)
    assert survivor.url in answered and first_url not in answered
    wait_for(lambda: victim.restarts == 1 and victim.state == "ready", what="r0 restarted")
    assert victim.process.pid != first_pid and victim.url != first_url
    assert victim.workdir.name == "r0.1" and (victim.workdir / "references" / "alice").is_dir()
    starts = servers.record()["starts"]
    assert [(s["replica"], s["restart"]) for s in starts] == [("r0", 0), ("r1", 0), ("r0", 1)]
    assert "server exited with code -9; restart 1 of 1" in said.text
    # The restarted replica serves again, beside the survivor.
    assert served(pool, 6) == {victim.url, survivor.url}
    # A second death exhausts max_restarts: the replica is given up, the other goes on.
    os.kill(victim.process.pid, signal.SIGKILL)
    wait_for(lambda: victim.state == "failed", what="r0 given up")
    assert victim.error == "exited with code -9 after 1 restart(s)"
    assert servers.ready() == [survivor] and not servers.failed()
    assert served(pool, 4) == {survivor.url}


def test_when_every_replica_fails_to_start_the_error_names_it_with_the_log_tail(replicas):
    servers = replicas(replicas=2, startup_timeout_s=1, demo={"engine": "tone", "warmup_s": 30})
    with pytest.raises(ServerError) as failure:
        servers.wait_ready()
    message = str(failure.value)
    assert message.startswith(
        "the servers failed: all 2 replicas failed; r0: the server did not answer /v1/health "
        "within 1 s"
    ), message
    assert "; r1: the server did not answer" in message
    # The tail of the first replica's log, from the command fishflow ran.
    log = servers.replicas[0].log
    assert f"\n--- last lines of {log} ---\nfishflow: command: " in message
    assert servers.failed() and servers.ready() == []
    wait_dead([r.process.pid for r in servers.replicas])  # failed starts are stopped at once
    # Nothing is restarted: a server that cannot start fails the same way again.
    time.sleep(0.5)
    starts = servers.record()["starts"]
    assert [(s["replica"], s["restart"]) for s in starts] == [("r0", 0), ("r1", 0)]
    assert servers.record()["ready_at"] is None


def test_a_server_that_exits_at_start_up_shows_what_it_said(replicas):
    servers = replicas(replicas=1, demo={"engine": "tone", "fail_pattern": "("})
    with pytest.raises(ServerError) as failure:
        servers.wait_ready()
    message = str(failure.value)
    assert message.startswith(
        "the servers failed: the server process exited during start-up\n--- last lines of "
    ), message
    assert "bad regular expression '('" in message  # the server's own words, from its log
    assert servers.replicas[0].start_record["error"] == "the server process exited during start-up"


def test_a_server_holding_another_audio_for_the_voice_is_never_ready(replicas, tmp_path):
    """A planned voice that the server does not verifiably hold (here: its stored audio is not
    the planned reference) fails the replica before it serves: never a default or other voice.
    (A voice missing on the server: tests/contract, test_unknown_voice_quirk_is_caught.)"""
    _, voices = settings(tmp_path, replicas=1)
    (alice,) = [voice for voice in voices if voice["id"] == "alice"]
    servers = replicas(voices=[{**alice, "sha256": "0" * 64}], replicas=1)
    with pytest.raises(ServerError, match="voice 'alice': .* differs from the configured"):
        servers.wait_ready()
    assert servers.replicas[0].state == "failed" and servers.record()["ready_at"] is None


def test_stop_while_starting_ends_every_server(replicas):
    servers = replicas(replicas=2, demo={"engine": "tone", "warmup_s": 30})
    wait_for(lambda: all(r.process for r in servers.replicas), what="both started")
    pids = [r.process.pid for r in servers.replicas]
    assert all(alive(pid) for pid in pids)
    started = time.monotonic()
    servers.stop()
    assert time.monotonic() - started < 10
    wait_dead(pids, timeout=1)
    assert servers.record()["finished_at"] is not None
    with pytest.raises(ServerError):
        servers.wait_ready()


OWNER = """
    import json, sys, time
    from pathlib import Path
    from fishflow.serving.replicas import Replicas

    server, voices, home = json.loads(sys.argv[1])
    servers = Replicas(server, voices, Path(home), lambda tag: Path(home) / f"{tag}.log")
    servers.start()
    servers.wait_ready()
    while len(servers.ready()) < server["replicas"]:
        time.sleep(0.05)
    print(json.dumps([r.process.pid for r in servers.ready()]), flush=True)
    sys.stdin.read()  # until killed
"""


def test_servers_die_with_a_job_killed_by_sigkill(tmp_path):
    server, voices = settings(tmp_path, replicas=2)
    argument = json.dumps([server, voices, str(tmp_path / "servers")])
    owner = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(OWNER), argument],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        pids = json.loads(owner.stdout.readline() or "null")
        assert pids and len(pids) == 2 and all(alive(pid) for pid in pids), pids
        owner.kill()  # what Slurm or a user's kill -9 does to a generation job
        owner.wait(timeout=10)
        wait_dead(pids, timeout=5)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
