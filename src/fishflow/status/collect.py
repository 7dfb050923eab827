"""The status of a run as one JSON-ready dict (`fishflow status --json`, schema below), from its
files and Slurm only: no Snakemake lock is taken and nothing is written.

Schema "fishflow-status/1" (times are Unix seconds; null where unknown):
  schema, out, now
  run: workdir, snakemake_log, host, pid, started_at, snakemake ("running" | "stopped" |
       "unknown": on another host), controller (null, or the `fishflow submit` controller:
       job_id, slurm_state, status, reason, attempts, log)
  items: total, done, failed, todo
  progress: [{lang, voice, total, done, failed, todo}]
  rate: window_s, spoken (items spoken in the window), per_min (null: none spoken)
  eta: seconds, at (null without a rate, or 0 / now when nothing is left)
  audio_hours: hours of audio in the items done
  gpu_hours: finished (jobs with a servers record), running (so far), total
  batches: planned, finished (with a batch record)
  jobs: running: [{lang, batch, node, pid, slurm_job_id, started_at, running_s, gpus, checked}]
        pending: [{slurm_job_id, rule, lang, batch, reason, partition, asks: {cpus, mem_mb,
                   gpus}, never_starts (null, or why no node can ever run it)}]
  slurm: null (no Slurm here) or "ok" or what went wrong asking it
  errors: the last ERRORS, newest first: {kind: "item", at, lang, voice, id, reason, message}
          or {kind: "job", at, lang, batch, message, log}
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

from fishflow.cluster import run_state, slurm_jobs
from fishflow.cluster.status import configfiles, merged_config
from fishflow.errors import FishflowError
from fishflow.layout import Layout
from fishflow.planning.plan import Plan
from fishflow.planning.summary import ShardProgress, last_records, shard_progress
from fishflow.status import jobs as run_jobs
from fishflow.status import record as run_record

SCHEMA = "fishflow-status/1"
RATE_WINDOW_S = 600.0
ERRORS = 5


def load_plan(out: Path) -> tuple[Plan, dict, dict | None]:
    """The run's plan, its run record and the controller's record (`fishflow submit`)."""
    record = run_record.load(out)
    controller = run_state.load(out)
    if record is not None:
        workdir, config = record["workdir"], record["config"]
    elif controller and "command" in controller:  # submitted before run records existed
        workdir = controller["cwd"]
        with contextlib.chdir(workdir):
            config = merged_config(configfiles(controller["command"]))
        record = {"workdir": workdir, "snakemake_log": None, "host": None, "pid": None}
    else:
        raise FishflowError(
            f"{Layout(out).run_record()}: no run record; it is written when snakemake plans "
            "a run (not a dry run): start the run once with this version of fishflow"
        )
    # Relative paths in the config are relative to the folder snakemake ran in.
    with contextlib.chdir(workdir):
        return Plan(config), record, controller


def collect(out: Path, window_s: float = RATE_WINDOW_S) -> dict:
    out = Path(out).resolve()
    now = time.time()
    plan, record, controller = load_plan(out)
    layout = Layout(plan.out if plan.out.is_absolute() else Path(record["workdir"]) / plan.out)
    since = now - window_s
    with contextlib.chdir(record["workdir"]):
        progress = shard_progress(plan, since=since)

    rows = {}
    for (lang, voice, _), shard in progress.items():
        row = rows.setdefault((lang, voice), {"total": 0, "done": 0, "failed": 0, "todo": 0})
        row["total"] += shard.total
        row["done"] += shard.done
        row["failed"] += shard.failed
        row["todo"] += shard.todo
    items = {key: sum(row[key] for row in rows.values()) for key in ("total", "done", "failed")}
    items["todo"] = items["total"] - items["done"]

    recent = [at for shard in progress.values() for at in shard.recent]
    spoken, span = len(recent), rate_span(now, since, record.get("started_at"), recent)
    per_min = 60.0 * spoken / span if spoken and span > 0 else None
    if items["todo"] == 0:
        eta = {"seconds": 0.0, "at": now}
    elif per_min:
        seconds = 60.0 * items["todo"] / per_min
        eta = {"seconds": round(seconds, 1), "at": now + seconds}
    else:
        eta = {"seconds": None, "at": None}

    logs = [record.get("snakemake_log"), controller and controller.get("log")]
    ids = run_jobs.run_ids([Path(log) for log in logs if log])
    # Only a run that went to Slurm asks it: a local run on a login node stays local.
    slurm = run_jobs.ask_slurm() if ids or controller else run_jobs.Slurm(None, None)
    running = run_jobs.running(layout.out, slurm, now)
    batches = plan.batch_keys()
    busy = {(job["lang"], job["batch"]) for job in running}
    errors = last_failures(layout, progress) + run_jobs.failed(layout, batches, busy)
    errors.sort(key=lambda error: error["at"] or 0.0, reverse=True)
    finished_gpu_s = sum(_gpu_seconds(layout.servers_record(*key)) for key in batches)
    running_gpu_s = sum(job["gpus"] * job["running_s"] for job in running)
    return {
        "schema": SCHEMA,
        "out": str(layout.out),
        "now": now,
        "run": {
            "workdir": record["workdir"],
            "snakemake_log": record.get("snakemake_log"),
            "host": record.get("host"),
            "pid": record.get("pid"),
            "started_at": record.get("started_at"),
            "snakemake": _snakemake_state(record),
            "controller": _controller(controller),
        },
        "items": items,
        "progress": [{"lang": k[0], "voice": k[1], **row} for k, row in sorted(rows.items())],
        "rate": {"window_s": round(span, 1), "spoken": spoken, "per_min": per_min},
        "eta": eta,
        "audio_hours": sum(shard.audio_s for shard in progress.values()) / 3600,
        "gpu_hours": {
            "finished": finished_gpu_s / 3600,
            "running": running_gpu_s / 3600,
            "total": (finished_gpu_s + running_gpu_s) / 3600,
        },
        "batches": {
            "planned": len(batches),
            "finished": sum(layout.batch_record(*key).exists() for key in batches),
        },
        "jobs": {"running": running, "pending": run_jobs.waiting(ids, slurm)},
        "slurm": slurm.problem or ("ok" if slurm.queue is not None else None),
        "errors": errors[:ERRORS],
    }


def rate_span(now: float, since: float, started: float | None, recent: list[float]) -> float:
    """The time the rate is taken over: the window, or less when this run started within it
    and no item was spoken before (a young run's rate is not diluted by time it did not run)."""
    start = max(since, min([started or since, *recent]))
    return now - start


def last_failures(layout: Layout, progress: dict[tuple, ShardProgress]) -> list[dict]:
    """The newest ERRORS failed items. Journals with failures are read newest first, until none
    left can hold a newer one: an item is journaled before its journal's last change."""
    journals = []
    for (lang, voice, shard), counts in progress.items():
        path = layout.journal(lang, voice, shard)
        with contextlib.suppress(FileNotFoundError):
            if counts.failed:
                journals.append((path.stat().st_mtime, lang, voice, path))
    found: list[dict] = []
    for changed, lang, voice, path in sorted(journals, reverse=True):
        if len(found) >= ERRORS and found[ERRORS - 1]["at"] >= changed:
            break
        found += [
            {
                "kind": "item",
                "at": record.get("finished_at") or 0.0,
                "lang": lang,
                "voice": voice,
                "id": record["id"],
                "reason": record.get("reason"),
                "message": record.get("last_error"),
            }
            for record in last_records(path).values()
            if record["status"] != "ok"
        ]
        found.sort(key=lambda error: error["at"], reverse=True)
    return found[:ERRORS]


def _gpu_seconds(path: Path) -> float:
    """GPU time a finished job held: its run time x the GPUs its servers saw (none when no
    server ran: nothing was left, or they failed at start)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return 0.0
    servers = record.get("servers") or {}
    visible = servers.get("cuda_visible_devices") or ""
    gpus = len([gpu for gpu in visible.split(",") if gpu.strip()])
    return gpus * max(record["finished_at"] - record["started_at"], 0.0)


def _snakemake_state(record: dict) -> str:
    if not record.get("pid"):
        return "unknown"
    alive = run_jobs.pid_alive(record["pid"], record["host"])
    return {True: "running", False: "stopped", None: "unknown"}[alive]


def _controller(state: dict | None) -> dict | None:
    if not state or "job_id" not in state:
        return None
    try:
        slurm_state = slurm_jobs.state(state["job_id"])
    except FishflowError:
        slurm_state = None
    return {
        "job_id": state["job_id"],
        "slurm_state": slurm_state,
        "status": state.get("status"),
        "reason": state.get("reason"),
        "attempts": state.get("attempt", 0),
        "log": state.get("log"),
    }
