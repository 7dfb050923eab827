"""Same config, backend and seeds twice: byte-identical WAVs, and reports that differ only in
their `timing` fields (and items.csv only in generation seconds)."""

import csv
import hashlib
import json
import shutil

from tests.helpers import make_config
from tests.workflow_runner import Project, assert_ok

TEXTS = {
    "en": [
        {"id": "en-1", "text": "The first benchmark sentence."},
        {"id": "en-2", "text": "Is the second one a question?"},
        {"id": "en-3", "text": "On 3 May 2025 we spoke 1,024 items!"},
    ]
}


def without_timing(value):
    if isinstance(value, dict):
        return {key: without_timing(v) for key, v in value.items() if key != "timing"}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def outcome(project: Project) -> tuple:
    report_dir = project.out / "report"
    with open(report_dir / "items.csv", newline="", encoding="utf-8") as handle:
        items = [
            {k: v for k, v in row.items() if k != "generation_s"} for row in csv.DictReader(handle)
        ]
    wavs = {
        name: hashlib.sha256(path.read_bytes()).hexdigest() for name, path in project.wavs().items()
    }
    return wavs, json.loads((report_dir / "report.json").read_text()), items


def test_benchmark_twice_gives_identical_audio_and_non_timing_report(tmp_path):
    config = make_config(tmp_path, TEXTS, voices=("voice01", "voice02"), shard_size=2)
    project = Project(root=tmp_path, config=config)
    assert_ok(project.run())
    wavs, report, items = outcome(project)
    shutil.rmtree(project.out)
    assert_ok(project.run())
    wavs_again, report_again, items_again = outcome(project)

    assert len(wavs) == 6 and wavs_again == wavs
    assert items_again == items
    assert without_timing(report_again) == without_timing(report)
    # The timing fields are there, and are what differs.
    assert report_again["timing"]["started_at"] and report["rows"][0]["timing"]["generation_s"] > 0
