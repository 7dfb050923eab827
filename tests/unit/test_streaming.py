"""Streamed answers: the PCM assembled into the WAV a non-streamed answer is, and the times of
the first byte and the first audio; on chunk lists with a fake clock, then against the demo
server (the real servers: tests/fishspeech/test_streaming_git_servers.py)."""

import io
import itertools
import wave

import numpy as np
import pytest
import soundfile

from fishflow.errors import PermanentError, TransientError
from fishflow.serving.client import (
    SERVER_PCM,
    FishSpeechClient,
    PcmFormat,
    assemble_stream,
    audio_start,
    wav_header,
)
from tests.unit.test_demo_server import running

SAMPLES = (np.sin(np.arange(5000) / 7) * 12000).astype("<i2")
PCM = SAMPLES.tobytes()
LATENCY_S = 0.4


def soundfile_wav(samples: np.ndarray, rate: int = 44100, subtype: str = "PCM_16") -> bytes:
    """What the servers answer without streaming: libsndfile's WAV of the samples."""
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def streamed_header(rate: int) -> bytes:
    """The header fish-speech builds for a stream (wav_chunk_header: no frames yet)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
    return buffer.getvalue()


def clock(*times: float):
    """A fake monotonic clock: one reading per chunk."""
    readings = iter(times)
    return lambda: next(readings)


def test_the_header_is_libsndfiles():
    assert wav_header(SERVER_PCM, len(PCM)) + PCM == soundfile_wav(SAMPLES)
    assert wav_header(PcmFormat(16000, 1, 2), len(PCM)) + PCM == soundfile_wav(SAMPLES, 16000)


def test_header_less_chunks_become_the_servers_wav_and_time_their_first_audio():
    chunks = [PCM[:1000], PCM[1000:1001], PCM[1001:]]  # a split inside a sample is fine
    streamed = assemble_stream(chunks, started=10.0, ttfb_s=0.01, clock=clock(10.5, 10.6, 11.0))
    assert streamed.wav == soundfile_wav(SAMPLES)
    assert (streamed.ttfb_s, streamed.ttfa_s) == (0.01, 0.5)


def test_a_streamed_header_is_replaced_and_its_format_kept():
    body = streamed_header(22050) + PCM
    # The header arrives alone, then in two pieces of the next chunk: audio starts at 3.0.
    chunks = [body[:30], body[30:44], body[44:2000], body[2000:]]
    streamed = assemble_stream(chunks, 0.0, 0.1, clock(1.0, 2.0, 3.0, 4.0))
    assert streamed.wav == soundfile_wav(SAMPLES, 22050)
    assert streamed.ttfa_s == 3.0


def test_a_header_and_audio_in_one_chunk_start_the_audio_at_once():
    streamed = assemble_stream([streamed_header(44100) + PCM], 0.0, 0.1, clock(0.7))
    assert (streamed.wav, streamed.ttfa_s) == (soundfile_wav(SAMPLES), 0.7)


@pytest.mark.parametrize(
    ("head", "decided"),
    [
        (b"", None),
        (b"RI", None),
        (b"RIFF\x24\x00\x00\x00WAV", None),
        (b"RIFX", (SERVER_PCM, 0)),
        (b"RIFF\x24\x00\x00\x00WAVX", (SERVER_PCM, 0)),
        (b"\x01\x00\x02\x00", (SERVER_PCM, 0)),
        (streamed_header(44100)[:40], None),
        (streamed_header(24000), (PcmFormat(24000, 1, 2), 44)),
    ],
)
def test_where_the_audio_starts(head, decided):
    assert audio_start(head) == decided


@pytest.mark.parametrize(
    ("chunks", "message"),
    [
        ([], "held no audio"),
        ([b"RIFF\x24\x00\x00"], "held no audio"),
        ([streamed_header(44100)], "held no audio"),
        ([PCM[:101]], "ends inside a sample"),
        ([b"RIFF\x24\x00\x00\x00WAVEdata\x00\x00\x00\x00"], "data chunk before its fmt"),
        ([soundfile_wav(SAMPLES, subtype="FLOAT")[:100]], "not integer PCM"),
    ],
)
def test_what_cannot_be_assembled(chunks, message):
    ticks = itertools.count()
    with pytest.raises(PermanentError, match=message):
        assemble_stream(chunks, 0.0, 0.0, lambda: next(ticks))


# -- against the demo server ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def slow_demo(tmp_path_factory):
    """A demo server that takes LATENCY_S per answer, as a model would."""
    workdir = tmp_path_factory.mktemp("slow")
    with running(workdir, "--latency-s", str(LATENCY_S), "--fail-pattern", "FAIL_ME") as srv:
        yield FishSpeechClient(srv.url, timeout=20)


def test_streamed_and_whole_answers_are_byte_identical(slow_demo):
    payload = {"text": "Streamed or not, the same file.", "seed": 5, "language": "en"}
    whole = slow_demo.tts(payload)
    streamed = slow_demo.tts_streamed(payload)
    assert streamed.wav == whole
    # The headers come before the model's time, the audio after it (one segment per request).
    assert streamed.ttfb_s < LATENCY_S <= streamed.ttfa_s


def test_a_stream_cut_after_its_headers_is_transient(slow_demo):
    with pytest.raises(TransientError, match="cut off"):
        slow_demo.tts_streamed({"text": "FAIL_ME while streaming"})


def test_a_refusal_before_the_headers_keeps_its_status(slow_demo):
    with pytest.raises(PermanentError, match="HTTP 400"):
        slow_demo.tts_streamed({"text": "An mp3.", "format": "mp3"})
