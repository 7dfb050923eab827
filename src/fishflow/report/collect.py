"""Read what a run left behind: manifests (items), the launchers' records (server starts, GPU
use), generation logs."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime
from pathlib import Path

from fishflow import atomic
from fishflow.serving.launcher import RECORD_SCHEMA

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


def read_jobs(log_dir: Path) -> list[dict]:
    """One entry per launcher run (a generation job's servers), from the records the launchers
    write beside their logs (`<batch>.json`); a rerun of a batch appends a run."""
    jobs = []
    for path in sorted(log_dir.glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("schema") != RECORD_SCHEMA:
            continue
        for run in record["runs"]:
            jobs.append({"batch": record["batch"], **run})
    return jobs


def servers(jobs: list[dict]) -> list[dict]:
    """One entry per server (replica) start of the given jobs."""
    return [
        {
            "batch": job["batch"],
            "replica": start["replica"],
            "backend": job["backend"],
            "host": job["host"],
            "slurm_job_id": job["slurm_job_id"],
            "startup_s": start.get("startup_s"),
        }
        for job in jobs
        for start in job["starts"]
    ]


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
