"""The HTTP contract fishflow relies on, checked against the demo server AND the real
fish-speech 0.1.0 server (tiny random checkpoints, CPU), so the two cannot drift apart.

Every test runs against both. Where they legitimately differ, the test says so explicitly:
- only the demo (like the git servers) has /v1/references/*; 0.1.0 reads references/<id>/;
- the demo's audio ignores the seed (documented in fishflow.demo_server).
"""

import io
import json
from pathlib import Path

import msgpack
import pytest
import requests
import soundfile

from fishflow import espeak
from fishflow.client import FishSpeechClient
from fishflow.errors import PermanentError, ServerError
from fishflow.generate import ShardGenerator, tts_payload
from fishflow.plan import Plan
from fishflow.registration import register_voices, verify_voices
from fishflow.voices import Voice, load_voice
from tests.contract.conftest import API_KEY, DEMO, REAL, Server
from tests.helpers import make_config

# Small, so the real server answers in well under a second. The tiny model never emits its end
# token, and the demo cuts its speech at the same cap: (max_new_tokens - 1) codec frames of
# 2048 samples, for texts that take longer than that (~1.1 s) to say.
MAX_NEW_TOKENS = 24
FRAMES = (MAX_NEW_TOKENS - 1) * 2048
TEXT = "The quick brown fox jumps over the lazy dog, twice, near the old river bank."
TIMEOUT_S = 60
REGISTRY = {DEMO: "http", REAL: "folder"}  # what register_voices finds on each server

http = requests.Session()
http.trust_env = False  # loopback only: never through a proxy


def post_tts(server: Server, body: dict, headers: dict | None = None) -> requests.Response:
    return http.post(
        f"{server.url}/v1/tts",
        json={"text": TEXT, "max_new_tokens": MAX_NEW_TOKENS, **body},
        headers=headers,
        timeout=TIMEOUT_S,
    )


def client(server: Server, api_key: str | None = None) -> FishSpeechClient:
    return FishSpeechClient(server.url, api_key=api_key, timeout=TIMEOUT_S)


def assert_wav(data: bytes) -> None:
    with soundfile.SoundFile(io.BytesIO(data)) as wav:
        assert (wav.samplerate, wav.channels, wav.subtype) == (44100, 1, "PCM_16")
        assert len(wav.read(dtype="int16")) == FRAMES


def assert_wav_response(response: requests.Response) -> None:
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"] == "audio/wav"
    assert_wav(response.content)


def json_body(**fields) -> bytes:
    return json.dumps({"max_new_tokens": MAX_NEW_TOKENS, **fields}).encode()


def spec(voice: Voice) -> dict:
    """A voice as the workflow hands it to register_voices (see server_spec in common.smk)."""
    return {"id": voice.id, "audio": str(voice.audio), "text": voice.text, "sha256": voice.sha256}


def make_voice(folder: Path, voice_id: str, variant: str) -> dict:
    """A spoken reference: eSpeak at 22.05 kHz, which the servers resample."""
    text = "This reference voice reads one calm sentence for the server."
    path = folder / f"{voice_id}.wav"
    soundfile.write(path, espeak.synthesize(text, "en", espeak.Voice(variant)), espeak.SAMPLE_RATE)
    return spec(load_voice(voice_id, {"audio": str(path), "text": text}, 1.0, 60.0))


@pytest.fixture(scope="session")
def narrator(server, tmp_path_factory) -> tuple[str, dict]:
    """A voice registered as fishflow's launcher does it; (registry kind, voice spec)."""
    voice = make_voice(tmp_path_factory.mktemp("narrator"), "narrator", "f3")
    return register_voices(client(server), server.workdir, [voice]), voice


# -- health and API key ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_health(server, method):
    response = http.request(method, f"{server.url}/v1/health", timeout=TIMEOUT_S)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize("path", ["/v1/health", "/v1/tts"])
def test_api_key_guards_every_route(keyed_server, path):
    def call(token: str | None) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        body = {"text": TEXT, "max_new_tokens": MAX_NEW_TOKENS}
        return http.post(keyed_server.url + path, json=body, headers=headers, timeout=TIMEOUT_S)

    for token in (None, "wrong-key"):
        refused = call(token)
        assert refused.status_code == 401
        assert refused.json()["statusCode"] == 401
    assert call(API_KEY).status_code == 200


def test_client_with_api_key(keyed_server):
    keyed = client(keyed_server, API_KEY)
    keyed.health()
    assert_wav(keyed.tts({"text": TEXT, "max_new_tokens": MAX_NEW_TOKENS}))
    for refused in (client(keyed_server), client(keyed_server, "wrong-key")):
        with pytest.raises(PermanentError, match="401"):
            refused.health()


