"""What is done already: the plan summary printed before work starts."""

from __future__ import annotations

from . import atomic, layout
from .plan import Plan


def count_done(plan: Plan) -> int:
    """Items whose journal holds a spoken record with the current fingerprint."""
    done = 0
    for lang, voice, name in plan.shard_keys():
        journal = plan.out / layout.progress_relpath(lang, voice, name)
        if not journal.exists():
            continue
        spoken = {
            r["id"]: r["fingerprint"] for r in atomic.read_jsonl(journal) if r["status"] == "ok"
        }
        shard = plan.shard(lang, voice, name)
        done += sum(spoken.get(item.id) == item.fingerprint for item in shard.items)
    return done


def summary_text(plan: Plan) -> str:
    languages = sorted(plan.rows)
    voices = sorted(plan.voices)
    shards = plan.shard_keys()
    total = plan.item_count()
    done = count_done(plan)
    return (
        f"fishflow plan: {len(languages)} language(s) {languages} x {len(voices)} voice(s) "
        f"{voices} -> {len(shards)} shard(s) of up to {plan.shard_size} items; "
        f"backend {plan.backend.name} ({plan.model_id}); "
        f"items: {total} total, {done} done, {total - done} to do"
    )
