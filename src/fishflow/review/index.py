"""An index of a run's manifest lines, for `fishflow browse`: a few numpy columns per line
(where the line is, its language, voice, status, failure reason and scores), so that a filter
over a million items is a handful of array operations and a page reads only its own lines.

Built by one pass over the manifests (their lines parsed in blocks, one JSON call per block)
and rebuilt when a manifest changes (a rerun's merge rewrites them).
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fishflow.layout import Layout

SCORES = ("cer", "wer", "similarity")
# Which way is worse, for "worst first": high error rates, low similarity.
WORSE_HIGH = {"cer": True, "wer": True, "similarity": False}
STATUSES = ("ok", "failed")
_BLOCK = 20_000  # lines per JSON call while indexing


@dataclass(frozen=True)
class Query:
    lang: str | None = None
    voice: str | None = None
    status: str | None = None  # "ok", "failed", or "marked" (an item with any review mark)
    reason: str | None = None
    score: str | None = None  # one of SCORES: filter by min/max, and/or sort worst first
    min: float | None = None
    max: float | None = None
    worst_first: bool = False
    offset: int = 0
    limit: int = 50


class Codes:
    """Strings (voices, languages, reasons) as small integers."""

    def __init__(self):
        self.names: list[str] = []
        self._codes: dict[str, int] = {}

    def code(self, name: str) -> int:
        if (code := self._codes.get(name)) is None:
            code = self._codes[name] = len(self.names)
            self.names.append(name)
        return code

    def find(self, name: str) -> int:
        """The code of a name, or -1 (matches nothing)."""
        return self._codes.get(name, -1)


class Columns:
    """The columns while they are being filled, as Python lists."""

    def __init__(self):
        self.file, self.offset, self.length = [], [], []
        self.lang, self.voice, self.status, self.reason, self.key = [], [], [], [], []
        self.scores = {name: [] for name in SCORES}


def _score(scores: dict | None, name: str) -> float:
    """A score as a float; NaN is "not measured" (no judge, or this score not taken)."""
    value = (scores or {}).get(name)
    measured = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if measured else math.nan


def item_key(lang: str, voice: str, item_id: str) -> int:
    """A line's item, as one integer to compare (confirmed against the line itself)."""
    return hash((lang, voice, item_id))


