"""The embedded demo server, run as a real subprocess on a free loopback port."""

import base64
import io
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import msgpack
import numpy as np
import pytest
import requests
import soundfile as sf

from fishflow.serving import demo_voices, espeak
from fishflow.serving.demo_server import (
    N_SLOTS,
    SAMPLES_PER_TOKEN,
    assign_slots,
    home_slot,
    upsample,
)
from fishflow.serving.replicas import free_loopback_port
from tests.helpers import REPO

TIMEOUT = 20
TEXTS = {
    "en": "The quick brown fox jumps over the lazy dog.",
    "de": "Der schnelle braune Fuchs springt über den faulen Hund.",
    "fr": "Le renard brun saute par-dessus le chien paresseux, à côté de l'église.",
    "ja": "こんにちは、今日はいい天気ですね。",
    "zh": "你好，今天天气很好。",
}


def start(workdir: Path, *args: str) -> tuple[subprocess.Popen, str]:
    port = free_loopback_port()
    cmd = [sys.executable, "-m", "fishflow.serving.demo_server", "--port", str(port)]
    cmd += ["--workdir", str(workdir), *args]
    stderr = (workdir / "server.err").open("ab")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=stderr)
    return proc, f"http://127.0.0.1:{port}"


def wait_listening(proc: subprocess.Popen, url: str, timeout: float = TIMEOUT) -> None:
    port = int(url.rsplit(":", 1)[1])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"server exited with {proc.returncode}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"server not listening after {timeout} s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=TIMEOUT)


@contextmanager
def running(workdir: Path, *args: str):
    workdir.mkdir(parents=True, exist_ok=True)
    proc, url = start(workdir, *args)
    try:
        wait_listening(proc, url)
        yield SimpleNamespace(url=url, proc=proc, workdir=workdir)
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """eSpeak engine, request log, fault injection on texts containing FAIL_ME."""
    workdir = tmp_path_factory.mktemp("espeak")
    log = workdir / "requests.jsonl"
    with running(workdir, "--request-log", str(log), "--fail-pattern", "FAIL_ME") as srv:
        srv.log = log
        yield srv


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """Tone engine behind an API key."""
    with running(tmp_path_factory.mktemp("tone"), "--engine", "tone", "--api-key", "s3cret") as srv:
        yield srv


def tts(srv, timeout: float = TIMEOUT, **body) -> requests.Response:
    return requests.post(f"{srv.url}/v1/tts", json=body, timeout=timeout)


def read_wav(response: requests.Response) -> tuple[np.ndarray, sf._SoundFileInfo]:
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "audio/wav"
    info = sf.info(io.BytesIO(response.content))
    samples, _ = sf.read(io.BytesIO(response.content), dtype="int16")
    return samples, info


def wav_bytes(frequency: float, seconds: float = 0.5) -> bytes:
    t = np.arange(int(seconds * 16000)) / 16000
    buffer = io.BytesIO()
    sf.write(buffer, 0.3 * np.sin(2 * np.pi * frequency * t), 16000, format="WAV")
    return buffer.getvalue()


def add(srv, ref_id: str, audio: bytes, field: str = "audio", **headers) -> requests.Response:
    return requests.post(
        f"{srv.url}/v1/references/add",
        data={"id": ref_id, "text": "A reference transcript."},
        files={field: ("voice.wav", audio)},
        headers=headers,
        timeout=TIMEOUT,
    )


def listed(srv) -> list[str]:
    response = requests.get(f"{srv.url}/v1/references/list", timeout=TIMEOUT)
    assert response.headers["Content-Type"] == "application/msgpack"
    return msgpack.unpackb(response.content)["reference_ids"]


def delete(srv, ref_id: str) -> requests.Response:
    body = {"reference_id": ref_id}
    return requests.delete(f"{srv.url}/v1/references/delete", json=body, timeout=TIMEOUT)


# --- health, bodies, validation ----------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_health(server, method):
    response = requests.request(method, f"{server.url}/v1/health", timeout=TIMEOUT)
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_tts_answers_pcm16_mono_44100_wav(server):
    samples, info = read_wav(tts(server, text=TEXTS["en"]))
    assert (info.samplerate, info.channels, info.subtype) == (44100, 1, "PCM_16")
    assert 1.0 < info.duration < 6.0
    assert np.abs(samples).max() > 3000


