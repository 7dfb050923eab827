import io

import numpy as np
import pytest
import soundfile

from fishflow.planning.config import validate_config
from fishflow.speaking.audio import check_wav

LIMITS = validate_config(
    {"output_dir": "o", "inputs": {"en": "x"}, "voices": {"v": {"audio": "a", "text": "t"}}}
)["validation"]


def wav_bytes(samples: np.ndarray, rate: int = 44100) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, samples.astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def tone(seconds: float, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * 44100)) / 44100
    return amplitude * np.sin(2 * np.pi * 200 * t)


def test_a_plausible_tone_passes():
    check = check_wav(wav_bytes(tone(2.0)), "A sentence of normal length.", LIMITS)
    assert check.ok, check
    assert check.sample_rate == 44100 and check.channels == 1
    assert check.duration_s == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("data", "text", "reason"),
    [
        (b"RIFF", "x", "too_small"),
        (b"\x00" * 5000, "hello", "unreadable"),
        (wav_bytes(tone(0.1)), "hi", "too_short"),
        (wav_bytes(np.zeros(44100 * 2)), "Silence is golden.", "silent"),
        (wav_bytes(np.clip(tone(2.0, amplitude=3.0), -1, 1)), "Loud and clipped audio.", "clipped"),
        (wav_bytes(tone(30.0)), "Hi.", "implausibly_long"),
        (wav_bytes(tone(0.5)), "x" * 200, "implausibly_short"),
    ],
)
def test_failures_carry_a_reason(data, text, reason):
    check = check_wav(data, text, LIMITS)
    assert not check.ok
    assert check.reason == reason
    assert check.detail
