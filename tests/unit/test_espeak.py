"""The eSpeak NG binding: real audio, and a pure function of its inputs."""

import numpy as np
import pytest

from fishflow.espeak import LANGUAGES, SAMPLE_RATE, Voice, synthesize


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