# -- /v1/tts --------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["json", "msgpack"])
def test_tts_returns_wav(server, encoding):
    if encoding == "json":
        data, content_type = json_body(text=TEXT), "application/json"
    else:
        body = {"text": TEXT, "max_new_tokens": MAX_NEW_TOKENS}
        data, content_type = msgpack.packb(body), "application/msgpack"
    response = http.post(
        f"{server.url}/v1/tts",
        data=data,
        headers={"Content-Type": content_type},
        timeout=TIMEOUT_S,
    )
    assert_wav_response(response)


def test_unknown_fields_are_ignored(server):
    plain = post_tts(server, {"seed": 3})
    extra = post_tts(server, {"seed": 3, "no_such_field": [1, 2], "speaker": "nobody"})
    assert_wav_response(extra)
    assert extra.content == plain.content


@pytest.mark.parametrize(
    ("content_type", "data", "status", "problem"),
    [
        ("text/plain", b"text=hi", 415, None),
        ("application/json", b"{not json", 400, None),
        ("application/json", json_body(), 422, (["text"], "missing")),
        ("application/json", json_body(text=TEXT, top_p=1.5), 422, (["top_p"], "less_than_equal")),
        ("application/json", json_body(text=TEXT, format="pcm"), 500, None),  # pcm only streams
    ],
    ids=["415-content-type", "400-bad-json", "422-missing-text", "422-top-p", "500-pcm-file"],
)
def test_error_statuses(server, content_type, data, status, problem):
    response = http.post(
        f"{server.url}/v1/tts",
        data=data,
        headers={"Content-Type": content_type},
        timeout=TIMEOUT_S,
    )
    assert response.status_code == status
    payload = response.json()
    if problem:  # pydantic's error list, not the server's error object
        assert [(error["loc"], error["type"]) for error in payload] == [problem]
    else:
        assert set(payload) == {"statusCode", "message", "error"}
        assert payload["statusCode"] == status


# -- determinism ----------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes(server):
    first, second = (post_tts(server, {"seed": 7}) for _ in range(2))
    assert_wav_response(first)
    assert first.content == second.content


def test_other_seed_changes_audio_only_on_real_server(server):
    first, other = (post_tts(server, {"seed": seed}).content for seed in (7, 8))
    # Documented difference: the demo's audio depends on text and voice only.
    assert (first != other) == (server.kind == REAL)


# -- voices ---------------------------------------------------------------------------------------


def test_references_api_exists_only_on_demo(server, narrator):
    listed = client(server).list_references()
    if server.kind == DEMO:
        assert "narrator" in listed
    else:
        assert listed is None  # 0.1.0 answers 404: voices are folders in its working directory


def test_registered_voice_is_used(server, narrator):
    registry, voice = narrator
    assert registry == REGISTRY[server.kind]
    verify_voices(client(server), server.workdir, [voice], registry)
    default, spoken = (
        post_tts(server, {"seed": 5, **ref}) for ref in ({}, {"reference_id": "narrator"})
    )
    assert_wav_response(spoken)
    # The reference changes the audio on both: the demo picks another voice, and the real
    # server puts the reference's codes into the model's prompt.
    assert spoken.content != default.content


def test_unknown_voice_quirk_is_caught(server, tmp_path):
    ghost = make_voice(tmp_path, "ghost", "m3")  # exists on disk, never registered
    # The quirk: 200 in a default voice, and an empty references/<id>/ left behind.
    assert_wav_response(post_tts(server, {"reference_id": "ghost"}))
    folder = server.workdir / "references" / "ghost"
    assert folder.is_dir() and not any(folder.iterdir())
    # fishflow's guard: the voice does not count as present, so nothing is generated with it.
    with pytest.raises(ServerError, match="ghost"):
        verify_voices(client(server), server.workdir, [ghost], REGISTRY[server.kind])
    # Registering afterwards still works: the demo's add answers 409 for the empty folder, so
    # fishflow clears it and adds again; for 0.1.0 fishflow writes the files into it.
    assert register_voices(client(server), server.workdir, [ghost]) == REGISTRY[server.kind]


def test_workflow_payload_is_accepted(server, tmp_path):
    """What a generate job sends, built by fishflow's own plan and generator."""
    texts = {"en": [{"id": "en0", "text": TEXT}], "de": [{"id": "de0", "text": TEXT}]}
    config = make_config(
        tmp_path, texts, voices=("reader",), generation={"max_new_tokens": MAX_NEW_TOKENS}
    )
    plan = Plan(config)
    voices = [spec(voice) for voice in plan.voices.values()]
    register_voices(client(server), server.workdir, voices)
    for lang, voice, name in plan.shard_keys():
        shard = plan.shard(lang, voice, name)
        params = ShardGenerator(shard, plan.out, config).params
        for item in shard.items:
            assert_wav(client(server).tts(tts_payload(item, item.seed, params)))
