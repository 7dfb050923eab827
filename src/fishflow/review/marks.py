"""A reviewer's marks: items whose audio was heard and rejected, one JSON line each, in
`<out>/review/marks.jsonl` (versioned with the run).

A mark names the item (lang, voice, id) and the seed of the take that was rejected; planning
gives the item that seed as rejected (`Item.rejected_seeds`), which changes its fingerprint, so
the next run speaks it again with its next seed and leaves every other item alone.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from fishflow import atomic
from fishflow.errors import InputError

_REQUIRED = {"lang": str, "voice": str, "id": str, "seed": int, "time": str}
_FIELDS = {*_REQUIRED, "note"}
SEED_LIMIT = 2**31  # item_seed's range


@dataclass(frozen=True, slots=True)
class Mark:
    lang: str
    voice: str
    id: str
    seed: int  # the seed of the rejected take
    time: str  # when it was marked, UTC, ISO 8601
    note: str | None = None

    @property
    def item(self) -> tuple[str, str, str]:
        return (self.lang, self.voice, self.id)

    def as_dict(self) -> dict:
        return {key: value for key, value in asdict(self).items() if value is not None}


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _mark(data: object) -> Mark:
    """The mark of one parsed line; ValueError says what is wrong with it."""
    if not isinstance(data, dict):
        raise ValueError("a mark is a JSON object")
    if unknown := sorted(set(data) - _FIELDS):
        raise ValueError(f"unknown field(s) {unknown} (a mark has {sorted(_FIELDS)})")
    for key, kind in _REQUIRED.items():
        value = data.get(key)
        # bool is an int to Python, not a seed.
        if not isinstance(value, kind) or isinstance(value, bool) or value == "":
            raise ValueError(f"{key!r} must be a non-empty {kind.__name__}, got {value!r}")
    if not 0 <= data["seed"] < SEED_LIMIT:
        raise ValueError(f"'seed' {data['seed']} is outside 0 .. {SEED_LIMIT - 1}")
    if data.get("note") is not None and not isinstance(data["note"], str):
        raise ValueError(f"'note' must be a string, got {data['note']!r}")
    return Mark(**data)


def read_marks(path: Path) -> list[tuple[int, Mark]]:
    """(line number, mark) of every mark in the file; none when there is no file. Every line
    must be a mark, the last one too: planning must not drop a reviewer's mark silently."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, None, f"cannot read the review marks: {exc}") from None
    marks = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            marks.append((number, _mark(json.loads(line))))
        except ValueError as exc:  # JSONDecodeError is one
            raise InputError(path, number, f"not a review mark: {exc}") from None
    return marks


def add_mark(path: Path, mark: Mark) -> None:
    """Append a mark, on disk before this returns."""
    atomic.Journal(path).append(mark.as_dict())


def remove_marks(path: Path, item: tuple[str, str, str], seed: int) -> int:
    """Remove the item's marks of this seed (the reviewer changed their mind); how many."""
    marks = read_marks(path)
    kept = [mark for _, mark in marks if (mark.item, mark.seed) != (item, seed)]
    if len(kept) != len(marks):
        atomic.write_jsonl(path, [mark.as_dict() for mark in kept])
    return len(marks) - len(kept)
