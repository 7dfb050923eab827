"""The records a run writes, each defined once: the item record (spoken or failed), the shard
record, the servers record, and the one answer to "is this item done".

Item records are what a shard's journal holds, line by line; the manifests are their
projections (`METADATA_FIELDS`, `FAILED_FIELDS`, in this order), and the report's items.csv
another (`CSV_FIELDS`, with `SCORE_COLUMNS` taken out of the judge's scores).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

METADATA_FIELDS = (
    "id",
    "lang",
    "voice",
    "text",
    "path",
    "duration_s",
    "sample_rate",
    "bytes",
    "sha256",
    "seed",
    "parameters",
    "generation_s",
    "ttfb_s",
    "ttfa_s",
    "attempts",
    "backend",
    "scores",
    "takes",
)
FAILED_FIELDS = (
    "id",
    "lang",
    "voice",
    "text",
    "reason",
    "last_error",
    "attempts",
    "scores",
    "takes",
)
CSV_FIELDS = (
    "lang",
    "voice",
    "id",
    "status",
    "reason",
    "text_chars",
    "duration_s",
    "generation_s",
    "ttfb_s",
    "ttfa_s",
    "attempts",
    "takes",
    "wer",
    "cer",
    "similarity",
    "mos",
    "seed",
    "sha256",
    "path",
    "text",
)
# The judge's scores that items.csv flattens into columns of their own (empty: not measured).
SCORE_COLUMNS = ("wer", "cer", "similarity", "mos")
SERVERS_SCHEMA = "fishflow-servers/2"


@dataclass(frozen=True, slots=True)
class ItemRecord:
    """One item's outcome. `status` is "ok" (spoken: the audio fields are set) or "failed"
    (`reason`, `last_error`); `fingerprint` names everything that made the audio."""

    id: str
    lang: str
    voice: str
    text: str
    fingerprint: str
    backend: str
    status: str
    seed: int
    attempts: int
    path: str | None = None
    duration_s: float | None = None
    sample_rate: int | None = None
    bytes: int | None = None
    sha256: str | None = None
    parameters: dict | None = None
    generation_s: float | None = None
    # Time to first byte and to first audio of the answer kept (server.streaming); None: fetched
    # whole, not measured.
    ttfb_s: float | None = None
    ttfa_s: float | None = None
    reason: str | None = None
    last_error: str | None = None
    # Unix time the job journaled it (`fishflow status`: the rate); not in the manifests.
    finished_at: float | None = None
    # The quality judge's (None with the judge off): the kept take's scores (judging.judge),
    # how many takes were judged, and the fingerprint of the judge's settings and models.
    scores: dict | None = None
    takes: int | None = None
    judge: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_dict(self) -> dict:
        """The journal's form: the fields of its status only."""
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def from_dict(cls, data: dict) -> ItemRecord:
        if data.keys() <= _ITEM_FIELDS:  # as written: no field scan (a summary reads 100k)
            return cls(**data)
        return cls(**{key: value for key, value in data.items() if key in _ITEM_FIELDS})

    def manifest_row(self) -> dict:
        """Its row in metadata_<lang>.jsonl (spoken) or failed_<lang>.jsonl (failed)."""
        data = asdict(self)
        return {key: data[key] for key in (METADATA_FIELDS if self.ok else FAILED_FIELDS)}


_ITEM_FIELDS = frozenset(f.name for f in fields(ItemRecord))


def is_done(
    record: ItemRecord | None,
    fingerprint: str,
    out: Path,
    check: Callable[[bytes], bool] | None = None,
    judge: str | None = None,
) -> bool:
    """Spoken with this exact fingerprint, judged by this judge (`judge`: its fingerprint, None
    with the judge off), and its WAV is still the one written.

    Without `check` (the plan summary, `fishflow status`) the WAV's size must match; with it
    (the generation job, on its node) the WAV is read, its hash compared and `check` applied
    to its bytes. Failed items are never done: they are tried again whenever their batch runs.
    """
    if record is None or not record.ok or record.fingerprint != fingerprint:
        return False
    if judge is not None and record.judge != judge:
        return False
    wav = os.path.join(out, record.path)  # not pathlib: a plan summary stats 100k of them
    try:
        if os.stat(wav).st_size != record.bytes:
            return False
        if check is None:
            return True
        with open(wav, "rb") as handle:
            data = handle.read()
    except OSError:
        return False
    return hashlib.sha256(data).hexdigest() == record.sha256 and check(data)


@dataclass(frozen=True, slots=True)
class ShardRecord:
    """A finished shard, as its batch's job wrote it: every item, in input order."""

    lang: str
    voice: str
    shard: str
    fingerprint: str
    items: list[ItemRecord] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "lang": self.lang,
            "voice": self.voice,
            "shard": self.shard,
            "fingerprint": self.fingerprint,
            "items": [item.as_dict() for item in self.items],
        }

    @classmethod
    def from_dict(cls, data: dict) -> ShardRecord:
        items = [ItemRecord.from_dict(item) for item in data["items"]]
        return cls(data["lang"], data["voice"], data["shard"], data["fingerprint"], items)
