"""Smoke tests of the real single-node Slurm test cluster (tests/tooling/slurm_cluster.py)."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slurm

FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL"}
SACCT_FIELDS = ("JobID", "JobIDRaw", "State", "Account", "Partition", "AllocTRES")

SNAKEFILE = """\
rule all:
    input:
        "combined.txt",

rule part:
    output:
        "part_{i}.txt",
    resources:
        gpu=1,
    shell:
        "echo {wildcards.i} $SLURM_JOB_ID $CUDA_VISIBLE_DEVICES > {output}"

rule combine:
    input:
        expand("part_{i}.txt", i=[1, 2]),
    output:
        "combined.txt",
    shell:
        "cat {input} > {output}"
"""


def run(cmd: list[str], timeout: float = 30, **kwargs) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert result.returncode == 0, (
        f"{cmd} exited {result.returncode}:\n{result.stdout}{result.stderr}"
    )
    return result.stdout


def sacct(job_id: str) -> dict[str, dict[str, str]]:
    """sacct records of a job and its steps, by JobID ("12", "12.batch", "12.0")."""
    out = run(["sacct", "-n", "-P", "-j", job_id, "-o", ",".join(SACCT_FIELDS)])
    records = [dict(zip(SACCT_FIELDS, line.split("|"), strict=True)) for line in out.splitlines()]
    return {record["JobID"]: record for record in records}


def wait_for_job(
    job_id: str, timeout: float = 60, done: str | None = None
) -> dict[str, dict[str, str]]:
    """The job's sacct records once it (or its record `done`, e.g. an array task "12_2") has
    finished and its record is complete."""
    deadline, records = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        records = sacct(job_id)
        job = records.get(done or job_id, {})
        # slurmctld records a job's start (name, partition) up to ~5 s late, so a job that ends
        # at once is first listed by sacct as "allocation" with its end state but no partition.
        if job.get("State", "").split(" ")[0] in FINISHED and job["Partition"]:
            return records
        time.sleep(0.5)
    pytest.fail(f"Slurm job {job_id} not finished after {timeout} s: {records}")


def sbatch(cluster, tmp_path: Path, script: str, *options: str) -> tuple[str, Path]:
    """Submit `script`; return the job id and the path of its output file."""
    job_id = run(
        ["sbatch", "--parsable", f"--account={cluster.account}", f"--partition={cluster.partition}"]
        + ["--time=2", f"--output={tmp_path}/slurm-%j.out", *options, f"--wrap={script}"]
    ).strip()
    return job_id, tmp_path / f"slurm-{job_id}.out"


def test_gpu_batch_job_is_accounted(slurm_cluster, tmp_path):
    job_id, output = sbatch(
        slurm_cluster, tmp_path, 'echo "CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES"', "--gpus=1"
    )
    job = wait_for_job(job_id)[job_id]
    assert job["State"] == "COMPLETED", output.read_text()
    assert (job["Account"], job["Partition"]) == (slurm_cluster.account, slurm_cluster.partition)
    assert "gres/gpu=1" in job["AllocTRES"]
    assert output.read_text() == "CUDA_VISIBLE_DEVICES=0\n"


def test_srun_step_inside_batch_job(slurm_cluster, tmp_path):
    # Works only with the configs at /etc/slurm: slurmd resets SLURM_CONF inside jobs.
    job_id, output = sbatch(slurm_cluster, tmp_path, "srun --ntasks=1 hostname -s")
    records = wait_for_job(job_id)
    assert records[job_id]["State"] == "COMPLETED", output.read_text()
    assert records[f"{job_id}.0"]["State"] == "COMPLETED"
    assert output.read_text() == f"{slurm_cluster.node}\n"


def test_snakemake_slurm_executor_runs_workflow(slurm_cluster, tmp_path):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    venv_bin = str(Path(sys.executable).parent)  # jobs run snakemake from the same environment
    env = {k: v for k, v in os.environ.items() if k != "SNAKEMAKE_PROFILE"}
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    # The plugin polls sacct until jobs finish; `timeout` bounds it should that ever hang.
    cmd = ["timeout", "-k", "10", "300", sys.executable, "-m", "snakemake", "--executor", "slurm"]
    # The plugin first polls after the init delay, then 10 s later per round that finds nothing
    # finished: a 1 s delay lets each ~5 s job be seen at the 12 s poll.
    cmd += ["--jobs", "2", "--latency-wait", "5", "--slurm-init-seconds-before-status-checks", "1"]
    cmd += ["--default-resources", f"slurm_partition={slurm_cluster.partition}"]
    cmd += [f"slurm_account={slurm_cluster.account}", "runtime=10"]
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=330)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]

    job_ids = re.findall(r"submitted with SLURM jobid (\d+)", log)
    assert len(job_ids) == 3, log[-5000:]
    for job_id in job_ids:
        job = sacct(job_id)[job_id]
        assert (job["State"], job["Account"]) == ("COMPLETED", slurm_cluster.account)

    lines = sorted((tmp_path / "combined.txt").read_text().splitlines())
    assert [line.split()[0] for line in lines] == ["1", "2"]
    for _, job_id, gpu in (line.split() for line in lines):
        assert job_id in job_ids
        assert gpu in {"0", "1"}
