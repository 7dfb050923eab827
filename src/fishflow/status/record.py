"""The run record, `<out>/work/run.json`: what `fishflow status` needs to read a run however it
was started (plain `snakemake`, locally or with the Slurm profile, or `fishflow submit`).

Written at planning by the Snakemake that runs the workflow (not by a dry run): the config it
planned with, the folder relative paths are relative to, and its log, where the Slurm executor
names the run's Slurm jobs.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from fishflow import atomic
from fishflow.layout import Layout

SCHEMA = "fishflow-run/1"


def write(out: Path, config: dict, workdir: Path, snakemake_log: str) -> None:
    atomic.write_json(
        Layout(out).run_record(),
        {
            "schema": SCHEMA,
            "config": config,
            "workdir": str(Path(workdir).resolve()),
            "snakemake_log": str(Path(snakemake_log).resolve()),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": time.time(),
        },
    )


def load(out: Path) -> dict | None:
    path = Layout(out).run_record()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable run record: {exc}") from exc
    return data if data.get("schema") == SCHEMA else None
