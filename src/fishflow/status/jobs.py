"""A run's generation jobs for `fishflow status`: running (their running records, checked
against Slurm or the process table), waiting in Slurm (with the reason, and a call-out when the
job can never start) and failed (their logs).

The run's Slurm jobs are the ones named after its Snakemake run ids (the Slurm executor plugin
names every job it submits after the run, and prints the id in the Snakemake log), and the jobs
whose running records name them.
"""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

from fishflow.cluster import run_state, slurm_jobs, slurm_nodes
from fishflow.cluster.slurm_nodes import Request
from fishflow.errors import FishflowError
from fishflow.layout import Layout

RUN_ID = run_state.RUN_ID
# The Slurm profile's resource for each figure of a request.
PROFILE_KEYS = {"cpus": "cpus_per_task", "mem_mb": "mem_mb", "gpus": "gpu"}
ERROR_LINE = re.compile(r"\b(ERROR|Error|error)\b")


@dataclass(frozen=True)
class Slurm:
    """What Slurm said, once per status: the user's queue and the nodes (None: no Slurm here,
    or it did not answer; `problem` says which)."""

    queue: list[slurm_jobs.QueuedJob] | None
    nodes: list[slurm_nodes.Node] | None
    problem: str | None = None


def ask_slurm() -> Slurm:
    try:
        nodes = slurm_nodes.cluster_nodes()
        if nodes is None:
            return Slurm(None, None)
        return Slurm(slurm_jobs.my_jobs(), nodes)
    except FishflowError as exc:
        return Slurm(None, None, str(exc))


def run_ids(logs: list[Path]) -> set[str]:
    """Slurm run ids in Snakemake logs (the run's own, and the controller's)."""
    ids: set[str] = set()
    for log in logs:
        try:
            ids.update(RUN_ID.findall(log.read_text(errors="replace")))
        except OSError:
            continue
    return ids


def pid_alive(pid: int, host: str) -> bool | None:
    """Whether a process of this host lives; None for another host's (not knowable here)."""
    if host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running(out: Path, slurm: Slurm, now: float) -> list[dict]:
    """The generation jobs whose running record is live: their Slurm job runs, or (no Slurm
    job) their process does, or it is on another host that this one cannot check."""
    queued = {job.id: job for job in slurm.queue or []}
    jobs = []
    layout = Layout(out)
    pattern = layout.running_record("*", "*").relative_to(layout.out)
    for path in sorted(layout.out.glob(str(pattern))):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # removed as the job ended
        job_id = record.get("slurm_job_id")
        if job_id and slurm.queue is not None:
            alive = job_id in queued and queued[job_id].state == "RUNNING"
        else:
            alive = pid_alive(record["pid"], record["host"])
        if alive is False:
            continue  # left by a killed job
        node = queued[job_id].nodes if job_id in queued else record["host"]
        jobs.append(
            {
                "lang": record["lang"],
                "batch": record["batch"],
                "node": node,
                "pid": record["pid"],
                "slurm_job_id": job_id,
                "started_at": record["started_at"],
                "gpus": record["gpus"],
                "running_s": round(now - record["started_at"], 1),
                "checked": alive is True,
            }
        )
    return jobs


def waiting(ids: set[str], slurm: Slurm) -> list[dict]:
    """The run's jobs that Slurm keeps pending, with its reason, and why one never starts."""
    asks: dict[tuple, int] = {}  # GPUs per request, asked of Slurm once per distinct request
    jobs = []
    for job in slurm.queue or []:
        if job.name not in ids or job.state != "PENDING":
            continue
        never = None
        key = (job.cpus, job.mem_mb, job.partition)
        if key not in asks:
            asks[key] = _gpus(job.id)
        request = Request(job.cpus, job.mem_mb, asks[key])
        misfit = slurm_nodes.misfit(request, job.partition, slurm.nodes or [])
        if misfit:
            members = slurm_nodes.partition_nodes(slurm.nodes or [], job.partition)
            rule = job.rule or "<rule>"
            keys = [
                f"set-resources.{rule}.{PROFILE_KEYS[what]}"
                for what in slurm_nodes.exceeded(request, members)
            ]
            never = f"{misfit}; change {', '.join(keys) or 'its resources'} in the Slurm profile"
        elif job.may_never_start:
            never = f"Slurm's reason {job.reason}: it may never start"
        jobs.append(
            {
                "slurm_job_id": job.id,
                "rule": job.rule,
                **batch_of(job),
                "reason": job.reason,
                "partition": job.partition,
                "asks": {"cpus": job.cpus, "mem_mb": job.mem_mb, "gpus": asks[key]},
                "never_starts": never,
            }
        )
    return jobs


def batch_of(job: slurm_jobs.QueuedJob) -> dict[str, str]:
    """{lang, batch} of a generation job: the speak rule's wildcards, in the order of its output
    pattern (Layout.batch_record: lang, then batch); {} for any other job."""
    values = job.wildcard_values
    if job.rule != "speak" or len(values) != 2:
        return {}
    return dict(zip(("lang", "batch"), values, strict=True))


def _gpus(job_id: str) -> int:
    try:
        return slurm_jobs.requested_gpus(slurm_jobs.job_record(job_id))
    except FishflowError:
        return 0  # left the queue meanwhile


def failed(layout: Layout, batches: list[tuple[str, str]], busy: set[tuple[str, str]]) -> list:
    """Batches whose last job failed: its log is newer than the batch's record (or there is no
    record) and no job of it runs now. Each with the log's last error line."""
    errors = []
    for lang, batch in batches:
        if (lang, batch) in busy:
            continue
        log = layout.speak_log(lang, batch)
        try:
            logged = log.stat().st_mtime
        except FileNotFoundError:
            continue
        try:
            if layout.batch_record(lang, batch).stat().st_mtime >= logged:
                continue
        except FileNotFoundError:
            pass
        errors.append(
            {
                "kind": "job",
                "at": logged,
                "lang": lang,
                "batch": batch,
                "message": last_error(log),
                "log": str(log),
            }
        )
    return errors


def last_error(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if ERROR_LINE.search(line)]
    return (errors or lines or ["(empty log)"])[-1]
