"""`fishflow compare A B`: the printed ratios are B/A of the reports' figures, and error rates
print in percent with B−A in percentage points.

The item records are synthetic, quality scores included (to the judge's contract)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fishflow.report.stats import by_language, figures

FISHFLOW = str(Path(sys.executable).parent / "fishflow")
GATES = {"wer": 0.5, "cer": 0.6, "similarity": 0.7}


def report(title: str, speed: float, error: float | None = None) -> dict:
    """Items in de (no ASR model: no error rates) and en; `error` scales en's WER and CER
    (None: the judge was off)."""
    items = []
    for lang in ("de", "en"):
        for voice in ("v1", "v2"):
            for n in range(4):
                scores = None
                if error is not None:
                    rate = error * (n + 1) if lang == "en" else None
                    scores = {"wer": rate, "cer": rate and rate / 2, "similarity": 0.8}
                items.append(
                    {
                        "lang": lang,
                        "voice": voice,
                        "id": f"{lang}{n}",
                        "status": "ok",
                        "reason": None,
                        "text_chars": 10 * n,
                        "duration_s": 1.0 + n,
                        "generation_s": speed * (1 + n),
                        "attempts": 1,
                        "scores": scores,
                        "takes": None if error is None else 1 + n % 2,
                    }
                )
    rows, total = figures(items, GATES)
    return {"title": title, "rows": rows, "languages": by_language(items, GATES), "total": total}


def printed(tmp_path, a: dict, b: dict) -> dict[tuple[str, str, str], list[str]]:
    """{(language, voice, metric): [A, B, B/A, B−A]} as `fishflow compare` prints them."""
    paths = []
    for name, content in (("a", a), ("b", b)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(content))
    done = subprocess.run([FISHFLOW, "compare", *map(str, paths)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert re.split(r"\s{2,}", lines[2].strip()) == [
        "language",
        "voice",
        "metric",
        "A",
        "B",
        "B/A",
        "B−A",
    ]
    # Columns are at least two spaces apart; cells hold single spaces ("not measured").
    cells = [re.split(r"\s{2,}", line.strip()) for line in lines[3:]]
    assert all(len(row) == 7 for row in cells)
    return {tuple(row[:3]): row[3:] for row in cells}


def test_compare_prints_b_over_a_per_language_voice_and_total(tmp_path):
    a, b = report("A", 0.5), report("B", 0.2)
    table = printed(tmp_path, a, b)
    rows_a = {(r["lang"], r["voice"]): r for r in a["rows"] + a["languages"] + [a["total"]]}
    rows_b = {(r["lang"], r["voice"]): r for r in b["rows"] + b["languages"] + [b["total"]]}
    assert {key[:2] for key in table} == set(rows_a)
    for key, row in rows_a.items():
        for label, field in (
            ("RTF", "rtf"),
            ("items/min", "items_per_min"),
            ("latency p95 s", "latency_p95_s"),
        ):
            expected = rows_b[key]["timing"][field] / row["timing"][field]
            assert float(table[(*key, label)][2]) == pytest.approx(expected, abs=1e-3)
        assert float(table[(*key, "audio s")][2]) == pytest.approx(1.0)
        assert table[(*key, "failed")][2] == "–"  # no ratio to a zero
        # Neither run was judged.
        assert table[(*key, "WER mean")] == ["not measured", "not measured", "–", "–"]
    assert float(table[("all", "all", "RTF")][2]) == pytest.approx(0.4, abs=1e-3)
    assert list(table)[-1][:2] == ("all", "all")


def test_compare_shows_quality_with_ratios_and_differences_in_points(tmp_path):
    a, b = report("A", 0.5, error=0.05), report("B", 0.5, error=0.1)
    table = printed(tmp_path, a, b)
    # en WER: mean of 0.05, 0.10, 0.15, 0.20 in A, doubled in B.
    assert table[("en", "v1", "WER mean")] == ["12.50 %", "25.00 %", "2.000", "+12.50 pp"]
    assert table[("en", "all", "CER mean")] == ["6.25 %", "12.50 %", "2.000", "+6.25 pp"]
    # Shares beyond the 50 % WER gate: none in A, none in B (0.4 at most).
    assert table[("en", "v1", "WER beyond gate")] == ["0.00 %", "0.00 %", "–", "+0.00 pp"]
    assert table[("en", "v1", "SIM mean")][:3] == ["0.800", "0.800", "1.000"]
    assert table[("en", "v1", "regenerations/item")][:3] == ["0.50", "0.50", "1.000"]
    # German had no ASR model: its error rates are not measured, in either run.
    assert table[("de", "v1", "WER mean")] == ["not measured", "not measured", "–", "–"]
    assert table[("all", "all", "WER mean")][2] == "2.000"
    assert table[("all", "all", "quality failed")][:2] == ["0", "0"]
    # Against a report from before the judge: A not measured, no ratio.
    table = printed(tmp_path, report("A", 0.5), b)
    assert table[("en", "v1", "WER mean")] == ["not measured", "25.00 %", "–", "–"]
    assert table[("en", "v1", "quality failed")][:2] == ["not measured", "0"]


def test_compare_says_which_report_it_cannot_read(tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(report("good", 1.0)))
    (tmp_path / "other.json").write_text("[1, 2]")
    for bad, says in (("missing.json", "cannot read report"), ("other.json", "not a fishflow")):
        done = subprocess.run(
            [FISHFLOW, "compare", str(good), str(tmp_path / bad)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode != 0 and says in done.stderr and bad in done.stderr
        assert "Traceback" not in done.stderr
