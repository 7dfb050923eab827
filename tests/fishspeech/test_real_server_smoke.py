"""Smoke tests against the REAL fish-speech 0.1.0 API server (tiny random checkpoints, CPU).

They pin down the behaviour the workflow's client relies on, including the 0.1.0 quirks.
"""

import io

import msgpack
import pytest
import requests
import soundfile

from tests.helpers import write_wav

pytestmark = pytest.mark.fishspeech

MAX_NEW_TOKENS = 16
# The tiny model never emits its end token: max_new_tokens - 1 frames of 2048 samples each.
EXPECTED_FRAMES = (MAX_NEW_TOKENS - 1) * 2048
TIMEOUT_S = 60


def tts(server, body: dict, headers: dict | None = None) -> requests.Response:
    return requests.post(
        f"{server.url}/v1/tts",
        json={"max_new_tokens": MAX_NEW_TOKENS, **body},
        headers=headers,
        timeout=TIMEOUT_S,
    )


def assert_wav(response: requests.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "audio/wav"
    info = soundfile.info(io.BytesIO(response.content))
    assert (info.samplerate, info.channels, info.subtype) == (44100, 1, "PCM_16")
    assert info.frames == EXPECTED_FRAMES


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_health(fish_server, method):
    response = requests.request(method, f"{fish_server.url}/v1/health", timeout=TIMEOUT_S)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_json_request_returns_wav(fish_server):
    assert_wav(tts(fish_server, {"text": "Hello from the smoke test."}))


def test_msgpack_request_returns_wav(fish_server):
    body = msgpack.packb({"text": "Hello via msgpack.", "max_new_tokens": MAX_NEW_TOKENS})
    response = requests.post(
        f"{fish_server.url}/v1/tts",
        data=body,
        headers={"content-type": "application/msgpack"},
        timeout=TIMEOUT_S,
    )
    assert_wav(response)


def test_same_seed_gives_identical_bytes(fish_server):
    first, second, other = (
        tts(fish_server, {"text": "Deterministic?", "seed": seed}) for seed in (7, 7, 8)
    )
    assert_wav(first)
    assert first.content == second.content
    assert first.content != other.content


def test_unknown_reference_id_answers_200_and_creates_empty_folder(fish_server):
    assert_wav(tts(fish_server, {"text": "Who am I?", "reference_id": "no-such-voice"}))
    folder = fish_server.workdir / "references" / "no-such-voice"
    assert folder.is_dir()
    assert not any(folder.iterdir())


def test_folder_reference_is_used(fish_server):
    folder = fish_server.workdir / "references" / "narrator"
    write_wav(folder / "narrator.wav", seconds=1.0)  # 22.05 kHz: the server resamples it
    (folder / "narrator.lab").write_text("A short reference sentence.")
    assert_wav(tts(fish_server, {"text": "In the narrator's voice.", "reference_id": "narrator"}))
    assert "Loaded audio with 1.00 seconds" in fish_server.log.read_text()


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"text=hi", "text/plain", 415),
        (b"{not json", "application/json", 400),
        (b'{"max_new_tokens": 16}', "application/json", 422),
        (b'{"text": "hi", "max_new_tokens": 16, "format": "pcm"}', "application/json", 500),
    ],
    ids=["415-content-type", "400-bad-json", "422-missing-text", "500-pcm-not-streaming"],
)
def test_error_shapes(fish_server, body, content_type, status):
    response = requests.post(
        f"{fish_server.url}/v1/tts",
        data=body,
        headers={"content-type": content_type},
        timeout=TIMEOUT_S,
    )
    assert response.status_code == status
    payload = response.json()
    if status == 422:  # pydantic's error list, not the server's error object
        assert payload[0]["loc"] == ["text"] and payload[0]["type"] == "missing"
    else:
        assert set(payload) == {"statusCode", "message", "error"}
        assert payload["statusCode"] == status


def test_no_reference_management_endpoints(fish_server):
    response = requests.get(f"{fish_server.url}/v1/references/list", timeout=TIMEOUT_S)
    assert response.status_code == 404


def test_api_key_guards_every_route(fish_server_with_key):
    health = f"{fish_server_with_key.url}/v1/health"
    assert requests.get(health, timeout=TIMEOUT_S).status_code == 401
    wrong = {"Authorization": "Bearer wrong"}
    assert requests.get(health, headers=wrong, timeout=TIMEOUT_S).status_code == 401
    good = {"Authorization": f"Bearer {fish_server_with_key.api_key}"}
    assert requests.get(health, headers=good, timeout=TIMEOUT_S).status_code == 200
    assert tts(fish_server_with_key, {"text": "hi"}).status_code == 401
    assert_wav(tts(fish_server_with_key, {"text": "Authorised."}, headers=good))
