"""HTTP client for the Fish Speech API (the real server and the demo speak the same surface)."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import msgpack
import requests

from fishflow.errors import PermanentError, TransientError, Unreachable

T = TypeVar("T")


@dataclass(frozen=True)
class PcmFormat:
    """Integer PCM as a WAV header describes it."""

    sample_rate: int
    channels: int
    sample_width: int  # bytes per sample

    @property
    def block(self) -> int:
        return self.channels * self.sample_width


# What every server streams: 0.1.0, d3df505 and 3dd1f85 drop the header they build and send the
# codec's samples as int16 (tools/server/inference.py); their one codec config, modded_dac_vq, is
# mono 44.1 kHz, and so is the demo server.
SERVER_PCM = PcmFormat(sample_rate=44100, channels=1, sample_width=2)
WAV_HEADER_BYTES = 44


def wav_header(fmt: PcmFormat, data_bytes: int) -> bytes:
    """The 44-byte header libsndfile writes for integer PCM, as in the servers' WAV files."""
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        WAV_HEADER_BYTES - 8 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,  # WAVE_FORMAT_PCM
        fmt.channels,
        fmt.sample_rate,
        fmt.sample_rate * fmt.block,
        fmt.block,
        8 * fmt.sample_width,
        b"data",
        data_bytes,
    )


def _streamed_header(head: bytes) -> tuple[PcmFormat, int] | None:
    """The format and length of the WAV header that `head` (RIFF....WAVE) starts with, or None
    while the header is incomplete. Its sizes are ignored: a stream's length is unknown when
    its header is sent."""
    offset, fmt = 12, None
    while len(head) >= offset + 8:
        chunk_id, size = struct.unpack_from("<4sI", head, offset)
        if chunk_id == b"data":
            if fmt is None:
                raise PermanentError("streamed WAV header: a data chunk before its fmt chunk")
            return fmt, offset + 8
        if chunk_id == b"fmt ":
            if len(head) < offset + 24:
                return None
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", head, offset + 8)
            if tag != 1 or bits % 8:
                raise PermanentError(f"streamed WAV header: not integer PCM ({tag=}, {bits=})")
            fmt = PcmFormat(rate, channels, bits // 8)
        offset += 8 + size + size % 2
    return None


def audio_start(head: bytes) -> tuple[PcmFormat, int] | None:
    """Where the audio begins in the first bytes of a streamed body, and in which format: after
    a WAV header where the server streams one, else at once, in `SERVER_PCM`. None: too few
    bytes yet to tell."""
    magic = ((0, b"RIFF"), (8, b"WAVE"))
    if any(head[at : at + 4] != word[: len(head[at : at + 4])] for at, word in magic):
        return SERVER_PCM, 0
    if len(head) < 12:
        return None
    return _streamed_header(head)


@dataclass(frozen=True)
class StreamedWav:
    """A streamed answer assembled into a WAV file, and when its first bytes came. Both times
    run from the moment the request was sent."""

    wav: bytes
    ttfb_s: float  # the answer's first byte (its status line and headers)
    ttfa_s: float  # its first audio: the first PCM bytes after any streamed header


def assemble_stream(
    chunks: Iterable[bytes],
    started: float,
    ttfb_s: float,
    clock: Callable[[], float] = time.monotonic,
) -> StreamedWav:
    """Read a streamed /v1/tts body chunk by chunk, noting the arrival of the first audio, and
    give it the header the same request without streaming gets."""
    head, fmt, ttfa_s = b"", None, None
    audio = bytearray()
    for chunk in chunks:
        now = clock()
        if fmt is None:
            head += chunk
            found = audio_start(head)
            if found is None:
                continue
            fmt, offset = found
            chunk = head[offset:]
        if chunk and ttfa_s is None:
            ttfa_s = now - started
        audio += chunk
    if ttfa_s is None:
        raise PermanentError(f"streamed answer held no audio ({len(head)} bytes before its end)")
    if len(audio) % fmt.block:
        raise PermanentError(f"streamed answer ends inside a sample ({len(audio)} bytes of PCM)")
    return StreamedWav(wav_header(fmt, len(audio)) + audio, round(ttfb_s, 4), round(ttfa_s, 4))


def _snippet(response: requests.Response, limit: int = 300) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:limit] + ("…" if len(text) > limit else "")


def _looks_like_html(response: requests.Response) -> bool:
    return "html" in response.headers.get("content-type", "") or response.text.lstrip()[:1] == "<"


