"""`fishflow status` as text: progress bars per language x voice, rate and estimated end, jobs,
errors; and `--watch`, which redraws it in place."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path

from fishflow.status.collect import collect

BAR = 24
# Cursor home, clear to the end of each line and of the screen: a redraw without flicker.
HOME, CLEAR_LINE, CLEAR_BELOW, CLEAR_SCREEN = "\x1b[H", "\x1b[K", "\x1b[J", "\x1b[2J"


def bar(done: int, failed: int, total: int) -> str:
    """Done as "#", failed as "x", to do as "."."""
    if total == 0:
        return "[" + " " * BAR + "]"
    full = round(BAR * done / total)
    bad = min(round(BAR * failed / total), BAR - full)
    return "[" + "#" * full + "x" * bad + "." * (BAR - full - bad) + "]"


def clock(at: float | None) -> str:
    return datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S") if at else "unknown"


def duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min" if minutes else f"{int(seconds)} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours < 48 else f"{hours // 24} d {hours % 24} h"


def text(status: dict) -> str:
    run, items = status["run"], status["items"]
    lines = [f"fishflow status {status['out']}  ({clock(status['now'])})"]
    lines.append(
        f"run: snakemake {run['snakemake']}"
        + (f" on {run['host']} (pid {run['pid']})" if run["host"] else "")
        + f", planned {clock(run['started_at'])}"
    )
    if controller := run["controller"]:
        reason = f" ({controller['reason']})" if controller["reason"] else ""
        lines.append(
            f"controller: Slurm job {controller['job_id']} "
            f"({controller['slurm_state'] or 'unknown to Slurm'}); fishflow: "
            f"{controller['status']}{reason}; attempts: {controller['attempts']}; "
            f"log: {controller['log']}"
        )
    share = 100 * items["done"] / items["total"] if items["total"] else 100.0
    lines += [
        "",
        f"items: {items['done']} of {items['total']} done ({share:.1f}%), "
        f"{items['failed']} failed, {items['todo']} to do",
    ]
    width = max([len(f"{r['lang']} {r['voice']}") for r in status["progress"]] + [10])
    for row in status["progress"]:
        name = f"{row['lang']} {row['voice']}".ljust(width)
        lines.append(
            f"  {name} {bar(row['done'], row['failed'], row['total'])} "
            f"{row['done']:>7}/{row['total']:<7} failed {row['failed']}"
        )
    rate, eta = status["rate"], status["eta"]
    window = duration(rate["window_s"])
    if rate["per_min"]:
        speed = f"{rate['per_min']:.1f} items/min over the last {window}"
    else:
        speed = f"no item spoken in the last {window}"
    if eta["seconds"] == 0:
        end = "nothing left to speak"
    elif eta["seconds"] is not None:
        end = f"estimated end {clock(eta['at'])} (in {duration(eta['seconds'])})"
    else:
        end = "no estimated end without a rate"
    gpu = status["gpu_hours"]
    batches = status["batches"]
    lines += [
        "",
        f"rate: {speed}; {end}",
        f"audio made: {status['audio_hours']:.2f} h; GPU-hours: {gpu['total']:.2f} "
        f"({gpu['finished']:.2f} in finished jobs, {gpu['running']:.2f} in running ones)",
        f"generation jobs (batches): {batches['finished']} of {batches['planned']} finished",
    ]
    lines += _jobs(status)
    if status["errors"]:
        lines += ["", "last errors:"]
        for error in status["errors"]:
            where = (
                f"item {error['lang']}/{error['voice']}/{error['id']}: {error['reason']}"
                if error["kind"] == "item"
                else f"job {error['lang']}/{error['batch']} (log {error['log']})"
            )
            lines.append(f"  {clock(error['at'])} {where}: {error['message']}")
    return "\n".join(lines)


def _jobs(status: dict) -> list[str]:
    running, pending = status["jobs"]["running"], status["jobs"]["pending"]
    lines = ["", f"running jobs: {len(running) or 'none'}"]
    for job in running:
        slurm = f", Slurm job {job['slurm_job_id']}" if job["slurm_job_id"] else ""
        checked = "" if job["checked"] else " (not checkable from this host)"
        lines.append(
            f"  {job['lang']}/{job['batch']} on {job['node']}{slurm}, pid {job['pid']}, "
            f"{duration(job['running_s'])}, {job['gpus']} GPU(s){checked}"
        )
    if status["slurm"] not in (None, "ok"):
        lines.append(f"  Slurm did not answer: {status['slurm']}")
    if pending:
        lines.append(f"waiting in Slurm: {len(pending)}")
    for job in pending:
        what = "/".join(job[key] for key in ("lang", "batch") if key in job) or job.get("rule", "")
        lines.append(f"  {what} Slurm job {job['slurm_job_id']}: {job['reason']}")
        if job["never_starts"]:
            lines.append(f"  !! job {job['slurm_job_id']} can never start: {job['never_starts']}")
    return lines


def watch(out: Path, interval_s: float) -> None:
    """Redraw until Ctrl-C."""
    sys.stdout.write(CLEAR_SCREEN)
    try:
        while True:
            screen = text(collect(out)).replace("\n", CLEAR_LINE + "\n")
            sys.stdout.write(HOME + screen + CLEAR_LINE + "\n" + CLEAR_BELOW)
            sys.stdout.flush()
            time.sleep(interval_s)
    except KeyboardInterrupt:
        sys.stdout.write("\n")
