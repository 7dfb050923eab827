"""`fishflow submit`, `status` and `cancel` on the real Slurm test cluster: the Snakemake
controller runs as a CPU Slurm job, is requeued at its time limit and resumes from the files
(issue 7's acceptance); its generation jobs are one Slurm job per batch (issue 12)."""

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from fishflow.cluster import run_state
from tests.helpers import REPO
from tests.slurm.conftest import slurm
from tests.slurm.test_workflow_slurm import TEXTS4, journaled, requested, wait_for

pytestmark = pytest.mark.slurm

FISHFLOW = str(Path(sys.executable).parent / "fishflow")
# One voice: two batches (de, en) of two shards each, beside the controller on the 2-CPU test
# node.
BATCHED = {"voices": ("alice",), "shard_size": 2, "shards_per_job": 2}
RELEASE_AFTER_S = 15


def fishflow(project, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    project.write_config()
    result = subprocess.run(
        [FISHFLOW, *args],
        cwd=project.root,
        env=project.environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return result


def submit(project, *flags: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """`fishflow submit` with a controller sized for the 2-CPU test node."""
    return fishflow(
        project,
        "submit",
        "--configfile",
        str(project.config_path),
        "--profile",
        str(project.profile),
        "--mem-mb",
        "1000",
        *flags,
        "--",
        "--snakefile",
        str(REPO / "Snakefile"),
        timeout=timeout,
    )


def controller(project) -> dict:
    return run_state.load(project.out)


def everything(project) -> Counter:
    return Counter(
        (voice, row["text"])
        for lang, path in project.config["inputs"].items()
        for row in map(json.loads, Path(path).read_text().splitlines())
        for voice in project.config["voices"]
    )


def assert_complete(project) -> None:
    spoken = Counter(
        (r["voice"], r["text"])
        for lang in project.config["inputs"]
        for r in project.manifest("metadata", lang)
    )
    assert spoken == everything(project)
    assert len(project.wavs()) == sum(spoken.values())


def test_submit_runs_the_controller_as_a_cpu_slurm_job(slurm_project):
    project = slurm_project(TEXTS4, **BATCHED)
    result = submit(project, "--wait")
    state = controller(project)
    assert result.returncode == 0, (result.stdout, result.stderr, state)
    assert state["status"] == "completed" and state["attempt"] == 1
    records = project.slurm_jobs()
    job = records[state["job_id"]]
    assert job["State"] == "COMPLETED"
    assert "gres/gpu" not in job["AllocTRES"]
    assert len(records) == 3  # the controller and one job per batch
    batch_jobs = [records[job] for job in records if job != state["job_id"]]
    assert all(job["State"] == "COMPLETED" for job in batch_jobs), records
    assert all("gres/gpu=1" in job["AllocTRES"].split(",") for job in batch_jobs), records
    # The controller's log names the generation jobs: one per batch.
    runs, submitted = run_state.submitted(Path(state["log"]))
    assert len(runs) == 1 and sorted(submitted) == sorted(job["JobID"] for job in batch_jobs)
    assert_complete(project)
    assert requested(project) == everything(project)
    # Slurm's own logs of the generation jobs lie under the output.
    assert len(list((project.out / "logs" / "slurm").rglob("*.log"))) == 2
    status = fishflow(project, "status", str(project.out))
    assert status.returncode == 0, status.stderr
    assert f"controller: Slurm job {state['job_id']} (COMPLETED)" in status.stdout
    assert "running jobs: none" in status.stdout
    assert "items: 8 of 8 done (100.0%), 0 failed, 0 to do" in status.stdout
    assert "generation jobs (batches): 2 of 2 finished" in status.stdout


def finish(project, timeout: float = 420) -> dict:
    """Wait until the controller has left the queue; its record. Slurm holds a requeued job
    (BeginTime, 2.5 min measured); the test releases it sooner, though not at once: a job started
    within a second of its requeue was refused ("Job credential revoked")."""
    job = controller(project)["job_id"]
    held_since = {}

    def gone() -> bool:
        queued = slurm("squeue", "-h", "-j", job, "-o", "%T|%r").split()
        if queued != ["PENDING|BeginTime"]:
            held_since.clear()
        elif time.monotonic() - held_since.setdefault(job, time.monotonic()) > RELEASE_AFTER_S:
            slurm("scontrol", "update", f"JobId={job}", "StartTime=now")
        return not queued

    wait_for(gone, "end of the controller job", timeout)
    return controller(project)


def test_controller_out_of_time_is_requeued_and_every_item_is_generated_once(slurm_project):
    project = slurm_project(TEXTS4, **BATCHED)
    # Slow enough that the first one-minute controller cannot finish.
    project.config["server"]["demo"].update(latency_s=1.5)
    result = submit(project, "--time", "1", "--stop-s", "40", "--max-requeues", "8")
    assert result.returncode == 0, result.stderr
    state = finish(project)
    log = Path(state["log"]).read_text()
    assert state["status"] == "completed", log[-5000:]
    assert state["attempt"] >= 2
    assert log.count("requeued: time limit near (SIGUSR2)") == state["attempt"] - 1
    assert_complete(project)
    assert requested(project) == everything(project)


def test_cancel_then_submit_again_resumes_without_duplicates(slurm_project):
    project = slurm_project(TEXTS4, **BATCHED)
    project.config["server"]["demo"].update(latency_s=1.0)
    assert submit(project).returncode == 0
    wait_for(lambda: journaled(project), "journaled item", timeout=180)
    cancel = fishflow(project, "cancel", str(project.out), timeout=300)
    assert cancel.returncode == 0, cancel.stderr
    state = controller(project)
    assert state["status"] == "cancelled"
    assert not project.queued_jobs()
    # Snakemake was stopped cleanly: no stale lock for the next run.
    assert not list((project.root / ".snakemake" / "locks").glob("*"))
    before = requested(project)
    finished = {(r["voice"], r["text"]) for r in journaled(project) if r["status"] == "ok"}
    assert 1 <= len(finished) < sum(everything(project).values())

    project.config["server"]["demo"].update(latency_s=0)
    assert submit(project).returncode == 0
    assert finish(project)["status"] == "completed"
    assert_complete(project)
    counts = requested(project)
    assert all(counts[item] == 1 for item in finished)
    after = counts - before
    assert set(after) == set(everything(project)) - finished
    assert all(n == 1 for n in after.values())
