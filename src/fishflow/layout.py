"""Where everything lives under the output directory (one place, so rules and code agree)."""

from __future__ import annotations

SHARD_DIGITS = 5


def shard_name(index: int) -> str:
    return f"{index:0{SHARD_DIGITS}d}"


def shard_index(name: str) -> int:
    return int(name)


def batch_name(index: int) -> str:
    return f"b{index:0{SHARD_DIGITS}d}"


def wav_relpath(lang: str, voice: str, item_id: str) -> str:
    return f"audio/{lang}/{voice}/{item_id}.wav"


def progress_relpath(lang: str, voice: str, shard: str) -> str:
    """Per-shard journal of finished items; not a Snakemake output, so a failed job keeps it."""
    return f"work/progress/{lang}/{voice}/{shard}.jsonl"
