"""Several server replicas in one generation job: the same audio as one server, each item asked
for once, requests spread over the replicas, and a replica killed mid-run replaced."""

import copy
import hashlib
import os
import signal
import time
from collections import Counter
from pathlib import Path

from tests.e2e.test_workflow import ITEMS
from tests.workflow_runner import Project, assert_ok


def digests(project) -> dict[str, str]:
    return {name: hashlib.sha256(p.read_bytes()).hexdigest() for name, p in project.wavs().items()}


def request_logs(project) -> list[Path]:
    """The demo servers' request logs: work/servers/<lang>/<batch>-<host>-<pid>/<r>/."""
    return sorted((project.out / "work" / "servers").glob("*/*/*/requests.jsonl"))


def tts_answered(log: Path) -> int:
    with log.open() as lines:
        return sum('"/v1/tts"' in line for line in lines)


def requests_per_replica(project) -> Counter:
    """Replica folder name (r0, r1, ...) -> TTS requests its demo server answered."""
    counts = Counter()
    for log in request_logs(project):
        counts[log.parent.name] += tts_answered(log)
    return +counts  # only replicas that answered some


def untimed(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "generation_s"} for r in records]


def demo_servers_under(folder: Path) -> dict[Path, int]:
    """Working folder -> pid of every live demo server whose --workdir lies under `folder`."""
    servers = {}
    for entry in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = entry.read_bytes().decode().split("\0")
        except OSError:
            continue  # exited meanwhile
        if "fishflow.serving.demo_server" in args and "--workdir" in args:
            workdir = Path(args[args.index("--workdir") + 1])
            if workdir.is_relative_to(folder):
                servers[workdir] = int(entry.parent.name)
    return servers


def serving_replica(project, timeout: float = 120) -> tuple[Path, int]:
    """(working folder, pid) of a live demo server of this run once it has answered a TTS
    request (so its replica was ready)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for workdir, pid in demo_servers_under(project.out / "work" / "servers").items():
            log = workdir / "requests.jsonl"
            if log.is_file() and tts_answered(log):
                return workdir, pid
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

    # A second per request, so that no two replicas finish a batch before the third is ready
    # (the pool speaks as soon as one replica is up; a batch here is 10 items).
    three = with_replicas(project, tmp_path, "three", replicas=3, demo={"latency_s": 1.0})
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
    workdir, pid = serving_replica(project)
    os.kill(pid, signal.SIGKILL)
    stdout, _ = process.communicate(timeout=300)
    assert process.returncode == 0, stdout[-5000:]

    assert digests(project) == digests(reference)
    # The job's log says so, and the replacement started in its own folder beside the victim's.
    logs = "".join(p.read_text() for p in (project.out / "logs" / "speak").glob("*/*.log"))
    assert f"[{workdir.name}] server exited with code -9; restart 1 of 1" in logs
    assert workdir.with_name(f"{workdir.name}.1").is_dir()
    assert project.summary()["total"] == {"ok": ITEMS, "failed": 0}
