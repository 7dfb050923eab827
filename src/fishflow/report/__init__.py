"""Benchmark reports: per language × voice figures, plots, audio samples and provenance, as
`report/index.html` (self-contained), `report/report.json` and `report/items.csv`.

In report.json everything that changes from one run of the same config to the next (seconds,
rates, clock times, servers) lives in `timing` objects, so two runs can be compared on the rest.
"""

from __future__ import annotations

import json
from pathlib import Path

from fishflow import atomic
from fishflow.report.collect import read_items, read_jobs, run_window, servers, write_items_csv
from fishflow.report.provenance import provenance
from fishflow.report.render import render_html
from fishflow.report.stats import figures
from fishflow.serving.gpu_usage import advice

SCHEMA = "fishflow-report/1"


def build_report(out: Path, items: list[dict], config: dict) -> dict:
    """The report.json content of the run in `out`: its items (from the manifests), summary
    and logs."""
    rows, total = figures(items)
    jobs = read_jobs(out / "logs" / "server")
    starts = servers(jobs)
    started, finished = run_window(out / "logs" / "generate")
    return {
        "schema": SCHEMA,
        "title": Path(config["output_dir"]).name,
        "summary": json.loads((out / "summary.json").read_text())["total"],
        "rows": rows,
        "total": total,
        "provenance": provenance(config, items, out),
        "timing": {
            "started_at": started,
            "finished_at": finished,
            # Start-up (model load, warm-up, voice registration) is paid once per server start
            # and kept out of every throughput figure.
            "server_startup_s": round(sum(s["startup_s"] or 0 for s in starts), 3),
            "servers": starts,
            "jobs": [gpu_use(job) for job in jobs],
        },
    }


def gpu_use(job: dict) -> dict:
    """What the report shows of one generation job's GPUs: busy fraction, memory, advice."""
    return {
        "batch": job["batch"],
        "host": job["host"],
        "slurm_job_id": job["slurm_job_id"],
        "device": job["device"],
        "replicas": job["replicas"],
        "gpu": job["gpu"],
        "advice": advice(job["gpu"]),
    }


def write_report(out: Path, languages: list[str], config: dict, report_dir: Path) -> None:
    items = read_items(out, languages)
    report = build_report(out, items, config)
    atomic.write_json(report_dir / "report.json", report)
    write_items_csv(report_dir / "items.csv", items)
    atomic.write_text(report_dir / "index.html", render_html(report, items, out))
