"""Compare two benchmark reports (report.json): speed and quality figures side by side, B/A.

Error rates and shares print in percent, with B−A in percentage points beside the ratio; a
figure a report did not measure (a report from before the judge, a language without ASR)
prints "not measured", and a row that only one report has prints "–".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from fishflow.errors import FishflowError
from fishflow.report.numbers import NOT_MEASURED, fixed, percent, points, significant


def _at(*path: str) -> Callable[[dict], float | int | None]:
    """The figure at `path` in a row; None where the report has no such figure (one made
    before the figure existed)."""

    def value(row: dict):
        for key in path:
            row = row.get(key) if isinstance(row, dict) else None
        return row

    return value


def _quality_failed(row: dict) -> int | None:
    """Items failed by a quality gate; None where the judge scored nothing."""
    quality = row.get("quality")
    return sum(quality["failed"].values()) if quality and quality["judged"] else None


def _plain(value) -> str:
    return significant(value, 4) if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Metric:
    label: str
    value: Callable[[dict], float | int | None]  # the figure of a report row
    rate: bool = False  # a fraction: printed in percent, with B−A
    shown: Callable[[float], str] = _plain

    def text(self, value) -> str:
        if value is None:
            return NOT_MEASURED
        return percent(value) if self.rate else self.shown(value)


METRICS = (
    Metric("ok items", _at("ok")),
    Metric("failed", _at("failed")),
    Metric("audio s", _at("audio_s")),
    Metric("generation s", _at("timing", "generation_s")),
    Metric("RTF", _at("timing", "rtf")),
    Metric("latency p50 s", _at("timing", "latency_p50_s")),
    Metric("latency p95 s", _at("timing", "latency_p95_s")),
    Metric("latency p99 s", _at("timing", "latency_p99_s")),
    Metric("items/min", _at("timing", "items_per_min")),
    Metric("audio min/GPU-h", _at("timing", "audio_min_per_gpu_hour")),
    Metric("WER mean", _at("quality", "wer", "mean"), rate=True),
    Metric("WER median", _at("quality", "wer", "median"), rate=True),
    Metric("WER beyond gate", _at("quality", "wer", "beyond_gate"), rate=True),
    Metric("CER mean", _at("quality", "cer", "mean"), rate=True),
    Metric("CER median", _at("quality", "cer", "median"), rate=True),
    Metric("CER beyond gate", _at("quality", "cer", "beyond_gate"), rate=True),
    Metric("SIM mean", _at("quality", "similarity", "mean"), shown=partial(fixed, decimals=3)),
    Metric("SIM median", _at("quality", "similarity", "median"), shown=partial(fixed, decimals=3)),
    Metric("SIM beyond gate", _at("quality", "similarity", "beyond_gate"), rate=True),
    Metric("MOS mean", _at("quality", "mos", "mean"), shown=partial(fixed, decimals=2)),
    Metric(
        "regenerations/item",
        _at("quality", "regenerations", "per_item"),
        shown=partial(fixed, decimals=2),
    ),
    Metric("quality failed", _quality_failed),
)

HEADER = ["language", "voice", "metric", "A", "B", "B/A", "B−A"]


def _rows(report: dict) -> dict[tuple[str, str], dict]:
    rows = report["rows"] + report.get("languages", []) + [report["total"]]
    return {(row["lang"], row["voice"]): row for row in rows}


def ratio(a, b) -> float | None:
    return b / a if a and b is not None else None


def _line(key: tuple[str, str], metric: Metric, a_row: dict | None, b_row: dict | None):
    va = metric.value(a_row) if a_row else None
    vb = metric.value(b_row) if b_row else None
    r = ratio(va, vb)
    difference = vb - va if metric.rate and va is not None and vb is not None else None
    return [
        *key,
        metric.label,
        metric.text(va) if a_row is not None else "–",
        metric.text(vb) if b_row is not None else "–",
        "–" if r is None else f"{r:.3f}",
        "–" if difference is None else points(difference),
    ]


def compare(a: dict, b: dict) -> list[list[str]]:
    """Table rows: language, voice, metric, A, B, B/A, B−A (rates). Per language × voice, per
    language (voice "all") and in total (last)."""
    rows_a, rows_b = _rows(a), _rows(b)
    keys = sorted(set(rows_a) | set(rows_b), key=lambda key: (key == ("all", "all"), key))
    table = []
    for key in keys:
        row_a, row_b = rows_a.get(key), rows_b.get(key)
        for metric in METRICS:
            table.append(_line(key, metric, row_a, row_b))
    return table


def format_table(table: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [HEADER, *table]) for i in range(len(HEADER))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i < 3 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [HEADER, *table]
    )


def read_report(path: Path) -> dict:
    try:
        report = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise FishflowError(f"cannot read report {path}: {exc}") from exc
    if not isinstance(report, dict) or "rows" not in report or "total" not in report:
        raise FishflowError(f"{path} is not a fishflow report.json")
    return report


def run(path_a: Path, path_b: Path) -> str:
    a, b = read_report(path_a), read_report(path_b)
    return f"A: {path_a} ({a['title']})\nB: {path_b} ({b['title']})\n" + format_table(compare(a, b))
