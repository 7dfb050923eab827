"""Asking Slurm about jobs and cancelling them: the few scheduler calls the controller needs."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterable

from fishflow.errors import FishflowError

TIMEOUT_S = 60


def _call(*cmd: str) -> str:
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
    lines = _call("squeue", "--me", "-r", "-h", "-o", "%i|%T|%j").splitlines()
    jobs = (line.split("|", 2) for line in lines if line)
    return {job: state for job, state, name in jobs if job in ids or name in names}


def final_state(job_id: str) -> str | None:
    """The accounting record's state of a job that has left the queue (None if unknown)."""
    out = _call("sacct", "-X", "-n", "-P", "-j", job_id, "-o", "State")
    states = out.split()
    return states[-1] if states else None


def state(job_id: str) -> str | None:
    return queued(ids=[job_id]).get(job_id) or final_state(job_id)


def cancel(job_ids: Iterable[str], signal: str | None = None) -> None:
    ids = sorted(set(job_ids))
    if ids:
        _call("scancel", *([f"--signal={signal}"] if signal else []), *ids)


def wait_until_gone(poll_s: float, timeout_s: float | None = None, **which) -> dict[str, str]:
    """Wait until no job of `which` (see `queued`) is in the queue; return those left."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while (left := queued(**which)) and (deadline is None or time.monotonic() < deadline):
        time.sleep(poll_s)
    return left
