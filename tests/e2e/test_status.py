"""`fishflow status` of a plain local `snakemake` run of the demo server: while it runs (a job
running on this host, progress, a rate) and after (everything done, nothing running), as text
and as JSON; and it takes no Snakemake lock."""

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.workflow_runner import assert_ok, kill_group

FISHFLOW = str(Path(sys.executable).parent / "fishflow")


def status(project, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [FISHFLOW, "status", str(project.out), *args],
        cwd=project.root,
        env=project.environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result


def journaled(project) -> int:
    journals = (project.out / "work" / "progress").rglob("*.jsonl")
    return sum(len(path.read_text().splitlines()) for path in journals)


def test_status_of_a_plain_snakemake_run_while_running_and_after(project):
    project.config["server"]["demo"] = {"latency_s": 2.0}
    process = project.start()
    try:
        deadline = time.monotonic() + 120
        while journaled(project) < 2:
            assert process.poll() is None and time.monotonic() < deadline, "no item spoken"
            time.sleep(0.2)
        during = json.loads(status(project, "--json").stdout)
        text = status(project).stdout
        stdout, _ = process.communicate(timeout=300)
    finally:
        kill_group(process)
    assert_ok(subprocess.CompletedProcess(process.args, process.returncode, stdout, ""))

    assert during["schema"] == "fishflow-status/1"
    assert during["run"]["snakemake"] == "running"
    assert during["items"]["total"] == 20  # 2 languages x 5 texts x 2 voices
    assert 0 < during["items"]["done"] < 20 and during["items"]["todo"] > 0
    assert during["rate"]["per_min"] > 0 and during["eta"]["at"] > during["now"]
    running = during["jobs"]["running"]  # one batch per language, on 2 cores
    assert {(job["lang"], job["batch"]) for job in running} <= {("de", "b00000"), ("en", "b00000")}
    assert running and all(job["checked"] and job["node"] for job in running)
    assert all(job["slurm_job_id"] is None and job["gpus"] == 0 for job in running)
    assert f"running jobs: {len(running)}" in text
    assert "estimated end" in text and "items/min" in text

    after = json.loads(status(project, "--json").stdout)
    assert after["run"]["snakemake"] == "stopped"
    assert after["items"] == {"total": 20, "done": 20, "failed": 0, "todo": 0}
    assert {(row["lang"], row["voice"], row["done"]) for row in after["progress"]} == {
        (lang, voice, 5) for lang in ("de", "en") for voice in ("alice", "bob")
    }
    assert after["jobs"] == {"running": [], "pending": []} and after["errors"] == []
    assert after["batches"] == {"planned": 2, "finished": 2}
    manifests = [project.manifest("metadata", lang) for lang in ("de", "en")]
    seconds = sum(row["duration_s"] for rows in manifests for row in rows)
    assert abs(after["audio_hours"] - seconds / 3600) < 1e-6
    assert after["gpu_hours"]["total"] == 0  # the demo server runs on the CPU
    text = status(project).stdout
    assert "items: 20 of 20 done (100.0%)" in text and "nothing left to speak" in text
    assert "running jobs: none" in text
    # Nothing of Snakemake's was locked or written by status.
    assert not list((project.root / ".snakemake" / "locks").glob("*"))
