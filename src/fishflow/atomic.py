"""Crash-safe file writes: a reader sees the old file or the new one, never a torn one."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes(path: Path, data: bytes, mode: int = 0o644, tmp_dir: Path | None = None) -> None:
    """Write to a temp file (beside `path`, or in `tmp_dir` on the same file system), fsync
    it, then rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name: threads of one job write WAVs of the same id in different voices at once.
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=tmp_dir or path.parent)
    tmp = Path(name)
    try:
        os.fchmod(fd, mode)
        with open(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """For writers that take a path and pick the format by its suffix (Lhotse's `to_file`): a
    temp path beside `path` that ends in `path`'s name, fsynced and renamed over `path` when
    the block succeeds, removed when it fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".tmp-", suffix=f"-{path.name}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def dumps_line(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"


def write_jsonl(path: Path, records: Iterable[dict]) -> None:
    write_text(path, "".join(dumps_line(record) for record in records))


def write_json(path: Path, obj, mode: int = 0o644) -> None:
    text = json.dumps(obj, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
    write_bytes(path, text.encode("utf-8"), mode)


def read_jsonl(path: Path) -> list[dict]:
    """Read a JSONL file; a torn last line (a kill during append) is ignored."""
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    present = [line for line in lines if line.strip()]
    try:
        # One parse for the whole file: a plan summary reads a journal line per finished item.
        records = json.loads("[" + ",".join(present) + "]")
    except json.JSONDecodeError:
        records = None
    if records is not None and len(records) == len(present):
        return records
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number < len(lines) - 1:
                raise ValueError(f"{path}:{number}: corrupt JSON line") from None
    return records


class Journal:
    """Append-only JSONL whose every line is on disk before `append` returns."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._checked_tail = False

    def read(self) -> list[dict]:
        return read_jsonl(self.path) if self.path.exists() else []

    def append(self, record: dict) -> None:
        if not self._checked_tail:
            self._drop_torn_tail()
            self._checked_tail = True
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(dumps_line(record))
            handle.flush()
            os.fsync(handle.fileno())

    def _drop_torn_tail(self) -> None:
        """Cut a partial last line left by a kill mid-append, so the next record stands alone."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(self.path, "r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)
