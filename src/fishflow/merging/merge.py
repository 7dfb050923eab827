"""Per-language manifests and the run summary, merged from the batches' shard records."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from fishflow import atomic
from fishflow.records import ShardRecord


def merge_language(batch_records: list[Path], metadata: Path, failed: Path) -> None:
    """The language's items in plan order (voice, then shard, then input order), so manifests
    are stable across runs and batch sizes."""
    shards = [
        ShardRecord.from_dict(line) for path in batch_records for line in atomic.read_jsonl(path)
    ]
    spoken, broken = [], []
    for shard in sorted(shards, key=lambda shard: (shard.voice, shard.shard)):
        for item in shard.items:
            (spoken if item.ok else broken).append(item.manifest_row())
    atomic.write_jsonl(metadata, spoken)
    atomic.write_jsonl(failed, broken)


def summarize(metadata_files: list[Path], failed_files: list[Path]) -> dict:
    """Counts per language and voice: spoken items, audio seconds, failures by reason."""
    table: dict = defaultdict(
        lambda: defaultdict(lambda: {"ok": 0, "failed": 0, "audio_s": 0.0, "failures": Counter()})
    )
    for path in metadata_files:
        for record in atomic.read_jsonl(path):
            cell = table[record["lang"]][record["voice"]]
            cell["ok"] += 1
            cell["audio_s"] += record["duration_s"]
    for path in failed_files:
        for record in atomic.read_jsonl(path):
            cell = table[record["lang"]][record["voice"]]
            cell["failed"] += 1
            cell["failures"][record["reason"]] += 1
    languages = {
        lang: {
            voice: {
                **cell,
                "audio_s": round(cell["audio_s"], 3),
                "failures": dict(sorted(cell["failures"].items())),
            }
            for voice, cell in sorted(voices.items())
        }
        for lang, voices in sorted(table.items())
    }
    totals = Counter()
    for voices in languages.values():
        for cell in voices.values():
            totals["ok"] += cell["ok"]
            totals["failed"] += cell["failed"]
    return {"languages": languages, "total": {"ok": totals["ok"], "failed": totals["failed"]}}


def write_summary(metadata_files: list[Path], failed_files: list[Path], summary: Path) -> None:
    atomic.write_json(summary, summarize(metadata_files, failed_files))
