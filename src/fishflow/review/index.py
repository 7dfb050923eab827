"""An index of a run's manifest lines, for `fishflow browse`: a few numpy columns per line
(where the line is, its language, voice, status, failure reason and scores), so that a filter
over a million items is a handful of array operations and a page reads only its own lines.

Built by one pass over the manifests (their lines parsed in blocks, one JSON call per block)
and rebuilt when a manifest changes (a rerun's merge replaces them). The columns are kept in
`work/browse/index.npz` for the next `browse` of the same manifests: parsing a million lines
takes seconds, loading the columns a fraction of one. A snapshot keeps its manifests open, so
its pages read the files it indexed even after they were replaced.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import threading
import time
import weakref
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fishflow import atomic
from fishflow.layout import Layout

SCORES = ("cer", "wer", "similarity")
# Which way is worse, for "worst first": high error rates, low similarity.
WORSE_HIGH = {"cer": True, "wer": True, "similarity": False}
STATUSES = ("ok", "failed")
_BLOCK = 20_000  # lines per JSON call while indexing
CACHE_VERSION = 1


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

    def __init__(self, names: list[str] = ()):
        self.names: list[str] = list(names)
        self._codes: dict[str, int] = {name: code for code, name in enumerate(self.names)}

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


def _close(handles: list) -> None:
    for handle in handles:
        handle.close()


def _stamp(path: Path, stat: os.stat_result) -> tuple:
    return (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)


def item_key(lang: str, voice: str, item_id: str) -> int:
    """A line's item, as one integer to compare (the same in every process: it is cached)."""
    digest = hashlib.blake2b(f"{lang}\0{voice}\0{item_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def smallest(values: np.ndarray, count: int) -> np.ndarray:
    """Positions of the `count` smallest values, in order, ties in position order: the first
    pages of a sort without sorting all of a million values (a partition finds them)."""
    if count < len(values):
        kth = np.partition(values, count - 1)[count - 1]
        candidates = np.flatnonzero(values <= kth)  # every tie of the last one too
    else:
        candidates = np.arange(len(values))
    return candidates[np.lexsort((candidates, values[candidates]))][:count]


class ManifestIndex:
    """The index of a run's manifests as they are now: `current()` re-indexes when a manifest
    changed (a stat per manifest and request), and hands out snapshots that do not change."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self._lock = threading.Lock()
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
            stamp = tuple(_stamp(path, os.stat(path)) for path, _, _ in manifests)
            if self._snapshot is None or stamp != self._snapshot.stamp:
                self._snapshot = Snapshot(manifests, Layout(self.out).browse_index())
            return self._snapshot


class Snapshot:
    """The index of the manifests as they were when it was built."""

    def __init__(self, manifests: list[tuple[Path, str, str]], cache: Path):
        started = time.perf_counter()
        # Open for the snapshot's life (closed with it): a replaced manifest stays readable.
        self.handles = [open(path, "rb") for path, _, _ in manifests]
        weakref.finalize(self, _close, self.handles)
        self.stamp = tuple(
            _stamp(path, os.fstat(handle.fileno()))
            for (path, _, _), handle in zip(manifests, self.handles, strict=True)
        )
        self.cached = self._load(cache)
        if not self.cached:
            self._build(manifests)
            self._save(cache)
        self.build_s = time.perf_counter() - started

    def _build(self, manifests: list[tuple[Path, str, str]]) -> None:
        self.langs, self.voices, self.reasons = Codes(), Codes(), Codes()
        cols = Columns()
        for number, (_, lang, status) in enumerate(manifests):
            self._scan(self.handles[number], number, lang, status, cols)
        self.file = np.array(cols.file, dtype=np.int16)
        self.offset = np.array(cols.offset, dtype=np.int64)
        self.length = np.array(cols.length, dtype=np.int32)
        self.lang = np.array(cols.lang, dtype=np.int16)
        self.voice = np.array(cols.voice, dtype=np.int32)
        self.status = np.array(cols.status, dtype=np.int8)
        self.reason = np.array(cols.reason, dtype=np.int32)
        self.key = np.array(cols.key, dtype=np.int64)
        self.scores = {name: np.array(cols.scores[name], dtype=np.float64) for name in SCORES}

    # -- the cache -------------------------------------------------------------------------------

    def _about(self) -> dict:
        """What the cached columns belong to, and the names their codes stand for."""
        return {
            "version": CACHE_VERSION,
            "stamp": [list(stamp) for stamp in self.stamp],
            "langs": self.langs.names,
            "voices": self.voices.names,
            "reasons": self.reasons.names,
        }

    _COLUMNS = ("file", "offset", "length", "lang", "voice", "status", "reason", "key")

    def _load(self, cache: Path) -> bool:
        """Take the cached columns if they were made from these very manifests."""
        try:
            with np.load(cache) as data:
                about = json.loads(data["about"].tobytes())
                stamp = [list(stamp) for stamp in self.stamp]
                if about["version"] != CACHE_VERSION or about["stamp"] != stamp:
                    return False
                self.langs, self.voices = Codes(about["langs"]), Codes(about["voices"])
                self.reasons = Codes(about["reasons"])
                for name in self._COLUMNS:
                    setattr(self, name, data[f"column_{name}"])
                self.scores = {name: data[f"score_{name}"] for name in SCORES}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            return False  # none yet, or from another fishflow: indexed again
        return True

    def _save(self, cache: Path) -> None:
        about = np.frombuffer(json.dumps(self._about()).encode(), dtype=np.uint8)
        buffer = io.BytesIO()
        columns = {f"column_{name}": getattr(self, name) for name in self._COLUMNS}
        scores = {f"score_{name}": column for name, column in self.scores.items()}
        np.savez(buffer, about=about, **columns, **scores)
        try:
            atomic.write_bytes(cache, buffer.getvalue())
        except OSError:
            pass  # a run we may read but not write: index again next time

    def _scan(self, handle, number: int, lang: str, status: str, cols: Columns) -> None:
        lang_code, status_code = self.langs.code(lang), STATUSES.index(status)
        block, where = [], []
        offset = 0
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
        total = len(lines)
        if query.worst_first and query.score in SCORES:
            values = self.scores[query.score][lines]
            values = -values if WORSE_HIGH[query.score] else values
            values[np.isnan(values)] = np.inf  # "not measured" last
            lines = lines[smallest(values, query.offset + query.limit)]
        return total, lines[query.offset : query.offset + query.limit]

    def read(self, lines: np.ndarray) -> list[dict]:
        """The manifest records of these lines, each with its status. pread: threads share
        the handles."""
        records = []
        for line in lines.tolist():
            fd = self.handles[self.file[line]].fileno()
            record = json.loads(os.pread(fd, int(self.length[line]), int(self.offset[line])))
            record["status"] = STATUSES[self.status[line]]
            records.append(record)
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
            "index_cached": self.cached,
        }
