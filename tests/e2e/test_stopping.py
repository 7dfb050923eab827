"""A run that is stopped: after Ctrl-C, SIGTERM or kill -9 of `snakemake`, no server and no
generation job of the run is left; a kill -9 of everything loses at most the items in flight
and leaves no partial WAV."""

import os
import signal
import time
from pathlib import Path

import pytest
import soundfile

from fishflow import atomic
from tests.workflow_runner import assert_ok, kill_group


def run_processes(root: Path) -> dict[int, str]:
    """Live processes of the run in `root`: working in it (Snakemake, its jobs, the servers in
    their folders under it) or naming it on their command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            cwd = os.readlink(entry / "cwd")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (str(root).encode() in cmdline or cwd.startswith(str(root))):
            found[int(entry.name)] = cmdline.replace(b"\0", b" ").decode(errors="replace")
    return found


def wait_until_serving(project, timeout: float = 120) -> None:
    """Until some server of the run has answered a TTS request."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if project.tts_requests():
            return
        time.sleep(0.1)
    raise AssertionError("no server answered a TTS request")


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm", "kill-9"])
def test_no_process_of_the_run_outlives_snakemake(project, how):
    project.config["server"]["demo"] = {"latency_s": 1.0}
    project.config["shards_per_job"] = 2  # 6 batches (one shard per voice), 2 at a time
    process = project.start()
    wait_until_serving(project)
    assert len(run_processes(project.root)) >= 3  # snakemake, a job, its server
    if how == "ctrl-c":
        kill_group(process, signal.SIGINT)  # what a terminal sends: the whole process group
    elif how == "sigterm":
        process.send_signal(signal.SIGTERM)
    else:
        process.kill()
    process.communicate(timeout=120)
    deadline = time.monotonic() + 30
    while (left := run_processes(project.root)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"left after {how} of snakemake: {left}"
    started = {p: p.read_text() for p in (project.out / "logs" / "speak").glob("*/*.log")}
    logs = "".join(started.values())
    if how == "sigterm":
        # Snakemake's graceful stop: its running jobs finish their batches, no new one starts.
        assert "did not complete" not in logs and 0 < len(started) < 6
    else:
        # The jobs stopped at once: nothing new was sent, their batches did not complete.
        why = "the job got SIGINT" if how == "ctrl-c" else "which started this job, has gone"
        assert why in logs and "did not complete" in logs


def test_kill_9_of_everything_loses_at_most_the_items_in_flight(project):
    project.config["server"]["demo"] = {"latency_s": 0.3}
    project.config["server"]["max_in_flight"] = 2
    process = project.start()
    journals = project.out / "work" / "progress"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if sum(len(atomic.read_jsonl(j)) for j in journals.rglob("*.jsonl")) >= 4:
            break
        time.sleep(0.05)
    kill_group(process, signal.SIGKILL)  # the node dies: no clean-up of any kind
    process.wait(timeout=30)

    journaled = {
        r["path"]: r["sha256"]
        for j in journals.rglob("*.jsonl")
        for r in atomic.read_jsonl(j)
        if r["status"] == "ok"
    }
    on_disk = {str(p.relative_to(project.out)): p for p in (project.out / "audio").rglob("*")}
    on_disk = {name: path for name, path in on_disk.items() if path.is_file()}
    # Every journaled item is on disk; at most the requests in flight (2 per job, 2 jobs) were
    # written and not yet journaled; nothing in audio/ is partial.
    assert set(journaled) <= set(on_disk)
    assert len(set(on_disk) - set(journaled)) <= 2 * 2
    for name, path in on_disk.items():
        assert name.endswith(".wav") and not Path(name).name.startswith("."), name
        info = soundfile.info(str(path))
        assert len(soundfile.read(str(path))[0]) == info.frames > 0, name

    assert_ok(project.run("--unlock"))
    project.config["server"]["demo"] = {"latency_s": 0.0}
    assert_ok(project.run())
    counts = {}
    for request in project.tts_requests():
        key = (request["reference_id"], request["text"])
        counts[key] = counts.get(key, 0) + 1
    finished = {
        (r["voice"], r["text"]) for j in journals.rglob("*.jsonl") for r in atomic.read_jsonl(j)
    }
    assert all(n <= 2 for n in counts.values())
    assert not [p for p in (project.out / "work" / "partial").rglob("*") if p.is_file()]
    assert len(finished) == 20
