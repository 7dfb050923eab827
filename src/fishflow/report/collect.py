"""Read what a run left behind: manifests (items), server logs (start-ups), generation logs."""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime
from pathlib import Path

from .. import atomic

ITEM_FIELDS = (
    "lang",
    "voice",
    "id",
    "status",
    "reason",
    "text_chars",
    "duration_s",
    "generation_s",
    "attempts",
    "seed",
    "sha256",
    "path",
    "text",
)
# Lines written by fishflow.launch into logs/server/<batch>.log.
_STARTING = re.compile(
    r"fishflow: \[(r\d+)\] starting (\S+) server on (\S+?):\d+ .*\(Slurm job (\S+?),"
)
_READY = re.compile(r"fishflow: \[(r\d+)\] server ready at \S+ after ([0-9.]+) s")
# rulekit's log format starts every line with "%(asctime)s".
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ ", re.MULTILINE)


def read_items(out: Path, languages: list[str]) -> list[dict]:
    """Every item of the run, spoken or failed, in manifest (plan) order."""
    items = []
    for lang in languages:
        for record in atomic.read_jsonl(out / f"metadata_{lang}.jsonl"):
            items.append({**record, "status": "ok", "reason": None})
        for record in atomic.read_jsonl(out / f"failed_{lang}.jsonl"):
            items.append({**record, "status": "failed"})
    for item in items:
        item["text_chars"] = len(item["text"])
    return items


def read_servers(log_dir: Path) -> list[dict]:
    """One entry per server (replica) start in the launchers' logs; a rerun appends to a batch's
    log, and replicas start side by side, so a ready line belongs to its replica's last start."""
    servers = []
    for log in sorted(log_dir.glob("*.log")):
        latest = {}
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            if match := _STARTING.search(line):
                replica, backend, host, job = match.groups()
                latest[replica] = {
                    "batch": log.stem,
                    "replica": replica,
                    "backend": backend,
                    "host": host,
                    "slurm_job_id": None if job == "None" else job,
                    "startup_s": None,
                }
                servers.append(latest[replica])
            elif (match := _READY.search(line)) and match.group(1) in latest:
                latest[match.group(1)]["startup_s"] = float(match.group(2))
    return servers


def run_window(log_dir: Path) -> tuple[str | None, str | None]:
    """First and last time stamp of the generation logs: when the run generated audio."""
    stamps = []
    for log in log_dir.rglob("*.log"):
        stamps += _STAMP.findall(log.read_text(encoding="utf-8", errors="replace"))
    if not stamps:
        return None, None
    times = sorted(datetime.fromisoformat(stamp) for stamp in stamps)
    return times[0].isoformat(), times[-1].isoformat()


def write_items_csv(path: Path, items: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, ITEM_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(items)
    atomic.write_text(path, buffer.getvalue())