def test_msgpack_and_json_bodies_give_byte_identical_audio(server):
    body = {"text": "Same request, same bytes.", "seed": 7}
    packed = requests.post(
        f"{server.url}/v1/tts",
        data=msgpack.packb(body, use_bin_type=True),
        headers={"Content-Type": "application/msgpack"},
        timeout=TIMEOUT,
    )
    first = tts(server, **body)
    tts(server, text="Something else in between, to disturb any engine state.")
    assert packed.content == first.content == tts(server, **body).content


@pytest.mark.parametrize("language", sorted(TEXTS))
def test_every_language_speaks_and_is_detected_from_the_script(server, language):
    samples, info = read_wav(tts(server, text=TEXTS[language], language=language))
    assert 1.0 < info.duration < 10.0
    assert np.sqrt(np.mean(samples.astype(float) ** 2)) > 500
    assert tts(server, text=TEXTS[language]).content == tts(server, text=TEXTS[language]).content
    detected = tts(server, text=TEXTS[language]).content
    hinted = tts(server, text=TEXTS[language], language=language).content
    assert detected == hinted


def test_the_language_hint_changes_pronunciation(server):
    assert tts(server, text="Hallo Welt", language="en").content != (
        tts(server, text="Hallo Welt", language="de").content
    )


def test_unknown_fields_are_ignored(server):
    assert tts(server, text="Hi", some_future_field=[1, 2]).status_code == 200


@pytest.mark.parametrize(
    ("headers", "data"),
    [({"Content-Type": "text/plain"}, "text=hi"), ({}, b""), ({"Content-Type": "a/b"}, b"")],
)
def test_unsupported_content_type_is_415(server, headers, data):
    response = requests.post(f"{server.url}/v1/tts", data=data, headers=headers, timeout=TIMEOUT)
    assert response.status_code == 415
    assert response.json() == {
        "statusCode": 415,
        "message": None,
        "error": "Unsupported Media Type",
    }


def test_bad_json_is_400(server):
    response = requests.post(
        f"{server.url}/v1/tts",
        data="{not json",
        headers={"Content-Type": "application/json"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 400
    assert response.json()["error"] == "Bad Request" and response.json()["statusCode"] == 400


@pytest.mark.parametrize(
    ("body", "loc", "error_type"),
    [
        ({}, ["text"], "missing"),
        ({"text": "x", "top_p": 0.05}, ["top_p"], "greater_than_equal"),
        ({"text": "x", "top_p": "0.5"}, ["top_p"], "float_type"),
        ({"text": "x", "repetition_penalty": 2.5}, ["repetition_penalty"], "less_than_equal"),
        ({"text": "x", "temperature": 0}, ["temperature"], "greater_than_equal"),
        ({"text": "x", "format": "ogg"}, ["format"], "literal_error"),
        ({"text": "x", "references": [{"text": "t"}]}, ["references", 0, "audio"], "missing"),
    ],
)
def test_invalid_fields_are_422_with_a_pydantic_error_list(server, body, loc, error_type):
    response = tts(server, **body)
    assert response.status_code == 422
    [error] = response.json()
    assert (error["loc"], error["type"]) == (loc, error_type)


# --- formats, streaming, token limits, faults ---------------------------------------------------


def test_streaming_wav_is_raw_pcm_without_header(server):
    samples, _ = read_wav(tts(server, text="Streaming test."))
    streamed = tts(server, text="Streaming test.", streaming=True)
    assert streamed.status_code == 200 and not streamed.content.startswith(b"RIFF")
    # Chunked like the real servers' StreamResponse, and complete (a terminating chunk).
    assert streamed.headers["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in streamed.headers
    assert np.array_equal(np.frombuffer(streamed.content, dtype="<i2"), samples)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"format": "pcm"}, 500),
        ({"format": "mp3", "streaming": True}, 400),
        ({"max_new_tokens": -1}, 500),
        ({"repetition_penalty": 2.0}, 500),  # the schema allows 2, the model asserts < 2
        ({"text": "please FAIL_ME now"}, 500),
    ],
)
def test_error_statuses(server, body, status):
    response = tts(server, **{"text": "Errors.", **body})
    assert response.status_code == status
    assert set(response.json()) == {"statusCode", "message", "error"}


def test_a_failing_stream_is_cut_after_its_200_headers(server):
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        tts(server, text="FAIL_ME while streaming", streaming=True)


def test_mp3_as_far_as_libsndfile_writes_it(server):
    response = tts(server, text="An mp3.", format="mp3")
    if "MP3" in sf.available_formats():
        assert response.status_code == 200 and response.headers["Content-Type"] == "audio/mpeg"
    else:
        assert response.status_code == 500


