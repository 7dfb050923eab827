"""The dataset rows and card: column types that hold over every row, loaded by the real
`datasets`."""

import json

import numpy as np
import pytest
import yaml

from fishflow import atomic
from fishflow.errors import FishflowError
from fishflow.formats.huggingface import SCORE_TYPES, column_types, write_dataset
from fishflow.layout import Layout
from fishflow.merging.merge import write_summary
from tests.helpers import write_wav


def test_types_widen_over_rows_and_declared_ones_hold_when_every_value_is_none():
    rows = [
        {"parameters": {"top_p": 1, "extra": None}, "scores": None, "takes": None, "new": None},
        {"parameters": {"top_p": 0.5, "chunk": [1, 2]}, "scores": None, "takes": None},
    ]
    types = column_types(rows)
    assert types["parameters"] == {"top_p": "float64", "extra": "null", "chunk": ["int64"]}
    assert types["scores"] == SCORE_TYPES and types["takes"] == "int64"
    assert types["seed"] == "int64" and types["text"] == "string" and "path" not in types
    assert types["new"] == "null"


def test_a_field_with_two_types_is_an_error_naming_it():
    with pytest.raises(FishflowError, match=r"'parameters.top_p'.*float64 and string"):
        column_types([{"parameters": {"top_p": 0.5}}, {"parameters": {"top_p": "high"}}])
    with pytest.raises(FishflowError, match=r"'extra'.*string and \{'a': 'int64'\}"):
        column_types([{"extra": "x"}, {"extra": {"a": 1}}])


def spoken_rows(count: int, text: str) -> list[dict]:
    """Manifest rows of one WAV: scores are None until the last row (the judge measured only
    that one), past the 10 MB from which `datasets` would infer the types."""
    rows = []
    for i in range(count):
        scores = {"wer": 0.5, "gate": "wer", "judge_s": {"asr": 0.1}} if i == count - 1 else None
        rows.append(
            {
                "id": f"en{i}",
                "lang": "en",
                "voice": "alice",
                "text": text,
                "path": "audio/en/alice/en0.wav",
                "duration_s": 1.0,
                "sample_rate": 22050,
                "bytes": 1,
                "sha256": "0",
                "seed": i,
                "parameters": {"top_p": 0.7},
                "generation_s": 0.1,
                "attempts": 1,
                "backend": "demo",
                "scores": scores,
            }  # fmt: skip
        )
    return rows


def test_late_scores_load_because_the_card_declares_the_types(tmp_path, hf_datasets):
    out = tmp_path / "out"
    layout = Layout(out)
    wav = write_wav(layout.wav("en", "alice", "en0"), seconds=0.1)
    rows = spoken_rows(6000, "x" * 2000)
    atomic.write_jsonl(layout.metadata("en"), rows)
    atomic.write_jsonl(layout.failed("en"), [])
    write_summary([layout.metadata("en")], [layout.failed("en")], layout.summary())
    write_dataset(out, ["en"], layout.summary(), "f" * 64, "cc-by-4.0")
    assert layout.dataset_metadata("en").stat().st_size > 10 << 20
    assert "license: cc-by-4.0\n" in layout.dataset_card().read_text()

    ds = hf_datasets.load_dataset(str(out), "en", split="train", cache_dir=str(tmp_path / "c"))
    assert len(ds) == 6000 and ds[0]["scores"] is None
    last = ds[-1]
    assert last["scores"]["wer"] == 0.5 and last["scores"]["gate"] == "wer"
    assert last["scores"]["judge_s"] == {"asr": 0.1, "vad": None, "speaker": None}
    assert last["audio"]["sampling_rate"] == 22050 and last["audio"]["path"] == str(wav)
    assert np.abs(last["audio"]["array"]).max() > 0.1

    # The control: the same folder without the declared types is what `datasets` cannot load.
    card = layout.dataset_card().read_text()
    front = card.split("---\n")[1]
    configs = [
        {k: v for k, v in config.items() if k != "features"}
        for config in yaml.safe_load(front)["configs"]
    ]
    layout.dataset_card().write_text("---\n" + json.dumps({"configs": configs}) + "\n---\n")
    with pytest.raises(hf_datasets.exceptions.DatasetGenerationError):
        hf_datasets.load_dataset(str(out), "en", split="train", cache_dir=str(tmp_path / "d"))
