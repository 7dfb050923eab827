"""`fishflow compare A B`: the printed ratios are B/A of the reports' figures."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fishflow.report.stats import figures

FISHFLOW = str(Path(sys.executable).parent / "fishflow")


def report(title: str, speed: float) -> dict:
    items = [
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
        }
        for lang in ("de", "en")
        for voice in ("v1", "v2")
        for n in range(4)
    ]
    rows, total = figures(items)
    return {"title": title, "rows": rows, "total": total}


def test_compare_prints_b_over_a_per_language_voice_and_total(tmp_path):
    a, b = report("A", 0.5), report("B", 0.2)
    paths = []
    for name, content in (("a", a), ("b", b)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(content))
    done = subprocess.run([FISHFLOW, "compare", *map(str, paths)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

    lines = [line.split() for line in done.stdout.splitlines()[3:]]
    printed = {(lang, voice, " ".join(rest[:-3])): rest[-1] for lang, voice, *rest in lines}
    rows_a = {(r["lang"], r["voice"]): r for r in a["rows"] + [a["total"]]}
    rows_b = {(r["lang"], r["voice"]): r for r in b["rows"] + [b["total"]]}
    assert {key[:2] for key in printed} == set(rows_a)
    for key, row in rows_a.items():
        for label, field in (
            ("RTF", "rtf"),
            ("items/min", "items_per_min"),
            ("latency p95 s", "latency_p95_s"),
        ):
            expected = rows_b[key]["timing"][field] / row["timing"][field]
            assert float(printed[(*key, label)]) == pytest.approx(expected, abs=1e-3)
        assert float(printed[(*key, "audio s")]) == pytest.approx(1.0)
        assert printed[(*key, "failed")] == "–"  # no ratio to a zero
    assert float(printed[("all", "all", "RTF")]) == pytest.approx(0.4, abs=1e-3)
    assert lines[-1][:2] == ["all", "all"]
