"""Reading JSONL inputs with every check done up front, each error naming file and line."""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from fishflow.errors import InputError

MAX_ID_LENGTH = 200  # leaves room for ".wav" and temp suffixes under the usual 255-byte limit
# Ids that pass every check of `_id_problem` (most do): one regex instead of a scan per character.
_PLAIN_ID = re.compile(rf"[A-Za-z0-9_-][A-Za-z0-9_.-]{{0,{MAX_ID_LENGTH - 1}}}")


@dataclass(frozen=True, slots=True)
class Row:
    id: str
    text: str
    line: int
    voice: str | None = None


def _id_problem(item_id: str) -> str | None:
    """Why `item_id` cannot be a file name, or None when it is safe."""
    if _PLAIN_ID.fullmatch(item_id) and ".." not in item_id:
        return None
    if not item_id:
        return "is empty"
    if len(item_id) > MAX_ID_LENGTH:
        return f"is longer than {MAX_ID_LENGTH} characters"
    if "/" in item_id or "\\" in item_id:
        return "contains a path separator"
    if item_id in (".", "..") or ".." in item_id:
        return "contains '..'"
    if item_id.startswith("."):
        return "starts with '.' (hidden file)"
    if item_id != item_id.strip():
        return "has leading or trailing white space"
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in item_id):
        return "contains a control character"
    return None


def _decode_lines(path: Path):
    """Yield (line number, text) for non-blank lines; accept a UTF-8 BOM and CRLF."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(path, None, "input file does not exist") from None
    except OSError as exc:
        raise InputError(path, None, f"cannot read input file: {exc}") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for number, raw in enumerate(data.split(b"\n"), start=1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(path, number, f"not valid UTF-8 ({exc.reason})") from None


def _parse_row(path: Path, number: int, line: str, lang: str, index: int, max_chars: int) -> Row:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(path, number, f"malformed JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(obj, dict):
        raise InputError(path, number, f"expected a JSON object, got {type(obj).__name__}")
    if "text" not in obj:
        raise InputError(path, number, "missing 'text'")
    text = obj["text"]
    if not isinstance(text, str):
        raise InputError(path, number, f"'text' must be a string, got {type(text).__name__}")
    if not text.strip():
        raise InputError(path, number, "'text' is empty")
    if len(text) > max_chars:
        raise InputError(
            path,
            number,
            f"'text' has {len(text)} characters, more than generation.max_text_chars "
            f"({max_chars}): split it into several rows at sentence boundaries",
        )
    row_lang = obj.get("lang", obj.get("language"))
    if row_lang is not None and row_lang != lang:
        raise InputError(
            path, number, f"row language {row_lang!r} does not match this file's language {lang!r}"
        )
    item_id = obj.get("id")
    if item_id is None:
        item_id = f"{index:06d}"
    elif isinstance(item_id, int) and not isinstance(item_id, bool):
        item_id = str(item_id)
    elif not isinstance(item_id, str):
        raise InputError(path, number, f"'id' must be a string, got {type(item_id).__name__}")
    problem = _id_problem(item_id)
    if problem:
        raise InputError(path, number, f"id {item_id!r} is unsafe as a file name: {problem}")
    voice = obj.get("voice")
    if voice is not None and not isinstance(voice, str):
        raise InputError(path, number, f"'voice' must be a string, got {type(voice).__name__}")
    return Row(id=item_id, text=text, line=number, voice=voice)


def read_rows(path: Path, lang: str, max_chars: int = 400) -> list[Row]:
    """Parse one language's JSONL; rows without an id get their zero-padded row index."""
    path = Path(path)
    rows: list[Row] = []
    first_line: dict[str, int] = {}
    for number, line in _decode_lines(path):
        row = _parse_row(path, number, line, lang, len(rows), max_chars)
        if row.id in first_line:
            raise InputError(
                path, number, f"duplicate id {row.id!r} (first seen on line {first_line[row.id]})"
            )
        first_line[row.id] = number
        rows.append(row)
    if not rows:
        raise InputError(path, None, "input file holds no rows")
    return rows
