"""HTTP client for the Fish Speech API (the real server and the demo speak the same surface)."""

from __future__ import annotations

import time
from collections.abc import Callable

import msgpack
import requests

from fishflow.errors import PermanentError, TransientError, Unreachable


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
    call: Callable[[], bytes],
    retries: int,
    backoff_s: float,
    on_retry: Callable[[int, Exception], None] = lambda attempt, exc: None,
) -> tuple[bytes, int]:
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
