"""The eSpeak NG binding: real audio, and a pure function of its inputs."""

import subprocess
import sys

import numpy as np
import pytest

from fishflow.serving.espeak import LANGUAGES, SAMPLE_RATE, Voice, synthesize


@pytest.mark.parametrize("language", sorted(LANGUAGES))
def test_every_language_gives_int16_speech(language):
    text = {"ja": "こんにちは。", "zh": "你好。"}.get(language, "Hello, good morning.")
    samples = synthesize(text, language)
    assert samples.dtype == np.int16
    assert 0.3 < len(samples) / SAMPLE_RATE < 5
    assert np.abs(samples).max() > 3000


def test_output_does_not_depend_on_what_was_spoken_before():
    # eSpeak keeps pitch-flutter and filter state in C globals across utterances.
    voice = Voice("f3", pitch=70, rate=190, range=60)
    first = synthesize("Hello world.", "en", voice)
    synthesize("Something quite different, and longer, in another voice.", "de", Voice("croak"))
    assert np.array_equal(first, synthesize("Hello world.", "en", voice))


def test_variant_and_prosody_change_the_voice():
    plain = synthesize("Hello world.", "en")
    assert not np.array_equal(plain, synthesize("Hello world.", "en", Voice("f3")))
    assert not np.array_equal(plain, synthesize("Hello world.", "en", Voice(pitch=80)))
    assert len(synthesize("Hello world.", "en", Voice(rate=300))) < len(plain)


def test_unknown_variant_is_an_error():
    with pytest.raises(ValueError, match="no voice"):
        synthesize("Hello.", "en", Voice("no-such-variant"))


DIGEST_EVERY_SLOT = """
import hashlib
from fishflow.serving import espeak
from fishflow.serving.demo_server import PITCHES, VARIANTS
for variant in VARIANTS:
    for pitch in PITCHES:
        for lang, text in (("en", "Read 42 aloud!"), ("ja", "今日は良い天気ですね。")):
            samples = espeak.synthesize(text, lang, espeak.Voice(variant, pitch, 175, 50))
            print(variant, pitch, lang, hashlib.sha256(samples.tobytes()).hexdigest())
"""


def test_every_demo_voice_slot_is_identical_across_processes():
    # Some variants (e.g. f3, whisperf) add noise from libc state that differs per process:
    # the demo server may only use slots that give byte-identical audio in a fresh process.
    runs = [
        subprocess.run(
            [sys.executable, "-c", DIGEST_EVERY_SLOT],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        for _ in range(3)
    ]
    assert runs[0] and runs[0] == runs[1] == runs[2]
