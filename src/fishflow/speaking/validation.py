"""Per-shard validation of what is on disk, after generation: the WAVs the manifests will name."""

from __future__ import annotations

import json
from pathlib import Path

from fishflow import atomic
from fishflow.errors import FishflowError
from fishflow.planning.voices import sha256_file
from fishflow.speaking.audio import check_wav


def validate_record(record: dict, out: Path, limits: dict) -> dict:
    """Re-check a spoken item's WAV from disk; a failure turns it into a failed record."""
    if record["status"] != "ok":
        return record
    wav = Path(out) / record["path"]
    if not wav.is_file():
        return _failed(record, "validation:missing", f"{record['path']} does not exist")
    if sha256_file(wav) != record["sha256"]:
        return _failed(record, "validation:changed", f"{record['path']} changed since generation")
    check = check_wav(wav.read_bytes(), record["text"], limits)
    if not check.ok:
        return _failed(record, f"validation:{check.reason}", check.detail)
    return record


def _failed(record: dict, reason: str, detail: str) -> dict:
    kept = ("id", "lang", "voice", "text", "fingerprint", "backend", "attempts", "seed")
    return {
        **{k: record[k] for k in kept if k in record},
        "status": "failed",
        "reason": reason,
        "last_error": detail,
    }


def validate_shard(generated: Path, validated: Path, out: Path, limits: dict) -> None:
    """Validate a generated shard; an incomplete one fails here, alone, and is dropped so that
    the next run generates it again (finished items are kept by the shard's journal)."""
    result = json.loads(Path(generated).read_text())
    if not result["complete"]:
        Path(generated).unlink()
        raise FishflowError(
            f"shard {generated} did not complete: {result['error']}\n"
            "It is generated again by the next run; finished items are not redone."
        )
    atomic.write_jsonl(validated, [validate_record(r, out, limits) for r in result["records"]])
