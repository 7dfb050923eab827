"""Compare two benchmark reports (report.json): the main figures side by side, with B/A."""

from __future__ import annotations

import json
from pathlib import Path

# (label, key in a report row, whether it lives in the row's `timing`)
METRICS = (
    ("ok items", "ok", False),
    ("failed", "failed", False),
    ("audio s", "audio_s", False),
    ("generation s", "generation_s", True),
    ("RTF", "rtf", True),
    ("latency p50 s", "latency_p50_s", True),
    ("latency p95 s", "latency_p95_s", True),
    ("latency p99 s", "latency_p99_s", True),
    ("items/min", "items_per_min", True),
    ("audio min/GPU-h", "audio_min_per_gpu_hour", True),
)


def _rows(report: dict) -> dict[tuple[str, str], dict]:
    return {(row["lang"], row["voice"]): row for row in report["rows"] + [report["total"]]}


def _value(row: dict | None, key: str, timing: bool):
    if row is None:
        return None
    return (row["timing"] if timing else row).get(key)


def ratio(a, b) -> float | None:
    return b / a if a and b is not None else None


def _fmt(value) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def compare(a: dict, b: dict) -> list[list[str]]:
    """Table rows: language, voice, metric, A, B, B/A. Rows only in one report show '–'."""
    rows_a, rows_b = _rows(a), _rows(b)
    # The total last, whatever the languages are called.
    keys = sorted(set(rows_a) | set(rows_b), key=lambda key: (key == ("all", "all"), key))
    table = []
    for key in keys:
        for label, field, timing in METRICS:
            va = _value(rows_a.get(key), field, timing)
            vb = _value(rows_b.get(key), field, timing)
            r = ratio(va, vb)
            table.append([*key, label, _fmt(va), _fmt(vb), "–" if r is None else f"{r:.3f}"])
    return table


def format_table(table: list[list[str]]) -> str:
    header = ["language", "voice", "metric", "A", "B", "B/A"]
    widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i < 3 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [header, *table]
    )


def run(path_a: Path, path_b: Path) -> str:
    a, b = (json.loads(Path(p).read_text()) for p in (path_a, path_b))
    return f"A: {path_a} ({a['title']})\nB: {path_b} ({b['title']})\n" + format_table(compare(a, b))
