"""What is done already, and what the rest will cost: the plan summary printed before work."""

from __future__ import annotations

import json
from dataclasses import dataclass

from fishflow import atomic
from fishflow.layout import Layout
from fishflow.planning.config import load_schema
from fishflow.planning.plan import Plan
from fishflow.records import ItemRecord, is_done

# Where the estimate's figures come from, when they are the schema's defaults: no GPU figure has
# been measured yet (benchmarks/RESULTS.md section 5 has the command that measures them).
UNMEASURED_DEFAULTS = (
    "schema defaults, not measured on a GPU: set planning.* from "
    "benchmarks/gpu_throughput.py on your GPU"
)


@dataclass(frozen=True)
class ShardProgress:
    total: int
    done: int  # spoken with the current fingerprint, WAV in place
    failed: int  # failed in the last attempt (tried again when its batch runs)
    audio_s: float = 0.0  # of the items done
    # Asked for by `fishflow status` only: when items were spoken since a given time.
    recent: tuple[float, ...] = ()

    @property
    def todo(self) -> int:
        return self.total - self.done


def estimate_source(planning: dict) -> str:
    defaults = {
        key: spec["default"]
        for key, spec in load_schema()["properties"]["planning"]["properties"].items()
    }
    return UNMEASURED_DEFAULTS if planning == defaults else "from the config"


def shard_progress(
    plan: Plan, since: float | None = None
) -> dict[tuple[str, str, str], ShardProgress]:
    """Per shard: items done, failed and to do, and the audio made. Reads files only: the tally
    its last job left while the journal and the shard are unchanged since, else the journal and
    each WAV's size (not its content: the generation job re-checks that on its node).

    With `since`, also the times items were spoken since then, from the journals written since
    (without a WAV check where the tally holds)."""
    layout = Layout(plan.out)
    progress = {}
    for lang, voice, name in plan.shard_keys():
        rows = plan.shard_rows(lang, voice, name)
        journal = layout.journal(lang, voice, name)
        try:
            stat = journal.stat()
        except FileNotFoundError:
            progress[(lang, voice, name)] = ShardProgress(len(rows), 0, 0)
            continue
        fingerprint = plan.shard_fingerprint(lang, voice, name)
        tally = read_tally(layout.tally(lang, voice, name))
        fresh = (
            tally.get("fingerprint") == fingerprint
            and tally.get("journal") == journal_stamp(stat)
            and "audio_s" in tally
        )
        recent = since is not None and stat.st_mtime >= since
        records = last_records(journal) if recent or not fresh else {}
        if fresh:
            counts = (tally["done"], tally["failed"], tally["audio_s"])
        else:
            counts = _count(plan, lang, voice, rows, records)
        progress[(lang, voice, name)] = ShardProgress(
            len(rows),
            *counts,
            recent=_spoken_since(records, since) if recent else (),
        )
    return progress


def last_records(journal) -> dict[str, dict]:
    """Each item's last record in a journal."""
    return {record["id"]: record for record in atomic.read_jsonl(journal)}


def _count(plan: Plan, lang: str, voice: str, rows, last: dict) -> tuple[int, int, float]:
    maker = plan.item_maker(lang, voice)
    judge = plan.judge_fingerprint(lang)
    done = failed = 0
    audio_s = 0.0
    for row in rows:
        if (data := last.get(row.id)) is not None:
            record = ItemRecord.from_dict(data)
            if is_done(record, maker.fingerprint(row.id, row.text), plan.out, judge=judge):
                done += 1
                audio_s += record.duration_s or 0.0
            failed += not record.ok
    return done, failed, audio_s


def _spoken_since(records: dict[str, dict], since: float) -> tuple[float, ...]:
    return tuple(
        r["finished_at"]
        for r in records.values()
        if r["status"] == "ok" and r.get("finished_at", 0.0) >= since
    )


def journal_stamp(stat) -> list[int]:
    return [stat.st_size, stat.st_mtime_ns]


def read_tally(path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def write_tally(path, fingerprint: str, journal, done: int, failed: int, audio_s: float) -> None:
    """What a generation job leaves for the plan summary and `fishflow status` (see
    shard_progress)."""
    stamp = journal_stamp(journal.stat()) if journal.exists() else [0, 0]
    tally = {
        "fingerprint": fingerprint,
        "journal": stamp,
        "done": done,
        "failed": failed,
        "audio_s": round(audio_s, 3),
    }
    atomic.write_json(path, tally)


def summary_text(plan: Plan) -> str:
    languages = sorted(plan.rows)
    voices = sorted(plan.voices)
    progress = shard_progress(plan)
    items_todo = sum(shard.todo for shard in progress.values())
    total = plan.item_count()
    jobs = len({(lang, plan.batch_of(name)) for (lang, _, name), s in progress.items() if s.todo})
    estimate = plan.config["planning"]
    judge_s = judge_seconds(plan, progress)
    gpu_hours = (
        items_todo * estimate["seconds_per_item"] + jobs * estimate["server_startup_s"] + judge_s
    ) / 3600
    model = f", model {plan.generation}" if plan.generation else ""
    judge = (
        f"\nfishflow plan: quality judge: {plan.judge.describe()}; estimated {judge_s / 3600:.2f} "
        f"of the GPU-hours ({estimate['judge_seconds_per_audio_second']} s per audio second, "
        f"{estimate['audio_seconds_per_char']} audio s/char)"
        if plan.judge is not None
        else ""
    )
    return (
        f"fishflow plan: {len(languages)} language(s) {languages} x {len(voices)} voice(s) "
        f"{voices} -> {len(progress)} shard(s) of up to {plan.shard_size} items; "
        f"backend {plan.backend.name}{model} ({plan.model_id})\n"
        f"fishflow plan: items: {total} total, {total - items_todo} done, {items_todo} to do\n"
        f"fishflow plan: generation jobs with work (one server start each, one Slurm job on a "
        f"cluster): {jobs} of up to {plan.batch_span} shard(s) per voice; "
        f"estimated GPU-hours: {gpu_hours:.2f} ({estimate['seconds_per_item']} s/item, "
        f"{estimate['server_startup_s']} s start-up/job: {estimate_source(estimate)})"
        f"{judge}"
    )


def judge_seconds(plan: Plan, progress: dict[tuple[str, str, str], ShardProgress]) -> float:
    """The judge's share of the estimate: the audio of the items to do (from their language's
    mean text length) times the judge's cost per second of audio."""
    if plan.judge is None:
        return 0.0
    estimate = plan.config["planning"]
    mean_chars = {
        lang: sum(len(row.text) for row in rows) / max(1, len(rows))
        for lang, rows in plan.rows.items()
    }
    chars = sum(s.todo * mean_chars[lang] for (lang, _, _), s in progress.items())
    audio_s = chars * estimate["audio_seconds_per_char"]
    return audio_s * estimate["judge_seconds_per_audio_second"]
