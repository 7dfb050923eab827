"""What is done already, and what the rest will cost: the plan summary printed before work."""

from __future__ import annotations

from fishflow import atomic, layout
from fishflow.planning.config import load_schema
from fishflow.planning.plan import Plan

# Where the estimate's figures come from, when they are the schema's defaults: no GPU figure has
# been measured yet (benchmarks/RESULTS.md section 5 has the command that measures them).
UNMEASURED_DEFAULTS = (
    "schema defaults, not measured on a GPU: set planning.* from "
    "benchmarks/gpu_throughput.py on your GPU"
)


def estimate_source(planning: dict) -> str:
    defaults = {
        key: spec["default"]
        for key, spec in load_schema()["properties"]["planning"]["properties"].items()
    }
    return UNMEASURED_DEFAULTS if planning == defaults else "from the config"


def todo_by_shard(plan: Plan) -> dict[tuple[str, str, str], int]:
    """Items per shard not yet spoken with the current fingerprint (from the shard journals)."""
    todo = {}
    for lang, voice, name in plan.shard_keys():
        journal = plan.out / layout.progress_relpath(lang, voice, name)
        rows = plan.shard_rows(lang, voice, name)
        if not journal.exists():
            todo[(lang, voice, name)] = len(rows)
            continue
        spoken = {
            r["id"]: r["fingerprint"] for r in atomic.read_jsonl(journal) if r["status"] == "ok"
        }
        maker = plan.item_maker(lang, voice)
        todo[(lang, voice, name)] = sum(
            spoken.get(row.id) != maker.fingerprint(row.id, row.text) for row in rows
        )
    return todo


def summary_text(plan: Plan) -> str:
    languages = sorted(plan.rows)
    voices = sorted(plan.voices)
    todo = todo_by_shard(plan)
    items_todo = sum(todo.values())
    total = plan.item_count()
    jobs = len({plan.batch(*key) for key, count in todo.items() if count})
    estimate = plan.config["planning"]
    gpu_hours = (
        items_todo * estimate["seconds_per_item"] + jobs * estimate["server_startup_s"]
    ) / 3600
    model = f", model {plan.generation}" if plan.generation else ""
    return (
        f"fishflow plan: {len(languages)} language(s) {languages} x {len(voices)} voice(s) "
        f"{voices} -> {len(todo)} shard(s) of up to {plan.shard_size} items; "
        f"backend {plan.backend.name}{model} ({plan.model_id})\n"
        f"fishflow plan: items: {total} total, {total - items_todo} done, {items_todo} to do\n"
        f"fishflow plan: generation jobs (one server start each, one Slurm job on a cluster): "
        f"{jobs} of up to {plan.shards_per_job} shards; estimated GPU-hours: {gpu_hours:.2f} "
        f"({estimate['seconds_per_item']} s/item, {estimate['server_startup_s']} s start-up/job: "
        f"{estimate_source(estimate)})"
    )
