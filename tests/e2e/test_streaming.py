"""End-to-end with server.streaming: the real `snakemake`, the demo server answering streamed,
the WAVs kept byte-identical to a non-streamed run's, first-audio times in the manifests, the
items.csv and the report."""

import csv
import json
from pathlib import Path

from tests.e2e.conftest import TEXTS
from tests.helpers import make_config
from tests.workflow_runner import Project, assert_ok

LATENCY_S = 0.3  # the demo's stand-in for the model's time, spent after a stream's headers


def project(root: Path, streaming: bool) -> Project:
    config = make_config(
        root,
        {"en": TEXTS["en"]},
        shard_size=5,
        # One request at a time: a time to first byte without a wait behind another request.
        server={"streaming": streaming, "max_in_flight": 1, "demo": {"latency_s": LATENCY_S}},
    )
    return Project(root=root, config=config)


def test_streamed_run_keeps_the_same_wavs_and_reports_first_audio(tmp_path):
    streamed, whole = project(tmp_path / "streamed", True), project(tmp_path / "whole", False)
    for run in (streamed, whole):
        assert_ok(run.run())
    rows, whole_rows = streamed.manifest("metadata", "en"), whole.manifest("metadata", "en")
    assert len(rows) == 10
    assert [(r["id"], r["voice"], r["sha256"]) for r in rows] == [
        (r["id"], r["voice"], r["sha256"]) for r in whole_rows
    ]
    assert {r["voice"] for r in rows} == {"alice", "bob"}
    for row in rows:
        assert 0 < row["ttfb_s"] < LATENCY_S <= row["ttfa_s"] <= row["generation_s"], row
    assert all(r["ttfb_s"] is None and r["ttfa_s"] is None for r in whole_rows)
    # What the demo sent: header-less PCM when streamed, whole WAV files otherwise.
    sizes = sorted(r["bytes"] for r in rows)
    assert sorted(r["bytes_out"] + 44 for r in streamed.tts_requests()) == sizes
    assert sorted(r["bytes_out"] for r in whole.tts_requests()) == sizes

    report = json.loads((streamed.out / "report" / "report.json").read_text())
    total = report["total"]["timing"]["first_audio"]
    assert total["items"] == 10 and [r["timing"]["first_audio"]["items"] for r in report["rows"]]
    for key in ("ttfb", "ttfa", "generation"):
        assert total[f"{key}_p50_s"] <= total[f"{key}_p90_s"] <= total[f"{key}_p99_s"]
    assert total["ttfb_p99_s"] < LATENCY_S <= total["ttfa_p50_s"]
    assert 0 < total["ttfa_share_p50"] <= 1
    html = (streamed.out / "report" / "index.html").read_text()
    assert '<table id="first-audio">' in html and html.count("TTFA p90 s") == 1
    with open(streamed.out / "report" / "items.csv", newline="", encoding="utf-8") as handle:
        assert all(float(item["ttfa_s"]) >= LATENCY_S for item in csv.DictReader(handle))

    whole_report = json.loads((whole.out / "report" / "report.json").read_text())
    assert whole_report["total"]["timing"]["first_audio"] is None
    assert "Time to first audio not measured" in (whole.out / "report" / "index.html").read_text()
