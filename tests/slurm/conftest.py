"""The workflow on the real Slurm test cluster: projects run with a test-sized copy of the real
Slurm profile, their Slurm jobs, and the cancellation of those jobs at teardown."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO, make_config
from tests.workflow_runner import Project

# JobID names an array task <array job>_<task>; JobIDRaw is its own id, its $SLURM_JOB_ID.
SACCT_FIELDS = ("JobID", "JobIDRaw", "State", "AllocTRES", "NodeList", "WorkDir")
SERVER = {"backoff_s": 0.05, "retries": 2, "startup_timeout_s": 60}
# What snakemake-executor-plugin-slurm 2.8.0 prints per sbatch call: a single job, or an array.
SUBMITTED_JOB = re.compile(r"submitted with SLURM jobid (\d+)")
SUBMITTED_ARRAY = re.compile(
    r"Submitted array job with Snakemake IDs [\d,]+ and SLURM job ID (\d+)\. "
    r"The individual task IDs are (\d+)-(\d+)\."
)


def submitted(output: str) -> list[str]:
    """The Slurm jobs a snakemake run submitted, as sacct's JobID names them ("12", "13_2")."""
    jobs = SUBMITTED_JOB.findall(output)
    for array, first, last in SUBMITTED_ARRAY.findall(output):
        jobs += [f"{array}_{task}" for task in range(int(first), int(last) + 1)]
    return jobs


def sbatch_calls(output: str) -> int:
    return len(SUBMITTED_JOB.findall(output)) + len(SUBMITTED_ARRAY.findall(output))


def slurm(*cmd: str) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, f"{cmd} exited {result.returncode}: {result.stderr}"
    return result.stdout


def queued_jobs(under: Path) -> list[str]:
    """Pending or running Slurm jobs submitted from `under` (the plugin passes -D <workdir>)."""
    lines = slurm("squeue", "-h", "-o", "%i|%Z").splitlines()
    jobs = (line.split("|", 1) for line in lines)
    return [job for job, workdir in jobs if Path(workdir).is_relative_to(under)]


@dataclass
class SlurmProject(Project):
    """A project whose snakemake runs with `--profile <profile>`."""

    profile: Path | None = None

    def command(self, *args: str) -> list[str]:
        return super().command("--profile", str(self.profile), *args)

    def slurm_jobs(self) -> dict[str, dict[str, str]]:
        """sacct's allocation record of each Slurm job submitted from this project, by job id."""
        out = slurm("sacct", "-X", "-n", "-P", "-S", "now-1days", "-o", ",".join(SACCT_FIELDS))
        records = [
            dict(zip(SACCT_FIELDS, line.split("|"), strict=True)) for line in out.splitlines()
        ]
        return {r["JobID"]: r for r in records if r["WorkDir"] == str(self.root.resolve())}

    def queued_jobs(self) -> list[str]:
        return queued_jobs(self.root.resolve())


@pytest.fixture(scope="session")
def slurm_profile(tmp_path_factory) -> Path:
    """profiles/slurm with only what the 2-CPU, ~21 GB test node cannot give changed: the
    batch job's CPUs and memory, so that two batch jobs (one per fake GPU) fit side by side.
    Everything else, the job arrays included, is the real profile's."""
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    profile["set-resources"]["speak"].update(cpus_per_task=1, mem_mb=1000)
    # The plugin polls after this delay, then 10 s later per round that finds nothing finished.
    profile["slurm-init-seconds-before-status-checks"] = 1
    # One machine: no shared file system to wait for.
    profile["latency-wait"] = 10
    directory = tmp_path_factory.mktemp("slurm-profile")
    (directory / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return directory


@pytest.fixture
def slurm_project(slurm_cluster, slurm_profile, tmp_path) -> Iterator[Callable[..., SlurmProject]]:
    """Makes a project in tmp_path/slurm; cancels whatever it left in Slurm at teardown."""

    def make(texts: dict[str, list], voices=("alice", "bob"), **overrides) -> SlurmProject:
        root = tmp_path / "slurm"
        config = make_config(root, texts, voices, server=SERVER, **overrides)
        env = {
            "FISHFLOW_SLURM_ACCOUNT": slurm_cluster.account,
            "FISHFLOW_SLURM_PARTITION": slurm_cluster.partition,
        }
        return SlurmProject(root, config, env, profile=slurm_profile)

    yield make
    if jobs := queued_jobs(tmp_path.resolve()):
        slurm("scancel", *jobs)
