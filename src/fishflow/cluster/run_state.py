"""The record of a run's Slurm controller, `<out>/work/controller.json`, and its log.

The controller job, `fishflow status` and `fishflow cancel` all read it: which Slurm job controls
the run, where it logs, how often it was requeued and why it stopped. The generation jobs each
Snakemake run submitted are read from the controller's log, which Snakemake writes as it submits
(a record kept by the controller itself would miss a job submitted just before a hard kill).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from fishflow import atomic
from fishflow.layout import Layout

# Printed by snakemake-executor-plugin-slurm; it names every job of a run after the run id.
RUN_ID = re.compile(r"SLURM run ID: (\S+)")
# A single job, or a job array (the profile's `slurm-array-jobs`): one id per sbatch call.
SUBMITTED = re.compile(
    r"(?:submitted with SLURM jobid|Submitted array job with Snakemake IDs \S+ and SLURM job ID) "
    r"(\d+)"
)


def state_path(out: Path) -> Path:
    return Layout(out).controller_state()


def load(out: Path) -> dict | None:
    path = state_path(out)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: unreadable controller record: {exc}") from exc


def update(out: Path, **changes) -> dict:
    """Merge `changes` into the record, atomically: a reader sees the old or the new record."""
    state = {**(load(out) or {}), **changes}
    atomic.write_json(state_path(out), state)
    return state


def log_path(out: Path) -> Path:
    return Layout(out).controller_log()


def submitted(log: Path) -> tuple[list[str], list[str]]:
    """The Snakemake run ids and the Slurm job ids of the generation jobs in a controller log."""
    if not log.exists():
        return [], []
    text = log.read_text(errors="replace")
    return RUN_ID.findall(text), SUBMITTED.findall(text)
