"""The page's building blocks: sections, tables of one figure per column, headline cards."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from fishflow.report.numbers import NOT_MEASURED


@dataclass(frozen=True)
class Page:
    """What every section is made from: report.json's content, the run's items (from the
    manifests) and its output folder (the samples' WAVs)."""

    report: dict
    items: list[dict]
    out: Path


@dataclass(frozen=True)
class Section:
    """A titled part of the page; `id` makes its anchor (section-<id>), `body` is HTML."""

    id: str
    title: str
    body: str


@dataclass(frozen=True)
class Column:
    """One figure: its header, its cell text from a row (a report row, or any record a table
    lists), and whether it is text (left-aligned)."""

    label: str
    text: Callable[[Any], str]
    left: bool = False


def _cell(text: str, left: bool) -> str:
    kind = "nm" if text == NOT_MEASURED else "l" if left else None
    return f"<td{_class(kind)}>{escape(text)}</td>"


def _class(name: str | None) -> str:
    return f' class="{name}"' if name else ""


def table(table_id: str, columns: list[Column], rows: list, classes=None) -> str:
    """`classes(row)`: the row's CSS class (the total, a published reference), or None."""
    head = "".join(f"<th{_class('l' if c.left else None)}>{escape(c.label)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = "".join(_cell(column.text(row), column.left) for column in columns)
        body.append(f"<tr{_class(classes(row) if classes else None)}>{cells}</tr>")
    return f'<table id="{table_id}"><tr>{head}</tr>{"".join(body)}</table>'


def total_class(row: dict) -> str | None:
    return "total" if row["lang"] == "all" else None


KEY = [
    Column("language", lambda row: row["lang"], left=True),
    Column("voice", lambda row: row["voice"], left=True),
]


def card(figure: str, label: str, value: str, note: str) -> str:
    """One headline figure; `figure` names it for the page's readers and tests."""
    kind = "card nm" if value == NOT_MEASURED else "card"
    return (
        f'<div class="{kind}" data-figure="{figure}"><b>{escape(value)}</b>'
        f"<span>{escape(label)}</span><small>{escape(note)}</small></div>"
    )