def test_max_new_tokens_caps_the_audio(server):
    text = "A sentence long enough to run past a handful of codec frames."
    short, _ = read_wav(tts(server, text=text, max_new_tokens=5))
    assert len(short) == 4 * SAMPLES_PER_TOKEN
    unlimited = tts(server, text=text, max_new_tokens=0).content
    assert unlimited == tts(server, text=text).content  # the default 1024 tokens is ~47 s


def test_request_log_has_one_line_per_request(server):
    before = server.log.read_text().count("\n")
    tts(server, text="Logged.", seed=3, reference_id=None)
    requests.get(f"{server.url}/v1/health", timeout=TIMEOUT)
    lines = server.log.read_text().splitlines()
    assert len(lines) == before + 2
    entry = json.loads(lines[-2])
    assert entry["method"] == "POST" and entry["path"] == "/v1/tts" and entry["status"] == 200
    assert (entry["text"], entry["seed"], entry["reference_id"]) == ("Logged.", 3, None)
    assert entry["bytes_out"] > 44 and entry["seconds"] >= 0 and entry["time"].endswith("Z")


# --- references -----------------------------------------------------------------------------


def test_add_list_delete(server):
    audio = wav_bytes(220)
    response = add(server, "alice", audio)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/msgpack"
    assert msgpack.unpackb(response.content) == {
        "success": True,
        "message": "Reference voice 'alice' added successfully",
        "reference_id": "alice",
    }
    folder = server.workdir / "references" / "alice"
    assert (folder / "sample.wav").read_bytes() == audio
    assert (folder / "sample.lab").read_text() == "A reference transcript."
    assert "alice" in listed(server)
    as_json = requests.get(f"{server.url}/v1/references/list?format=json", timeout=TIMEOUT)
    accept = {"Accept": "application/json"}
    by_accept = requests.get(f"{server.url}/v1/references/list", headers=accept, timeout=TIMEOUT)
    assert as_json.json() == by_accept.json()
    assert as_json.json()["success"] is True and "alice" in as_json.json()["reference_ids"]

    assert add(server, "alice", audio).status_code == 409
    assert delete(server, "alice").status_code == 200
    assert "alice" not in listed(server) and not folder.exists()
    missing = delete(server, "alice")
    assert missing.status_code == 404
    assert msgpack.unpackb(missing.content)["message"] == "Reference ID 'alice' not found"


def test_list_needs_audio_with_a_same_stem_lab(server):
    folder = server.workdir / "references" / "by-hand"
    folder.mkdir(parents=True)
    (folder / "voice.wav").write_bytes(wav_bytes(300))
    assert "by-hand" not in listed(server)
    (folder / "voice.lab").write_text("transcript")
    assert "by-hand" in listed(server)


def test_add_rejects_bad_requests(server):
    file_field = add(server, "bob", wav_bytes(220), field="file")
    assert file_field.status_code == 422 and file_field.json()[0]["loc"] == ["audio"]
    assert add(server, "no/slash", wav_bytes(220)).status_code == 400
    assert add(server, "x" * 256, wav_bytes(220)).status_code == 400
    assert add(server, "empty", b"").status_code == 400
    assert delete(server, "no/slash").status_code == 400


def test_unknown_reference_id_quirk(server):
    default = tts(server, text="Who am I?").content
    assert tts(server, text="Who am I?", reference_id="ghost").content == default
    folder = server.workdir / "references" / "ghost"
    assert folder.is_dir() and not any(folder.iterdir())
    conflict = add(server, "ghost", wav_bytes(440), Accept="application/json")
    assert conflict.status_code == 409
    assert conflict.json()["message"] == "Reference ID 'ghost' already exists"
    assert "ghost" not in listed(server)


def test_voices_follow_their_reference_audio(server):
    text = "Every voice sounds different."
    for ref_id, frequency in (("v-low", 200), ("v-high", 600)):
        assert add(server, ref_id, wav_bytes(frequency)).status_code == 200
    low, high = (tts(server, text=text, reference_id=i).content for i in ("v-low", "v-high"))
    default = tts(server, text=text).content
    assert len({low, high, default}) == 3
    inline = [{"audio": wav_bytes(200), "text": "A reference transcript."}]
    packed = requests.post(
        f"{server.url}/v1/tts",
        data=msgpack.packb({"text": text, "references": inline}, use_bin_type=True),
        headers={"Content-Type": "application/msgpack"},
        timeout=TIMEOUT,
    )
    assert packed.content == low  # same audio, same voice, inline or registered
    inline[0]["audio"] = base64.b64encode(inline[0]["audio"]).decode()
    assert tts(server, text=text, references=inline).content == low
    delete(server, "v-low")
    add(server, "v-low", wav_bytes(900))
    assert tts(server, text=text, reference_id="v-low").content != low
    delete(server, "v-low")
    add(server, "v-low", wav_bytes(200))
    assert tts(server, text=text, reference_id="v-low").content == low


