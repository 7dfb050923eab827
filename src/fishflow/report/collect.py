"""Read what a run left behind: the manifests (items) and the generation jobs' servers
records (server starts, GPU use)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from fishflow import atomic
from fishflow.errors import FishflowError
from fishflow.records import SCORE_COLUMNS, SERVERS_SCHEMA


def read_items(metadata: list[Path], failed: list[Path]) -> list[dict]:
    """Every item of the run, spoken or failed, in manifest (plan) order."""
    items = []
    for spoken, broken in zip(metadata, failed, strict=True):
        items += [
            {**record, "status": "ok", "reason": None} for record in atomic.read_jsonl(spoken)
        ]
        items += [{**record, "status": "failed"} for record in atomic.read_jsonl(broken)]
    for item in items:
        item["text_chars"] = len(item["text"])
        # Manifests written before the judge, or with it off, have no scores (not measured).
        item.setdefault("scores", None)
        item.setdefault("takes", None)
        for key in SCORE_COLUMNS:
            item[key] = (item["scores"] or {}).get(key)
    return items


def read_jobs(records: list[Path]) -> list[dict]:
    """One entry per generation job, from its servers record."""
    jobs = []
    for path in records:
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("schema") != SERVERS_SCHEMA:
            raise FishflowError(f"{path}: not a servers record ({SERVERS_SCHEMA})")
        jobs.append({**record, "batch": f"{record['lang']}/{record['batch']}"})
    return jobs


def servers(jobs: list[dict]) -> list[dict]:
    """One entry per server (replica) start of the given jobs."""
    return [
        {
            "batch": job["batch"],
            "replica": start["replica"],
            "backend": job["servers"]["backend"],
            "host": job["host"],
            "slurm_job_id": job["slurm_job_id"],
            "startup_s": start.get("startup_s"),
        }
        for job in jobs
        if job["servers"]
        for start in job["servers"]["starts"]
    ]


def write_items_csv(path: Path, items: list[dict], columns: tuple[str, ...]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(items)
    atomic.write_text(path, buffer.getvalue())
