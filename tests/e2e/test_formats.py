"""The output folder in the field's libraries: one real demo run, loaded with the real
`datasets` and exported to and validated by the real `lhotse`."""

from __future__ import annotations

import importlib
import shutil
import sys

import numpy as np
import pytest
import soundfile
import yaml

from fishflow import atomic, cli
from tests.e2e.conftest import TEXTS
from tests.helpers import make_config
from tests.workflow_runner import Project, assert_ok

LANGUAGES = ("de", "en")
# Spoken by the tone engine for more than the 5 s limit: fails in both voices.
LONG = {"id": "en5", "text": "This deliberately long sentence runs well past the limit. " * 3}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Project:
    root = tmp_path_factory.mktemp("formats")
    texts = {**TEXTS, "en": TEXTS["en"] + [LONG]}
    config = make_config(
        root,
        texts,
        shard_size=2,
        server={"backoff_s": 0.05, "retries": 2, "demo": {"engine": "tone"}},
        validation={"max_duration_s": 5.0, "retries": 0},
    )
    project = Project(root=root, config=config)
    assert_ok(project.run())
    assert [r["id"] for r in project.manifest("failed", "en")] == ["en5", "en5"]
    return project


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n", 2)[1])


def test_card_front_matter_has_a_config_per_language(run):
    card = (run.out / "README.md").read_text()
    front = front_matter(card)
    assert [config["config_name"] for config in front["configs"]] == list(LANGUAGES)
    assert front["license"] == "unknown" and "Set `dataset.license`" in card
    for config in front["configs"]:
        lang = config["config_name"]
        [files] = config["data_files"]
        assert files["path"] == [f"audio/{lang}/metadata.jsonl", f"audio/{lang}/**/*.wav"]
        columns = {column["name"]: column for column in config["features"]}
        assert columns["audio"] == {"name": "audio", "dtype": "audio"}
        assert columns["seed"]["dtype"] == "int64" and columns["text"]["dtype"] == "string"
        assert "file_name" not in columns and "path" not in columns
    assert "| en | alice | 5 |" in card and "2 item(s) failed" in card


@pytest.mark.parametrize("lang", LANGUAGES)
def test_datasets_loads_each_language_with_its_audio(run, hf_datasets, lang):
    ds = hf_datasets.load_dataset(str(run.out), lang, split="train")
    manifest = run.manifest("metadata", lang)
    assert len(ds) == len(manifest) == 10  # the spoken items, not the failed ones
    for row, expected in zip(ds, manifest, strict=True):
        assert (row["id"], row["voice"], row["text"]) == (
            expected["id"],
            expected["voice"],
            expected["text"],
        )
        assert (row["seed"], row["lang"], row["sha256"]) == (
            expected["seed"],
            lang,
            expected["sha256"],
        )
        samples, rate = soundfile.read(run.out / expected["path"])
        assert row["audio"]["sampling_rate"] == rate == 44100
        np.testing.assert_array_equal(row["audio"]["array"], samples)
    if lang == "en":
        assert "en5" not in ds["id"]


def test_failed_items_are_not_in_the_dataset_rows(run):
    rows = atomic.read_jsonl(run.out / "audio" / "en" / "metadata.jsonl")
    assert len(rows) == 10 and {row["id"] for row in rows} == {f"en{i}" for i in range(5)}
    assert rows[0]["file_name"] == "alice/en0.wav" and "path" not in rows[0]


@pytest.fixture(scope="module")
def lhotse():
    return importlib.import_module("lhotse")


def export(run, *args: str) -> None:
    assert cli.main(["export", "lhotse", str(run.out), *args]) == 0


def test_lhotse_export_loads_and_validates_with_audio(run, lhotse):
    export(run, "--cuts")
    folder = run.out / "lhotse"
    for lang in LANGUAGES:
        recordings = lhotse.load_manifest(folder / f"fishflow_recordings_{lang}.jsonl.gz")
        supervisions = lhotse.load_manifest(folder / f"fishflow_supervisions_{lang}.jsonl.gz")
        cuts = lhotse.load_manifest(folder / f"fishflow_cuts_{lang}.jsonl.gz")
        lhotse.validate_recordings_and_supervisions(recordings, supervisions, read_data=True)
        lhotse.validate(cuts, read_data=True)
        manifest = run.manifest("metadata", lang)
        assert len(recordings) == len(supervisions) == len(cuts) == len(manifest) == 10
        for cut, expected in zip(cuts, manifest, strict=True):
            [supervision] = cut.supervisions
            assert (supervision.text, supervision.speaker, supervision.language) == (
                expected["text"],
                expected["voice"],
                lang,
            )
            assert supervision.custom["seed"] == expected["seed"]
            assert supervision.custom["id"] == expected["id"]
            samples, rate = soundfile.read(run.out / expected["path"], dtype="float32")
            assert cut.sampling_rate == rate
            np.testing.assert_array_equal(cut.load_audio()[0], samples)
        assert cut.recording.sources[0].source == str((run.out / expected["path"]).resolve())


def test_lhotse_relative_export_survives_moving_the_folder(run, lhotse, tmp_path):
    export(run, "--lang", "de", "--relative", "--to", str(run.out / "lhotse-relative"))
    moved = tmp_path / "moved"
    shutil.copytree(run.out / "audio", moved / "audio")
    shutil.copytree(run.out / "lhotse-relative", moved / "lhotse-relative")
    assert not (moved / "lhotse-relative" / "fishflow_recordings_en.jsonl.gz").exists()
    recordings = lhotse.load_manifest(moved / "lhotse-relative" / "fishflow_recordings_de.jsonl.gz")
    assert recordings[0].sources[0].source == "audio/de/alice/de0.wav"
    recordings = recordings.with_path_prefix(moved)
    lhotse.validate(recordings, read_data=True)
    samples, _ = soundfile.read(run.out / "audio/de/alice/de0.wav", dtype="float32")
    np.testing.assert_array_equal(recordings[0].load_audio()[0], samples)


def test_lhotse_export_without_lhotse_says_how_to_install(run, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "lhotse", None)  # `import lhotse` fails
    assert cli.main(["export", "lhotse", str(run.out), "--to", str(run.root / "none")]) == 2
    assert "pip install 'fishflow[lhotse]'" in capsys.readouterr().err
    assert not (run.root / "none").exists()


def test_lhotse_export_of_a_language_the_run_lacks_names_what_it_has(run, capsys):
    assert cli.main(["export", "lhotse", str(run.out), "--lang", "fr"]) == 2
    assert "no metadata_<lang>.jsonl for fr (found: de, en)" in capsys.readouterr().err
