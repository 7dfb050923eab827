"""Several server replicas in one generation job: the same audio as one server, each item asked
for once, requests spread over the replicas, and a replica killed mid-run replaced."""

import copy
import hashlib
import os
import signal
import time
from collections import Counter

from fishflow.serving.endpoint import read_endpoint
from tests.e2e.test_workflow import ITEMS
from tests.workflow_runner import Project, assert_ok


def digests(project) -> dict[str, str]:
    return {name: hashlib.sha256(p.read_bytes()).hexdigest() for name, p in project.wavs().items()}


def requests_per_replica(project) -> Counter:
    """Replica folder name (r0, r1, ...) -> TTS requests its demo server answered."""
    counts = Counter()
    for log in (project.out / "work" / "servers").glob("*/*/requests.jsonl"):
        counts[log.parent.name] += sum('"/v1/tts"' in line for line in log.open())
    return +counts  # only replicas that answered some


def untimed(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "generation_s"} for r in records]


def serving_replica(project, timeout: float = 120) -> dict:
    """A ready replica, once some replica has answered a TTS request."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if requests_per_replica(project):
            for endpoint in (project.out / "work" / "servers").glob("*.endpoint.json"):
                ready = [r for r in read_endpoint(endpoint)["replicas"] if r["state"] == "ready"]
                if ready:
                    return ready[0]
        time.sleep(0.05)
    raise AssertionError("no replica answered a request")


def with_replicas(project, tmp_path, name: str, **server) -> Project:
    config = copy.deepcopy(project.config)
    config["output_dir"] = str(tmp_path / name / "out")
    config["server"].update(server)
    other = Project(tmp_path / name, config)
    other.root.mkdir()
    return other


def test_three_replicas_give_the_audio_of_one_server_asking_once_per_item(project, tmp_path):
    assert_ok(project.run())
    single = digests(project)
    assert len(single) == ITEMS

    three = with_replicas(project, tmp_path, "three", replicas=3)
    assert_ok(three.run())
    assert digests(three) == single
    requested = Counter((r["reference_id"], r["text"]) for r in three.tts_requests())
    assert len(requested) == ITEMS and set(requested.values()) == {1}
    assert set(requests_per_replica(three)) == {"r0", "r1", "r2"}  # every replica served
    for lang in ("en", "de"):
        assert untimed(three.manifest("metadata", lang)) == untimed(
            project.manifest("metadata", lang)
        )


def test_a_replica_killed_mid_run_is_replaced_and_the_run_completes(project, tmp_path):
    reference = with_replicas(project, tmp_path, "reference", replicas=1)
    assert_ok(reference.run())

    project.config["server"].update(replicas=2, max_restarts=1)
    project.config["server"]["demo"] = {"latency_s": 0.3}
    process = project.start()
    victim = serving_replica(project)
    os.kill(victim["pid"], signal.SIGKILL)
    stdout, _ = process.communicate(timeout=300)
    assert process.returncode == 0, stdout[-5000:]

    assert digests(project) == digests(reference)
    logs = "".join(p.read_text() for p in (project.out / "logs" / "server").glob("*.log"))
    assert "server exited with code -9; restart 1 of 1" in logs
    assert project.summary()["total"] == {"ok": ITEMS, "failed": 0}