def test_a_reference_naming_a_demo_voice_is_spoken_in_that_voice(server):
    text = "Which voice is this?"
    first, second = demo_voices.VOICES[:2]
    # Two recordings of one demo voice are that voice, whatever else their audio holds.
    add(server, "named-a", demo_voices.reference_wav(first, "One sentence."))
    add(server, "named-b", demo_voices.reference_wav(first, "Quite another sentence."))
    add(server, "named-c", demo_voices.reference_wav(second, "One sentence."))
    a, b, c = (tts(server, text=text, reference_id=i) for i in ("named-a", "named-b", "named-c"))
    assert a.content == b.content != c.content
    assert np.array_equal(read_wav(a)[0], upsample(espeak.synthesize(text, "en", first)))
    assert np.array_equal(read_wav(c)[0], upsample(espeak.synthesize(text, "en", second)))


def test_wrong_voice_fault_answers_in_another_demo_voice(server, tmp_path, speaker_embedding):
    reference = (REPO / "resources" / "demo" / "voices" / "voice01.wav").read_bytes()
    other = (REPO / "resources" / "demo" / "voices" / "voice02.wav").read_bytes()
    assert demo_voices.wrong_voice(demo_voices.named_voice(reference)) == (
        demo_voices.named_voice(other)
    )
    add(server, "wv-right", reference)
    add(server, "wv-other", other)
    wrong_text = "This sentence is spoken in the wrong voice, which a judge should notice."
    right_text = "This sentence is spoken in the right voice, as the reference asks."
    with running(tmp_path / "faulty", "--wrong-voice-pattern", "wrong voice") as faulty:
        add(faulty, "wv-right", reference)
        wrong = tts(faulty, text=wrong_text, reference_id="wv-right")
        untouched = tts(faulty, text=right_text, reference_id="wv-right")
    right = tts(server, text=wrong_text, reference_id="wv-right")
    assert wrong.status_code == 200 and wrong.content != right.content
    # Spoken in the next demo voice; texts that do not match are left alone.
    assert wrong.content == tts(server, text=wrong_text, reference_id="wv-other").content
    assert untouched.content == tts(server, text=right_text, reference_id="wv-right").content
    voice = speaker_embedding(reference)
    right_similarity = float(speaker_embedding(right.content) @ voice)
    wrong_similarity = float(speaker_embedding(wrong.content) @ voice)
    assert right_similarity > wrong_similarity + 0.1, (right_similarity, wrong_similarity)


def test_undecodable_reference_audio_is_500(server):
    inline = [{"audio": "not audio", "text": "t"}]
    assert tts(server, text="Hi", references=inline).status_code == 500


def test_colliding_voices_are_bumped_to_distinct_slots():
    first, second = b"\x01" * 32, b"\x01" * 4 + b"\x02" * 28  # same home slot
    slots = assign_slots([first, second])
    assert slots[first] == home_slot(first) and slots[second] != slots[first]
    many = [bytes([i]) * 32 for i in range(N_SLOTS)]
    assert len(set(assign_slots(many).values())) == N_SLOTS


# --- API key ------------------------------------------------------------------------------------


def test_api_key_guards_every_route(secured):
    for method, path in (
        ("GET", "/v1/health"),
        ("POST", "/v1/tts"),
        ("GET", "/v1/references/list"),
    ):
        response = requests.request(method, secured.url + path, timeout=TIMEOUT)
        assert response.status_code == 401
        assert response.json() == {"statusCode": 401, "message": None, "error": "Unauthorized"}
    wrong = {"Authorization": "Bearer nope"}
    response = requests.get(f"{secured.url}/v1/health", headers=wrong, timeout=TIMEOUT)
    assert response.status_code == 401 and response.json()["message"] == "Invalid token"
    right = {"Authorization": "Bearer s3cret"}
    assert requests.get(f"{secured.url}/v1/health", headers=right, timeout=TIMEOUT).ok
    body = {"text": "With a key."}
    spoken = requests.post(f"{secured.url}/v1/tts", json=body, headers=right, timeout=TIMEOUT)
    assert spoken.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "key", "status"),
    [
        ("GET", "/v1/tts", None, 401),  # a route's key check comes before its method check
        ("GET", "/v1/tts", "s3cret", 405),
        ("PUT", "/v1/health", None, 405),  # health checks its method first
        ("GET", "/v1/nowhere", None, 404),  # an unknown path, before any key check
    ],
)
def test_routing_order(secured, method, path, key, status):
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = requests.request(method, secured.url + path, headers=headers, timeout=TIMEOUT)
    assert response.status_code == status
    if status == 405:
        assert response.content == b"" and response.headers["Allow"]


