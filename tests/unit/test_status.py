"""`fishflow status`'s figures from a run's files: progress, rate and estimated end, audio and
GPU-hours, running jobs (a killed job's record is not one), Slurm's waiting jobs with the call-out
of one that can never start (recorded squeue / sinfo / scontrol outputs), the last errors, the
JSON schema, and `--watch` ending cleanly on Ctrl-C."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fishflow import atomic, cli
from fishflow.cluster import slurm_jobs
from fishflow.cluster.slurm_nodes import parse_sinfo
from fishflow.layout import Layout
from fishflow.planning.plan import Plan
from fishflow.planning.summary import write_tally
from fishflow.status import collect as status_collect
from fishflow.status import jobs as status_jobs
from fishflow.status import record, render
from tests.helpers import make_config

DATA = Path(__file__).parent / "data" / "slurm"
FISHFLOW = str(Path(sys.executable).parent / "fishflow")
SCHEMA_KEYS = {
    "schema",
    "out",
    "now",
    "run",
    "items",
    "progress",
    "rate",
    "eta",
    "audio_hours",
    "gpu_hours",
    "batches",
    "jobs",
    "slurm",
    "errors",
}


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


@pytest.fixture
def run(tmp_path) -> tuple[Plan, Layout, float]:
    """A run of 2 voices x 6 texts (shards of 3, one batch per voice pair of shards) an hour
    old: batch b00000 finished an hour ago (2 GPUs for 30 min), b00001 runs (2 GPUs, 6 min so
    far) and has journaled 2 items in the last 10 minutes, one item failed; a killed job's
    running record lies beside."""
    texts = {"en": [{"id": f"e{i}", "text": f"Sentence {i}."} for i in range(6)]}
    plan = Plan(make_config(tmp_path, texts, shard_size=3, shards_per_job=2))
    layout = Layout(plan.out)
    now = time.time()
    assert plan.batch_keys() == [("en", "b00000"), ("en", "b00001")]

    def spoken(voice: str, shard: str, index: int, at: float, ok: bool = True) -> dict:
        row = plan.shard_rows("en", voice, shard)[index]
        item = plan.shard("en", voice, shard).items[index]
        fields = {
            "id": row.id,
            "lang": "en",
            "voice": voice,
            "text": row.text,
            "fingerprint": item.fingerprint,
            "backend": "demo",
            "seed": item.seed,
            "attempts": 1,
            "finished_at": at,
        }
        if not ok:
            return {**fields, "status": "failed", "reason": "http_error", "last_error": "503"}
        wav = layout.wav("en", voice, row.id)
        wav.parent.mkdir(parents=True, exist_ok=True)
        wav.write_bytes(b"\0" * 100)
        return {**fields, "status": "ok", "path": item.wav, "bytes": 100, "duration_s": 1.5}

    for voice in ("alice", "bob"):  # b00000: shard 00000 of each voice, finished
        journal = layout.journal("en", voice, "00000")
        records = [spoken(voice, "00000", i, now - 3600 + i) for i in range(3)]
        atomic.write_jsonl(journal, records)
        fingerprint = plan.shard_fingerprint("en", voice, "00000")
        write_tally(layout.tally("en", voice, "00000"), fingerprint, journal, 3, 0, 4.5)
    atomic.write_jsonl(layout.batch_record("en", "b00000"), [])
    servers = {"cuda_visible_devices": "0,1"}
    atomic.write_json(
        layout.servers_record("en", "b00000"),
        {"started_at": now - 5400, "finished_at": now - 3600, "servers": servers},
    )
    journal = layout.journal("en", "alice", "00001")  # b00001 runs
    atomic.write_jsonl(
        journal,
        [
            spoken("alice", "00001", 0, now - 300),
            spoken("alice", "00001", 1, now - 120),
            spoken("alice", "00001", 2, now - 60, ok=False),
        ],
    )
    running = {"lang": "en", "batch": "b00001", "host": os.uname().nodename, "gpus": 2}
    atomic.write_json(
        layout.running_record("en", "b00001"),
        {**running, "pid": os.getpid(), "slurm_job_id": None, "started_at": now - 360},
    )
    killed = layout.running_record("en", "b00009")
    atomic.write_json(killed, {**running, "pid": dead_pid(), "slurm_job_id": None, "started_at": 0})
    log = tmp_path / "snakemake.log"
    log.write_text("Building DAG of jobs...\n")
    record.write(plan.out, plan.config, Path.cwd(), str(log))
    data = json.loads(layout.run_record().read_text())
    atomic.write_json(layout.run_record(), {**data, "started_at": now - 3600})
    return plan, layout, now


def test_status_figures(run):
    plan, layout, now = run
    status = status_collect.collect(layout.out)
    assert set(status) == SCHEMA_KEYS and status["schema"] == "fishflow-status/1"
    assert status["items"] == {"total": 12, "done": 8, "failed": 1, "todo": 4}
    assert status["progress"] == [
        {"lang": "en", "voice": "alice", "total": 6, "done": 5, "failed": 1, "todo": 1},
        {"lang": "en", "voice": "bob", "total": 6, "done": 3, "failed": 0, "todo": 3},
    ]
    # 2 items in the last 10 minutes (the failed one does not count): 0.2 items/min, and
    # the 4 items left take 20 minutes.
    rate = status["rate"]
    assert rate["spoken"] == 2 and rate["per_min"] == pytest.approx(0.2, rel=0.01)
    assert status["eta"]["seconds"] == pytest.approx(1200, rel=0.01)
    assert status["audio_hours"] == pytest.approx(8 * 1.5 / 3600)
    gpu = status["gpu_hours"]
    assert gpu["finished"] == pytest.approx(1.0)  # 2 GPUs x 30 min
    assert gpu["running"] == pytest.approx(0.2, rel=0.01)  # 2 GPUs x 6 min
    assert status["batches"] == {"planned": 2, "finished": 1}
    [job] = status["jobs"]["running"]  # the killed job's record is not a running job
    assert (job["batch"], job["pid"], job["checked"]) == ("b00001", os.getpid(), True)
    assert status["jobs"]["pending"] == [] and status["slurm"] is None
    [failure] = status["errors"]
    assert failure["kind"] == "item" and failure["reason"] == "http_error"
    assert status["run"]["snakemake"] == "running"  # the record's pid is this test's


def test_text_shows_bars_rate_end_and_jobs(run):
    _, layout, _ = run
    text = render.text(status_collect.collect(layout.out))
    assert "items: 8 of 12 done (66.7%), 1 failed, 4 to do" in text
    assert "en alice   [####################xxxx]" in text
    assert "0.2 items/min over the last 10 min; estimated end" in text and "(in 20 min)" in text
    assert "GPU-hours: 1.20 (1.00 in finished jobs, 0.20 in running ones)" in text
    assert "en/b00001 on " in text and "item en/alice/e5: http_error: 503" in text


def test_a_failed_job_shows_its_log(run):
    plan, layout, now = run
    log = layout.speak_log("en", "b00000")
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("INFO starting\nERROR batch en/b00000: the servers failed to start\ndone\n")
    os.utime(layout.batch_record("en", "b00000"), (now - 7200, now - 7200))
    errors = status_collect.collect(layout.out)["errors"]
    assert errors[0]["kind"] == "job" and errors[0]["batch"] == "b00000"
    assert errors[0]["message"] == "ERROR batch en/b00000: the servers failed to start"


def test_rate_span_is_the_window_or_the_young_runs_age():
    assert status_collect.rate_span(1000.0, 400.0, started=100.0, recent=[900.0]) == 600.0
    assert status_collect.rate_span(1000.0, 400.0, started=700.0, recent=[900.0]) == 300.0
    # Items spoken before this run started (by the one before) count from when they were.
    assert status_collect.rate_span(1000.0, 400.0, started=700.0, recent=[500.0]) == 500.0


def test_waiting_jobs_of_the_run_and_the_one_that_never_starts(monkeypatch):
    queue = slurm_jobs.parse_squeue((DATA / "squeue.txt").read_text())
    nodes = parse_sinfo((DATA / "sinfo_nodes.txt").read_text())
    records = (DATA / "scontrol_show_job.txt").read_text().splitlines()
    asked = []

    def job_record(job_id):
        asked.append(job_id)
        return slurm_jobs.parse_job_record(records[0])  # each asks for one GPU

    monkeypatch.setattr(slurm_jobs, "job_record", job_record)
    slurm = status_jobs.Slurm(queue, nodes)
    assert status_jobs.waiting({"another-run"}, slurm) == []
    never, waits = status_jobs.waiting({"4c1b9f32-run"}, slurm)
    assert (never["slurm_job_id"], never["reason"], never["batch"]) == (
        "595",
        "PartitionConfig",
        "b00000",
    )
    assert never["asks"] == {"cpus": 8, "mem_mb": 68000, "gpus": 1}
    assert never["never_starts"] == (
        "it asks for 8 CPUs, 68000 MB, 1 GPU(s); partition gpu has 1 node(s) with 2 CPUs, "
        "21694 MB, 2 GPU(s); change set-resources.speak.cpus_per_task, "
        "set-resources.speak.mem_mb in the Slurm profile"
    )
    assert waits["reason"] == "Resources" and waits["never_starts"] is None
    assert sorted(asked) == ["595", "598"]  # once per distinct request
    text = render.text({**_empty_status(), "jobs": {"running": [], "pending": [never, waits]}})
    assert "!! job 595 can never start: it asks for 8 CPUs" in text
    assert "en/b00000 Slurm job 595: PartitionConfig" in text


def _empty_status() -> dict:
    return {
        "out": "/out",
        "now": 0.0,
        "run": {"snakemake": "unknown", "host": None, "started_at": None, "controller": None},
        "items": {"total": 0, "done": 0, "failed": 0, "todo": 0},
        "progress": [],
        "rate": {"window_s": 600.0, "spoken": 0, "per_min": None},
        "eta": {"seconds": 0.0, "at": 0.0},
        "audio_hours": 0.0,
        "gpu_hours": {"finished": 0.0, "running": 0.0, "total": 0.0},
        "batches": {"planned": 0, "finished": 0},
        "slurm": "ok",
        "errors": [],
    }


def test_status_without_a_run_record_says_how_to_get_one(tmp_path, capsys):
    assert cli.main(["status", str(tmp_path)]) == 2
    assert "work/run.json: no run record; it is written when snakemake plans" in (
        capsys.readouterr().err
    )


def test_watch_redraws_in_place_and_ends_on_ctrl_c(run):
    _, layout, _ = run
    process = subprocess.Popen(
        [FISHFLOW, "status", "--watch", "--interval", "0.2", str(layout.out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(4)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0 and "Traceback" not in stderr, stderr
    assert stdout.startswith("\x1b[2J\x1b[H") and stdout.count("\x1b[H") >= 2
    assert "items: 8 of 12 done" in stdout


def files(root: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in root.rglob("*")}


def test_json_is_one_parsable_object_and_nothing_is_written(run, tmp_path):
    _, layout, _ = run
    before = files(tmp_path)
    result = subprocess.run(
        [FISHFLOW, "status", "--json", str(layout.out)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)) == SCHEMA_KEYS
    assert files(tmp_path) == before
