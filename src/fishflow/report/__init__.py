"""Benchmark reports: speed and quality figures per language × voice, per language and in
total, plots, audio samples and provenance, as `report/index.html` (self-contained),
`report/report.json` and `report/items.csv`.

In report.json everything that changes from one run of the same config to the next (seconds,
rates, clock times, servers) lives in `timing` objects, so two runs can be compared on the rest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from fishflow import atomic
from fishflow.records import CSV_FIELDS
from fishflow.report.collect import read_items, read_jobs, servers, write_items_csv
from fishflow.report.provenance import JudgeModel, provenance
from fishflow.report.render import render_html
from fishflow.report.stats import by_language, figures
from fishflow.serving.gpu_usage import advice

SCHEMA = "fishflow-report/1"


@dataclass(frozen=True)
class ReportInputs:
    """Every file the report reads (the `report` rule declares each), besides the WAVs of the
    few samples it embeds, which the manifests name."""

    metadata: list[Path]
    failed: list[Path]
    summary: Path
    servers: list[Path]
    checkpoint: Path | None
    judge_models: list[JudgeModel]


def build_report(inputs: ReportInputs, items: list[dict], config: dict) -> dict:
    """The report.json content: the run's items (from the manifests), summary and the
    generation jobs' servers records."""
    gates = (config.get("quality") or {}).get("gates") or {}
    rows, total = figures(items, gates)
    jobs = read_jobs(inputs.servers)
    starts = servers(jobs)
    checkpoint = json.loads(inputs.checkpoint.read_text()) if inputs.checkpoint else None
    return {
        "schema": SCHEMA,
        "title": Path(config["output_dir"]).name,
        "summary": json.loads(inputs.summary.read_text())["total"],
        "rows": rows,
        "languages": by_language(items, gates),
        "total": total,
        "provenance": provenance(config, items, checkpoint, inputs.judge_models),
        "timing": {
            "started_at": _clock(min((job["started_at"] for job in jobs), default=None)),
            "finished_at": _clock(max((job["finished_at"] for job in jobs), default=None)),
            # Start-up (model load, warm-up, voice registration) is paid once per server start
            # and kept out of every throughput figure.
            "server_startup_s": round(sum(s["startup_s"] or 0 for s in starts), 3),
            "servers": starts,
            "jobs": [gpu_use(job) for job in jobs if job["servers"]],
        },
    }


def _clock(timestamp: float | None) -> str | None:
    """When the generation jobs ran, to the second, in local time."""
    return datetime.fromtimestamp(timestamp).isoformat(timespec="seconds") if timestamp else None


def gpu_use(job: dict) -> dict:
    """What the report shows of one generation job's GPUs: busy fraction, memory, advice."""
    return {
        "batch": job["batch"],
        "host": job["host"],
        "slurm_job_id": job["slurm_job_id"],
        "device": job["servers"]["device"],
        "replicas": job["servers"]["replicas"],
        "gpu": job["servers"]["gpu"],
        "advice": advice(job["servers"]["gpu"]),
    }


def write_report(inputs: ReportInputs, config: dict, html: Path, json: Path, csv: Path) -> None:
    items = read_items(inputs.metadata, inputs.failed)
    report = build_report(inputs, items, config)
    atomic.write_json(json, report)
    write_items_csv(csv, items, CSV_FIELDS)
    atomic.write_text(html, render_html(report, items, Path(config["output_dir"])))
