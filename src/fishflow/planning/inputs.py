"""Reading JSONL inputs with every check done up front, each error naming file and line."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path
from typing import NamedTuple

from fishflow.errors import InputError

MAX_ID_LENGTH = 200  # leaves room for ".wav" and temp suffixes under the usual 255-byte limit
# Ids that pass every check of `_id_problem` (most do): one regex instead of a scan per character.
_PLAIN_ID = re.compile(rf"[A-Za-z0-9_-][A-Za-z0-9_.-]{{0,{MAX_ID_LENGTH - 1}}}")
_PLAIN_KEYS = frozenset({"id", "text", "voice"})


class Row(NamedTuple):
    """One input row (a tuple: a million are made when a plan is read)."""

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
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = None  # found and named line by line below
    if text is not None:
        for number, line in enumerate(text.split("\n"), start=1):
            line = line.rstrip("\r")
            if line.strip():
                yield number, line
        return
    for number, raw in enumerate(data.split(b"\n"), start=1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        try:
            yield number, raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(path, number, f"not valid UTF-8 ({exc.reason})") from None


def _parse_line(path: Path, number: int, line: str) -> object:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(path, number, f"malformed JSON: {exc.msg} at column {exc.colno}") from None


def _parse_all(path: Path, lines: list[tuple[int, str]]) -> list:
    """Every line's JSON value. One parse of all lines joined into an array (a million calls of
    json.loads cost seconds); where that fails, line by line, so the error names its line."""
    try:
        values = json.loads("[" + ",".join(line for _, line in lines) + "]")
    except json.JSONDecodeError:
        values = None
    if values is None or len(values) != len(lines):  # a line such as `1, 2` holds two values
        values = [_parse_line(path, number, line) for number, line in lines]
    return values


def _check_row(path: Path, number: int, obj: object, lang: str, index: int, max_chars: int) -> Row:
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
    lines = list(_decode_lines(path))
    plain_id = _PLAIN_ID.fullmatch
    for (number, _), obj in zip(lines, _parse_all(path, lines), strict=True):
        # The common row, checked inline (the same checks as _check_row, which names problems).
        if (
            type(obj) is dict
            and obj.keys() <= _PLAIN_KEYS
            and type(text := obj.get("text")) is str
            and type(item_id := obj.get("id")) is str
            and ((voice := obj.get("voice")) is None or type(voice) is str)
            and len(text) <= max_chars
            and plain_id(item_id)
            and ".." not in item_id
            and text.strip()
        ):
            row = Row(item_id, text, number, voice)
        else:
            row = _check_row(path, number, obj, lang, len(rows), max_chars)
        if row.id in first_line:
            raise InputError(
                path, number, f"duplicate id {row.id!r} (first seen on line {first_line[row.id]})"
            )
        first_line[row.id] = number
        rows.append(row)
    if not rows:
        raise InputError(path, None, "input file holds no rows")
    return rows
