"""`fishflow status <out>`: the controller job and the work done, from the files and Slurm."""

from __future__ import annotations

import contextlib
from collections import Counter
from pathlib import Path

import yaml

from fishflow.cluster import run_state, slurm_jobs
from fishflow.errors import ConfigError, FishflowError
from fishflow.layout import Layout
from fishflow.planning.config import merged, validate_config
from fishflow.planning.plan import Plan
from fishflow.planning.summary import shard_progress


def merged_config(configfiles: list[str]) -> dict:
    """The config Snakemake builds from these files: each later file merged into the first."""
    config: dict = {}
    for path in configfiles:
        try:
            config = merged(config, yaml.safe_load(Path(path).read_text()) or {})
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
    return validate_config(config)


def configfiles(command: list[str]) -> list[str]:
    """The values of `--configfile` in a snakemake command line."""
    files, taking = [], False
    for arg in command:
        if arg.startswith("-"):
            taking = arg == "--configfile"
        elif taking:
            files.append(arg)
    return files


def progress_rows(plan: Plan) -> list[tuple]:
    """Per language and voice: items done, failed and planned."""
    progress = shard_progress(plan)
    rows = []
    for lang in sorted(plan.rows):
        for voice in sorted(plan.voices):
            shards = [p for key, p in progress.items() if key[:2] == (lang, voice)]
            if shards:
                done = sum(shard.done for shard in shards)
                total = sum(shard.total for shard in shards)
                rows.append((lang, voice, f"{done}/{total}", sum(s.failed for s in shards)))
    return rows


def batches_finished(plan: Plan) -> str:
    """Per language: generation jobs (batches) whose record is written, of those planned."""
    layout = Layout(plan.out)
    counts = {lang: [0, 0] for lang in sorted(plan.rows)}
    for lang, batch in plan.batch_keys():
        counts[lang][0] += layout.batch_record(lang, batch).exists()
        counts[lang][1] += 1
    return ", ".join(f"{lang} {done}/{total}" for lang, (done, total) in counts.items())


def table(header: tuple, rows: list[tuple]) -> str:
    cells = [tuple(map(str, row)) for row in (header, *rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def status_text(out: Path) -> str:
    out = Path(out).resolve()
    state = run_state.load(out)
    if not state or "job_id" not in state:
        raise FishflowError(
            f"{run_state.state_path(out)}: no controller record (start the run with "
            "`fishflow submit`)"
        )
    job = state["job_id"]
    runs, _ = run_state.submitted(Path(state["log"]))
    queue = Counter(slurm_jobs.queued(names=runs).values())
    attempts = state.get("attempt", 0)
    lines = [
        f"controller: Slurm job {job} ({slurm_jobs.state(job) or 'unknown to Slurm'}); "
        f"fishflow: {state['status']}" + (f" ({state['reason']})" if state.get("reason") else ""),
        f"  attempts: {attempts}, requeues: {max(attempts - 1, 0)} of at most "
        f"{state['max_requeues']}",
        f"  log: {state['log']}",
        f"  Slurm log: {state['submitit_log']}",
        "generation jobs in the queue: "
        + (", ".join(f"{n} {s.lower()}" for s, n in sorted(queue.items())) or "none"),
    ]
    # Relative paths in the config are relative to where the controller runs snakemake.
    with contextlib.chdir(state["cwd"]):
        plan = Plan(merged_config(configfiles(state["command"])))
    header = ("lang", "voice", "items done", "items failed")
    lines += [
        "",
        table(header, progress_rows(plan)),
        "",
        f"generation jobs (batches) finished: {batches_finished(plan)}",
    ]
    return "\n".join(lines)