class FishSpeechClient:
    """One server. Proxies are bypassed: the server is always on this node's loopback."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 300.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False  # an http_proxy would turn localhost into a proxy's HTML
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"

    def _request(self, method: str, path: str, timeout: float | None = None, **kwargs):
        try:
            return self.session.request(
                method, self.url + path, timeout=timeout or self.timeout, **kwargs
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            # A read timeout is a ConnectionError's sibling, not a dead server.
            kind = Unreachable if isinstance(exc, requests.ConnectionError) else TransientError
            raise kind(f"{method} {self.url}{path}: {type(exc).__name__}: {exc}") from exc

    def _raise_for_status(self, response: requests.Response, what: str) -> None:
        if response.status_code < 400:
            return
        kind = TransientError if response.status_code >= 500 else PermanentError
        raise kind(f"{what}: HTTP {response.status_code}: {_snippet(response)}")

    def health(self, timeout: float | None = None) -> None:
        """Raise unless the answer is the Fish Speech health JSON (not a proxy's page)."""
        response = self._request("GET", "/v1/health", timeout=timeout)
        if response.status_code == 401:
            raise PermanentError(f"{self.url}/v1/health: HTTP 401: wrong or missing API key")
        self._raise_for_status(response, f"{self.url}/v1/health")
        if _looks_like_html(response):
            raise PermanentError(
                f"{self.url}/v1/health answered HTML, not Fish Speech (a proxy or another "
                f"service on this port?): {_snippet(response, 120)}"
            )
        try:
            status = response.json().get("status")
        except (ValueError, AttributeError):
            status = None
        if status != "ok":
            raise PermanentError(f"{self.url}/v1/health: unexpected answer {_snippet(response)}")

    def tts(self, payload: dict) -> bytes:
        """POST /v1/tts with a msgpack body; return the WAV bytes."""
        response = self._request(
            "POST",
            "/v1/tts",
            data=msgpack.packb(payload, use_bin_type=True),
            headers={"Content-Type": "application/msgpack"},
        )
        self._raise_for_status(response, "POST /v1/tts")
        if not response.content.startswith(b"RIFF"):
            raise PermanentError(
                f"POST /v1/tts: HTTP {response.status_code} but the body is not a WAV "
                f"({response.headers.get('content-type')}): {_snippet(response, 120)}"
            )
        return response.content

    def tts_streamed(self, payload: dict) -> StreamedWav:
        """POST /v1/tts with `streaming: true`; read the chunked answer as it arrives and
        assemble it into a WAV file, timing its first byte and its first audio."""
        body = msgpack.packb({**payload, "streaming": True}, use_bin_type=True)
        headers = {"Content-Type": "application/msgpack"}
        started = time.monotonic()
        response = self._request("POST", "/v1/tts", data=body, headers=headers, stream=True)
        ttfb_s = time.monotonic() - started  # requests returns once the headers are read
        with response:
            self._raise_for_status(response, "POST /v1/tts")
            content_type = response.headers.get("content-type", "")
            if not content_type.startswith("audio/"):
                raise PermanentError(
                    f"POST /v1/tts (streamed): HTTP {response.status_code} but not audio "
                    f"({content_type}): {_snippet(response, 120)}"
                )
            try:
                return assemble_stream(response.iter_content(chunk_size=None), started, ttfb_s)
            except requests.RequestException as exc:
                # The servers send their headers before they generate: a failed generation
                # (or a read timeout) cuts the stream instead of answering 500.
                raise TransientError(f"POST /v1/tts (streamed): answer cut off: {exc}") from exc

    def list_references(self) -> list[str] | None:
        """Registered reference ids, or None when the server has no references API (0.1.0)."""
        response = self._request("GET", "/v1/references/list")
        if response.status_code in (404, 405):
            return None
        self._raise_for_status(response, "GET /v1/references/list")
        try:
            body = msgpack.unpackb(response.content, raw=False)
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
            raise PermanentError(
                f"GET /v1/references/list: not msgpack ({exc}): {_snippet(response, 120)}"
            ) from None
        if not isinstance(body, dict) or not isinstance(body.get("reference_ids"), list):
            raise PermanentError(f"GET /v1/references/list: unexpected answer {body!r:.200}")
        return [str(ref) for ref in body["reference_ids"]]

    def add_reference(self, ref_id: str, audio: bytes, filename: str, text: str) -> int:
        """Upload a reference (multipart field `audio`); return the HTTP status (200 or 409)."""
        response = self._request(
            "POST",
            "/v1/references/add",
            data={"id": ref_id, "text": text},
            files={"audio": (filename, audio, "application/octet-stream")},
        )
        if response.status_code != 409:
            self._raise_for_status(response, f"POST /v1/references/add {ref_id!r}")
        return response.status_code


def with_retries(
    call: Callable[[], T],
    retries: int,
    backoff_s: float,
    on_retry: Callable[[int, Exception], None] = lambda attempt, exc: None,
) -> tuple[T, int]:
    """Run `call`, retrying TransientError with doubling backoff; return (result, attempts)."""
    attempt = 1
    while True:
        try:
            return call(), attempt
        except TransientError as exc:
            if attempt > retries:
                raise
            on_retry(attempt, exc)
            time.sleep(backoff_s * 2 ** (attempt - 1))
            attempt += 1