def test_tone_engine_is_audible_unclipped_and_proportional(secured):
    right = {"Authorization": "Bearer s3cret"}

    def speak(text: str) -> np.ndarray:
        body = {"text": text}
        response = requests.post(f"{secured.url}/v1/tts", json=body, headers=right, timeout=10)
        return read_wav(response)[0]

    short, long = speak("Short."), speak("A much longer sentence of text.")
    assert 0 < np.abs(short).max() < 32000 and np.abs(short).std() > 1000
    assert len(long) > 3 * len(short) and np.array_equal(short, speak("Short."))


# --- process lifecycle --------------------------------------------------------------------------


def test_warmup_latency_one_at_a_time_and_sigterm(tmp_path):
    proc, url = start(tmp_path, "--engine", "tone", "--warmup-s", "0.5", "--latency-s", "0.3")
    try:
        time.sleep(0.2)
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{url}/v1/health", timeout=TIMEOUT)
        wait_listening(proc, url)
        statuses = []

        def speak():
            statuses.append(tts(SimpleNamespace(url=url), text="Slow.").status_code)

        began = time.monotonic()
        threads = [threading.Thread(target=speak) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(TIMEOUT)
        assert statuses == [200, 200]
        assert time.monotonic() - began >= 0.6  # 2 × latency: served one at a time
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=TIMEOUT) == 0
    finally:
        stop(proc)


def test_sigterm_during_warmup_exits_0(tmp_path):
    proc, _ = start(tmp_path, "--warmup-s", "30")
    try:
        # Not a fixed sleep: under load the interpreter may not have reached its handlers yet.
        deadline = time.monotonic() + TIMEOUT
        while b"warming up" not in (tmp_path / "server.err").read_bytes():
            assert proc.poll() is None and time.monotonic() < deadline, "no warm-up announced"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=TIMEOUT) == 0
    finally:
        stop(proc)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "example.com"])
def test_refuses_non_loopback_hosts(tmp_path, host):
    cmd = [
        sys.executable,
        "-m",
        "fishflow.serving.demo_server",
        "--host",
        host,
        "--workdir",
        str(tmp_path),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 2 and "loopback" in result.stderr


@pytest.mark.parametrize("engine", ["espeak", "tone"])
def test_vary_with_seed_makes_each_seed_its_own_take(server, tmp_path, engine):
    body = {"text": "One sentence, several takes.", "seed": 7}
    # Without the flag the seed changes nothing (the contract tests pin that too).
    assert tts(server, **body).content == tts(server, **{**body, "seed": 8}).content
    with running(tmp_path, "--vary-with-seed", "--engine", engine) as seeded:
        takes = [tts(seeded, **{**body, "seed": seed}) for seed in (7, 8, 7, 9)]
        plain = tts(seeded, text=body["text"]).content  # no seed: the plain voice
    audio = [take.content for take in takes]
    assert audio[0] == audio[2]
    assert len({audio[0], audio[1], audio[3], plain}) == 4
    durations = [read_wav(take)[1].duration for take in takes]
    assert max(durations) < 1.1 * min(durations)  # a take, not another voice


def test_audio_faults_say_another_text_or_lead_with_silence_for_the_fault_seeds(tmp_path):
    args = ["--wrong-text-pattern", "WRONG", "--silence-pattern", "QUIET", "--fault-seeds", "7,9"]
    with running(tmp_path, *args) as srv:

        def speak(text, seed):
            return read_wav(tts(srv, text=text, seed=seed))[0]

        plain, wrong, spared = speak("say WRONG", 1), speak("say WRONG", 7), speak("say WRONG", 8)
        assert not np.array_equal(wrong, plain) and np.array_equal(spared, plain)
        quiet, loud = speak("a QUIET one", 9), speak("a QUIET one", 1)
        lead = int(3.0 * 44100)
        assert len(quiet) == len(loud) + lead
        assert not quiet[:lead].any() and np.array_equal(quiet[lead:], loud)
