"""The demo's voices: references that name their eSpeak voice, written by a reproducible script."""

import io
import shutil

import numpy as np
import pytest
import soundfile as sf

from fishflow.serving import demo_voices, espeak
from fishflow.serving.demo_server import PITCHES, VARIANTS, voice_in_slot
from tests.helpers import REPO, write_wav

CONFIGS = ("config/config.yaml", "config/benchmark_fishspeech_60_en_v1.yaml")


def test_committed_references_are_what_the_script_writes(tmp_path, monkeypatch):
    for config in CONFIGS:
        (tmp_path / config).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / config, tmp_path / config)
    monkeypatch.chdir(tmp_path)
    assert demo_voices.main(list(CONFIGS)) == 0
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.glob("resources/*/voices/*.wav"))
    assert len(written) == 8  # 3 demo voices, 5 benchmark voices
    for path in written:
        assert (tmp_path / path).read_bytes() == (REPO / path).read_bytes(), path


def test_every_demo_voice_is_a_byte_stable_slot():
    # test_espeak checks these (variant, pitch) pairs speak identically in every process.
    for voice in demo_voices.VOICES:
        assert voice.variant in VARIANTS and voice.pitch in PITCHES
        assert (voice.rate, voice.range) == (espeak.Voice().rate, espeak.Voice().range)
    assert len({voice.variant for voice in demo_voices.VOICES}) == len(demo_voices.VOICES)


def test_only_a_demo_voice_tag_names_a_voice(tmp_path):
    for voice in demo_voices.VOICES:
        assert demo_voices.named_voice(demo_voices.reference_wav(voice, "Hello.")) == voice
    assert demo_voices.named_voice(write_wav(tmp_path / "plain.wav").read_bytes()) is None
    assert demo_voices.named_voice(b"not audio") is None
    buffer = io.BytesIO()
    with sf.SoundFile(buffer, "w", 22050, 1, "PCM_16", format="WAV") as handle:
        handle.comment = demo_voices.tag(espeak.Voice("f3"))  # not byte-stable: not a demo voice
        handle.write(np.zeros(100, dtype=np.int16))
    assert demo_voices.named_voice(buffer.getvalue()) is None


@pytest.mark.parametrize(
    "voice", [*demo_voices.VOICES, espeak.Voice(), voice_in_slot(bytes(32), 0)], ids=str
)
def test_the_wrong_voice_is_another_demo_variant(voice):
    wrong = demo_voices.wrong_voice(voice)
    assert wrong in demo_voices.VOICES and wrong.variant != voice.variant