class ManifestIndex:
    """The index of a run's manifests as they are now: `current()` re-indexes when a manifest
    changed (a stat per manifest and request), and hands out snapshots that do not change."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self._lock = threading.Lock()
        self._stamp: tuple | None = None
        self._snapshot: Snapshot | None = None

    def manifests(self) -> list[tuple[Path, str, str]]:
        """(path, lang, status) of every manifest, in language order, spoken before failed."""
        layout, found = Layout(self.out), []
        for path in sorted(self.out.glob("metadata_*.jsonl")):
            lang = path.stem.removeprefix("metadata_")
            found.append((path, lang, "ok"))
            if (failed := layout.failed(lang)).is_file():
                found.append((failed, lang, "failed"))
        return found

    def current(self) -> Snapshot:
        with self._lock:
            manifests = self.manifests()
            stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p, _, _ in manifests)
            if stamp != self._stamp:
                self._snapshot, self._stamp = Snapshot(manifests), stamp
            return self._snapshot


class Snapshot:
    """The index of the manifests as they were when it was built."""

    def __init__(self, manifests: list[tuple[Path, str, str]]):
        started = time.perf_counter()
        self.files = [path for path, _, _ in manifests]
        self.langs, self.voices, self.reasons = Codes(), Codes(), Codes()
        cols = Columns()
        for number, (path, lang, status) in enumerate(manifests):
            self._scan(path, number, lang, status, cols)
        self.file = np.array(cols.file, dtype=np.int16)
        self.offset = np.array(cols.offset, dtype=np.int64)
        self.length = np.array(cols.length, dtype=np.int32)
        self.lang = np.array(cols.lang, dtype=np.int16)
        self.voice = np.array(cols.voice, dtype=np.int32)
        self.status = np.array(cols.status, dtype=np.int8)
        self.reason = np.array(cols.reason, dtype=np.int32)
        self.key = np.array(cols.key, dtype=np.int64)
        self.scores = {name: np.array(cols.scores[name], dtype=np.float64) for name in SCORES}
        self.build_s = time.perf_counter() - started

    def _scan(self, path: Path, number: int, lang: str, status: str, cols: Columns) -> None:
        lang_code, status_code = self.langs.code(lang), STATUSES.index(status)
        block, where = [], []
        offset = 0
        with open(path, "rb") as handle:
            for line in handle:
                if line.strip():
                    block.append(line)
                    where.append((offset, len(line)))
                offset += len(line)
                if len(block) == _BLOCK:
                    self._add(block, where, number, lang_code, status_code, cols)
                    block, where = [], []
        self._add(block, where, number, lang_code, status_code, cols)

    def _add(self, block, where, number, lang_code, status_code, cols: Columns) -> None:
        if not block:
            return
        records = json.loads(b"[" + b",".join(block) + b"]")
        lang = self.langs.names[lang_code]
        voice_code, reason_code = self.voices.code, self.reasons.code
        for record, (offset, length) in zip(records, where, strict=True):
            cols.file.append(number)
            cols.offset.append(offset)
            cols.length.append(length)
            cols.lang.append(lang_code)
            cols.voice.append(voice_code(record["voice"]))
            cols.status.append(status_code)
            reason = record.get("reason")
            cols.reason.append(-1 if reason is None else reason_code(reason))
            cols.key.append(item_key(lang, record["voice"], record["id"]))
            scores = record.get("scores")
            for name in SCORES:
                cols.scores[name].append(_score(scores, name))

    # -- queries ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.offset)

    def select(self, query: Query, marked: set[int]) -> tuple[int, np.ndarray]:
        """How many lines match, and the line numbers of the requested page. `marked`: the
        item keys of the marked items."""
        mask = np.ones(len(self), dtype=bool)
        for value, column, codes in (
            (query.lang, self.lang, self.langs),
            (query.voice, self.voice, self.voices),
            (query.reason, self.reason, self.reasons),
        ):
            if value:
                mask &= column == codes.find(value)
        if query.status in STATUSES:
            mask &= self.status == STATUSES.index(query.status)
        elif query.status == "marked":
            mask &= np.isin(self.key, np.fromiter(marked, dtype=np.int64, count=len(marked)))
        if query.score in SCORES:
            scores = self.scores[query.score]
            if query.min is not None:
                mask &= scores >= query.min
            if query.max is not None:
                mask &= scores <= query.max
        lines = np.flatnonzero(mask)
        if query.worst_first and query.score in SCORES:
            values = self.scores[query.score][lines]
            # Worst first, "not measured" (NaN) last: argsort puts NaN last either way.
            order = np.argsort(-values if WORSE_HIGH[query.score] else values, kind="stable")
            lines = lines[order]
        return len(lines), lines[query.offset : query.offset + query.limit]

    def read(self, lines: np.ndarray) -> list[dict]:
        """The manifest records of these lines, each with its status."""
        records, handles = [], {}
        try:
            for line in lines.tolist():
                number = int(self.file[line])
                if number not in handles:
                    handles[number] = open(self.files[number], "rb")
                handle = handles[number]
                handle.seek(int(self.offset[line]))
                record = json.loads(handle.read(int(self.length[line])))
                record["status"] = STATUSES[self.status[line]]
                records.append(record)
        finally:
            for handle in handles.values():
                handle.close()
        return records

    def find(self, lang: str, voice: str, item_id: str) -> dict | None:
        """The manifest record of an item, or None."""
        for line in np.flatnonzero(self.key == item_key(lang, voice, item_id)):
            record = self.read(np.array([line]))[0]
            if (record["lang"], record["voice"], record["id"]) == (lang, voice, item_id):
                return record
        return None

    def facets(self) -> dict:
        """What the filters can choose from, and how many lines the index holds."""
        return {
            "langs": sorted(self.langs.names),
            "voices": sorted(self.voices.names),
            "reasons": sorted(self.reasons.names),
            "scores": [name for name in SCORES if not np.isnan(self.scores[name]).all()],
            "items": len(self),
            "index_s": round(self.build_s, 3),
        }
