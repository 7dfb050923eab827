"""Asking Slurm about jobs and cancelling them: the few scheduler calls the controller needs."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass

from fishflow.errors import FishflowError

TIMEOUT_S = 60
# `fishflow status`: each job of the user, pending ones with their reason. %k is the comment the
# Slurm executor plugin sets: "rule_<rule>_wildcards_<values joined by _>" (plugin 2.8.0,
# utils.get_job_wildcards: the values only, "rule_speak_wildcards_en_b00000"), or "rule_<rule>".
SQUEUE_FORMAT = "%i|%T|%j|%k|%N|%r|%C|%m|%b|%P|%S|%V"
COMMENT = re.compile(r"^rule_(?P<rule>\w+?)(?:_wildcards_(?P<values>.*))?$")
MEMORY = re.compile(r"^(\d+(?:\.\d+)?)([KMGT]?)$")
MB_PER_UNIT = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 * 1024}
# Pending reasons of a job that waits on its own request, not on other jobs: it may never start.
NEVER_REASONS = (
    "PartitionConfig",
    "PartitionNodeLimit",
    "PartitionTimeLimit",
    "ReqNodeNotAvail",
    "BadConstraints",
    "InvalidAccount",
    "InvalidQOS",
)


@dataclass(frozen=True)
class QueuedJob:
    id: str
    state: str
    name: str
    comment: str
    nodes: str
    reason: str
    cpus: int
    mem_mb: int
    partition: str
    start: str  # start time (running) or "N/A"

    @property
    def rule(self) -> str | None:
        """The Snakemake rule in the plugin's comment."""
        match = COMMENT.match(self.comment)
        return match["rule"] if match else None

    @property
    def wildcard_values(self) -> list[str]:
        """The job's wildcard values, in the order of the rule's output pattern."""
        match = COMMENT.match(self.comment)
        return match["values"].split("_") if match and match["values"] else []

    @property
    def may_never_start(self) -> bool:
        return self.state == "PENDING" and self.reason.startswith(NEVER_REASONS)


def memory_mb(text: str) -> int:
    """Slurm's memory figure ("68000M", "2G", "512K") in MB; 0 when not a figure."""
    match = MEMORY.match(text.strip())
    return round(float(match[1]) * MB_PER_UNIT[match[2]]) if match else 0


def parse_squeue(text: str) -> list[QueuedJob]:
    """Jobs from `squeue -h -o SQUEUE_FORMAT`."""
    jobs = []
    for line in text.splitlines():
        if not line.strip():
            continue
        job, state, name, comment, nodes, reason, cpus, mem, _, partition, start, _ = line.split(
            "|", 11
        )
        jobs.append(
            QueuedJob(
                job,
                state,
                name,
                comment,
                nodes,
                reason,
                int(cpus) if cpus.isdigit() else 0,
                memory_mb(mem),
                partition,
                start,
            )
        )
    return jobs


def my_jobs() -> list[QueuedJob]:
    """The user's jobs in the queue (array tasks one by one)."""
    return parse_squeue(call("squeue", "--me", "-r", "-h", "-o", SQUEUE_FORMAT))


def parse_job_record(text: str) -> dict[str, str]:
    """`scontrol show job -o ID`: one line of Key=Value pairs."""
    return dict(part.split("=", 1) for part in text.split() if "=" in part)


def requested_gpus(record: dict[str, str]) -> int:
    """GPUs a job asks for, from its TRES ("cpu=8,mem=68000M,node=1,billing=8,gres/gpu=1")."""
    tres = dict(part.split("=", 1) for part in record.get("TRES", "").split(",") if "=" in part)
    gpus = tres.get("gres/gpu", "0")
    return int(gpus) if gpus.isdigit() else 0


def job_record(job_id: str) -> dict[str, str]:
    return parse_job_record(call("scontrol", "show", "job", "-o", job_id))


def call(*cmd: str) -> str:
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FishflowError(f"`{' '.join(cmd)}` failed: {exc}") from exc
    if result.returncode != 0:
        raise FishflowError(
            f"`{' '.join(cmd)}` exited {result.returncode}: {result.stderr.strip()}"
        )
    return result.stdout


def queued(*, names: Iterable[str] = (), ids: Iterable[str] = ()) -> dict[str, str]:
    """Jobs still in the queue (pending, running, completing) with one of these names (the Slurm
    plugin names every job after its Snakemake run) or ids: {job id: state}."""
    names, ids = set(names), set(ids)
    if not names and not ids:
        return {}
    # All of the user's jobs, filtered here: `squeue -j` fails for ids that have left the system.
    # -r: a job array's tasks one by one ("12_3"), pending ones too, not folded into "12_[3-9]".
    lines = call("squeue", "--me", "-r", "-h", "-o", "%i|%T|%j").splitlines()
    jobs = (line.split("|", 2) for line in lines if line)
    return {job: state for job, state, name in jobs if job in ids or name in names}


def final_state(job_id: str) -> str | None:
    """The accounting record's state of a job that has left the queue (None if unknown)."""
    out = call("sacct", "-X", "-n", "-P", "-j", job_id, "-o", "State")
    states = out.split()
    return states[-1] if states else None


def state(job_id: str) -> str | None:
    return queued(ids=[job_id]).get(job_id) or final_state(job_id)


def cancel(job_ids: Iterable[str], signal: str | None = None) -> None:
    ids = sorted(set(job_ids))
    if ids:
        call("scancel", *([f"--signal={signal}"] if signal else []), *ids)


def wait_until_gone(poll_s: float, timeout_s: float | None = None, **which) -> dict[str, str]:
    """Wait until no job of `which` (see `queued`) is in the queue; return those left."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while (left := queued(**which)) and (deadline is None or time.monotonic() < deadline):
        time.sleep(poll_s)
    return left
