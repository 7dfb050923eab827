"""A local stand-in for the Fish Speech HTTP API server that speaks with eSpeak NG.

It reproduces the observable behaviour of fish-speech's ``tools/api_server.py`` (git checkouts
with the ``/v1/references/*`` endpoints, S1 era): routes, status codes, error bodies, the
reference folder layout and its quirks. Run it with::

    python -m fishflow.serving.demo_server --host 127.0.0.1 --port 8080 --workdir DIR

Deliberate differences from the real server: output depends only on the request and on the
registered references (``seed``, ``top_p``, ``temperature`` and friends change nothing, unless
``--vary-with-seed`` makes each seed a slightly different take), a
prompt is never "too long", and there are no ``/v1/vqgan/*``, ``/v1/references/update`` or
OpenAPI routes. Voices are not cloned: a reference is spoken in the eSpeak voice its WAV comment
names (the demo's own references, see ``demo_voices``), other audio in a voice chosen by its hash.
"""

import argparse
import base64
import email.parser
import email.policy
import hashlib
import io
import ipaddress
import json
import re
import shutil
import signal
import socket
import sys
import threading
import time
import traceback
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgpack
import numpy as np
import soundfile as sf

from fishflow.serving import demo_voices, espeak

SAMPLE_RATE = 44100
SAMPLES_PER_TOKEN = 2048  # one codec frame: 44100 / 2048 ≈ 21.5 tokens per second of audio
MODEL_MAX_TOKENS = 4096  # what max_new_tokens=0 ("up to the model limit") allows
ID_PATTERN = re.compile(r"^[a-zA-Z0-9\-_ ]+$")
AUDIO_EXTENSIONS = {
    *(".mp3", ".wav", ".flac", ".ogg", ".m4a", ".wma", ".aac", ".aiff", ".aif", ".aifc"),
}
# The real server's add endpoint always stores the upload under these names.
REFERENCE_AUDIO_NAME, REFERENCE_TEXT_NAME = "sample.wav", "sample.lab"

# Voice slots of references that name no demo voice: an eSpeak variant at one of a few pitch
# levels, all audibly different. Only variants that speak byte-identically in every process: f3,
# f5, whisperf and caleb add noise from a random state the library never resets.
VARIANTS = (
    "m1",
    "m3",
    "m7",
    "m8",
    "f1",
    "croak",
    "klatt",
    "klatt3",
    "Annie",
    "aunty",
    "grandma",
    "robert",
)
PITCHES = (25, 50, 75)
N_SLOTS = len(VARIANTS) * len(PITCHES)

# What a wrong-text fault says instead of the request's text, and a silence fault's length.
WRONG_TEXT = "Seven purple elephants were dancing quietly behind the old library."
FAULT_SILENCE_S = 3.0

CONTENT_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg"}
FAILED_TTS = "Failed to generate speech"
BAD_ID = (
    "Reference ID contains invalid characters or is too long. "
    "Only alphanumeric, hyphens, underscores, and spaces are allowed."
)


# ---------------------------------------------------------------------------------------------
# Errors and responses
# ---------------------------------------------------------------------------------------------


class HTTPError(Exception):
    """An error answered as the real server's ``{"statusCode", "message", "error"}`` body."""

    def __init__(self, status: int, message: str | None, headers: dict | None = None):
        super().__init__(status, message)
        self.status, self.message, self.headers = status, message, headers or {}


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict = field(default_factory=dict)
    # A streamed body, made after the headers are sent (the real server generates only then) and
    # sent chunked; where making it fails, the connection is cut, as when the real server's
    # generator raises after its 200 headers.
    stream: Callable[[], bytes] | None = None


def json_response(obj: Any, status: int = 200) -> Response:
    # compact and non-ASCII kept, as the real server's JSONResponse writes it
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=_jsonable)
    return Response(status, text.encode())


def error_response(exc: HTTPError) -> Response:
    phrase = HTTPStatus(exc.status).phrase
    response = json_response({"statusCode": exc.status, "message": exc.message, "error": phrase})
    response.status = exc.status
    response.headers.update(exc.headers)
    return response


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, Upload):
        return f"UploadFile(filename={value.filename!r})"
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# ---------------------------------------------------------------------------------------------
# Request validation: the subset of pydantic v2 (lax mode) that the real schemas exercise
# ---------------------------------------------------------------------------------------------


class Invalid(Exception):
    """Validation errors, each ``(relative loc, type, msg, input, ctx)``; answered as 422."""

    def __init__(self, errors: list[tuple]):
        super().__init__(errors)
        self.errors = errors

    @classmethod
    def of(cls, type_: str, msg: str, value: Any, ctx: dict | None = None) -> "Invalid":
        return cls([((), type_, msg, value, ctx)])

    def response(self) -> Response:
        body = []
        for loc, type_, msg, value, ctx in self.errors:
            error = {"type": type_, "loc": list(loc), "msg": msg, "input": value}
            if ctx:
                error["ctx"] = ctx
            error["url"] = f"https://errors.pydantic.dev/2.9/v/{type_}"
            body.append(error)
        # pydantic's ValidationError.json(indent=2), sent as is
        text = json.dumps(body, indent=2, ensure_ascii=False, default=_jsonable)
        return Response(422, text.encode())


@dataclass(frozen=True)
class Upload:
    filename: str
    data: bytes


REQUIRED = object()


def validate(data: Any, fields: list[tuple], model: str) -> dict:
    """Check ``data`` against ``fields`` = [(name, converter, default or REQUIRED)]."""
    if not isinstance(data, dict):
        msg = f"Input should be a valid dictionary or instance of {model}"
        raise Invalid.of("model_type", msg, data, {"class_name": model})
    values, errors = {}, []
    for name, convert, default in fields:
        if name in data:
            try:
                values[name] = convert(data[name])
            except Invalid as exc:
                errors += [((name, *loc), *rest) for loc, *rest in exc.errors]
        elif default is REQUIRED:
            errors.append(((name,), "missing", "Field required", data, None))
        else:
            values[name] = default
    if errors:
        raise Invalid(errors)
    return values


def as_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            msg = "Input should be a valid string, unable to parse raw data as a unicode string"
            raise Invalid.of("string_unicode", msg, value) from None
    raise Invalid.of("string_type", "Input should be a valid string", value)


def as_int(value: Any) -> int:
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        msg = "Input should be a valid integer, got a number with a fractional part"
        raise Invalid.of("int_from_float", msg, value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            msg = "Input should be a valid integer, unable to parse string as an integer"
            raise Invalid.of("int_parsing", msg, value) from None
    raise Invalid.of("int_type", "Input should be a valid integer", value)


_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}


def as_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    if isinstance(value, int | float | str):
        msg = "Input should be a valid boolean, unable to interpret input"
        raise Invalid.of("bool_parsing", msg, value)
    raise Invalid.of("bool_type", "Input should be a valid boolean", value)


def as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise Invalid.of("bytes_type", "Input should be a valid bytes", value)


def as_upload(value: Any) -> Upload:
    if isinstance(value, Upload):
        return value
    msg = "Input should be an instance of UploadFile"
    raise Invalid.of("is_instance_of", msg, value, {"class": "UploadFile"})


def optional(convert):
    return lambda value: None if value is None else convert(value)


def one_of(*choices: str):
    expected = " or ".join([", ".join(f"'{c}'" for c in choices[:-1]), f"'{choices[-1]}'"])

    def convert(value: Any) -> str:
        if value in choices:
            return value
        msg = f"Input should be {expected}"
        raise Invalid.of("literal_error", msg, value, {"expected": expected})

    return convert


def float_between(low: float, high: float):
    """A strict float (ints allowed, strings and bools not) within [low, high]."""

    def convert(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Invalid.of("float_type", "Input should be a valid number", value)
        if value < low:
            msg = f"Input should be greater than or equal to {low:g}"
            raise Invalid.of("greater_than_equal", msg, value, {"ge": low})
        if value > high:
            msg = f"Input should be less than or equal to {high:g}"
            raise Invalid.of("less_than_equal", msg, value, {"le": high})
        return float(value)

    return convert


def reference_audio(value: Any) -> bytes:
    # Like ServeReferenceAudio: only strings longer than 255 chars are taken as base64, and
    # undecodable base64 stays text (it fails later, as audio).
    if isinstance(value, str) and len(value) > 255:
        try:
            return base64.b64decode(value)
        except ValueError:
            pass
    return as_bytes(value)


REFERENCE_FIELDS = [("audio", reference_audio, REQUIRED), ("text", as_str, REQUIRED)]


def as_references(value: Any) -> list[dict]:
    if not isinstance(value, list):
        raise Invalid.of("list_type", "Input should be a valid list", value)
    items, errors = [], []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            # The real schema's "before" validator calls item.get(): an AttributeError -> 500.
            raise HTTPError(500, f"'{type(item).__name__}' object has no attribute 'get'")
        try:
            items.append(validate(item, REFERENCE_FIELDS, "ServeReferenceAudio"))
        except Invalid as exc:
            errors += [((i, *loc), *rest) for loc, *rest in exc.errors]
    if errors:
        raise Invalid(errors)
    return items


# ServeTTSRequest of the S1-era server. chunk_length's bounds are not enforced there either.
TTS_FIELDS = [
    ("text", as_str, REQUIRED),
    ("chunk_length", as_int, 200),
    ("format", one_of("wav", "pcm", "mp3"), "wav"),
    ("references", as_references, []),
    ("reference_id", optional(as_str), None),
    ("seed", optional(as_int), None),
    ("use_memory_cache", one_of("on", "off"), "off"),
    ("normalize", as_bool, True),
    ("streaming", as_bool, False),
    ("max_new_tokens", as_int, 1024),
    ("top_p", float_between(0.1, 1.0), 0.8),
    ("repetition_penalty", float_between(0.9, 2.0), 1.1),
    ("temperature", float_between(0.1, 1.0), 0.8),
]
ADD_FIELDS = [("id", as_str, REQUIRED), ("audio", as_upload, REQUIRED), ("text", as_str, REQUIRED)]
DELETE_FIELDS = [("reference_id", as_str, REQUIRED)]


# ---------------------------------------------------------------------------------------------
# Request bodies
# ---------------------------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Any  # email.message.Message, as parsed by http.server
    body: bytes
    log: dict = field(default_factory=dict)  # reference_id / seed / text for the request log


def parse_body(req: Request) -> Any:
    """Decode a msgpack, JSON or multipart body exactly as the real server's request class."""
    ctype = req.headers.get_content_type() if "Content-Type" in req.headers else ""
    if ctype == "application/msgpack":
        try:
            return msgpack.unpackb(req.body)
        except Exception as exc:  # the real server lets decoder errors become 500s
            raise HTTPError(500, str(exc) or type(exc).__name__) from None
    if ctype == "application/json":
        try:
            return json.loads(req.body.decode(req.headers.get_param("charset", "utf8")))
        except json.JSONDecodeError as exc:
            raise HTTPError(400, str(exc)) from None
    if ctype == "multipart/form-data":
        return parse_multipart(req)
    accept = "application/msgpack, application/json, multipart/form-data"
    raise HTTPError(415, None, {"Accept": accept})


def parse_multipart(req: Request) -> dict:
    if req.headers.get_param("boundary") is None:
        raise HTTPError(400, "Missing boundary in header content-type")
    head = f"Content-Type: {req.headers['Content-Type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + req.body)
    if not message.is_multipart():
        raise HTTPError(400, "Malformed multipart")
    form = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        form[name] = Upload(filename, payload) if filename is not None else payload.decode()
    return form


def wants_json(req: Request) -> bool:
    """The real server answers the references routes in msgpack unless JSON is asked for."""
    fmt = req.query.get("format", [""])[0].strip().lower()
    if fmt in {"json", "application/json", "msgpack", "application/msgpack"}:
        return fmt in {"json", "application/json"}
    accept = req.headers.get("Accept", "").strip().lower()
    return "application/json" in accept and "application/msgpack" not in accept


def format_response(req: Request, obj: dict, status: int = 200) -> Response:
    if wants_json(req):
        return json_response(obj, status)
    return Response(status, msgpack.packb(obj), "application/msgpack")


def reference_answer(req: Request, ref_id: str, status: int, message: str) -> Response:
    """The body of every add/delete answer, errors included."""
    body = {"success": status == 200, "message": message, "reference_id": ref_id}
    return format_response(req, body, status)


# ---------------------------------------------------------------------------------------------
# Text, voices and audio
# ---------------------------------------------------------------------------------------------


def detect_language(text: str) -> str:
    """Guess en/de/fr/ja/zh from the script: kana means Japanese, other Han means Chinese."""
    if re.search(r"[\u3040-\u30ff\uff66-\uff9f]", text):
        return "ja"
    if re.search(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]", text):
        return "zh"
    if re.search(r"[äöüÄÖÜß]", text):
        return "de"
    if re.search(r"[àâæçéèêëîïôœùûÿÀÂÆÇÉÈÊËÎÏÔŒÙÛŸ]", text):
        return "fr"
    return "en"


def voice_in_slot(digest: bytes, slot: int) -> espeak.Voice:
    """The voice of a reference whose audio hashes to ``digest``, placed in ``slot``."""
    variant = VARIANTS[slot % len(VARIANTS)]
    pitch = PITCHES[slot // len(VARIANTS)]
    return espeak.Voice(variant, pitch, rate=160 + digest[4] % 41, range=30 + digest[5] % 51)


def home_slot(digest: bytes) -> int:
    return int.from_bytes(digest[:4], "big") % N_SLOTS


def assign_slots(digests: list[bytes]) -> dict[bytes, int]:
    """Give each digest its home slot, or the next free one when an earlier digest holds it."""
    slots: dict[bytes, int] = {}
    taken: set[int] = set()
    for digest in digests:
        if digest in slots:
            continue  # identical audio is the same voice
        slot = home_slot(digest)
        while slot in taken and len(taken) < N_SLOTS:
            slot = (slot + 1) % N_SLOTS
        slots[digest] = slot
        taken.add(slot)
    return slots


def audio_files(folder: Path) -> list[Path]:
    """Reference audio as the real server finds it: recursively, extensions case-sensitive."""
    return sorted(p for p in folder.rglob("*") if p.suffix in AUDIO_EXTENSIONS and p.is_file())


def combine(digests: list[bytes]) -> bytes:
    return hashlib.sha256(b"".join(digests)).digest()


@dataclass(frozen=True)
class AudioInfo:
    """What the server takes from one reference audio file."""

    sha256: bytes
    decodable: bool
    named: espeak.Voice | None  # the demo voice its WAV comment names (demo_voices)


def audio_info(audio: bytes) -> AudioInfo:
    digest = hashlib.sha256(audio).digest()
    return AudioInfo(digest, decodable(audio), demo_voices.named_voice(audio))


@dataclass(frozen=True)
class Reference:
    """A reference's audio files as one voice: the hash of them all, and the demo voice they
    name when every file names the same one (else the voice comes from the hash)."""

    digest: bytes
    named: espeak.Voice | None


def reference_of(infos: list[AudioInfo]) -> Reference | None:
    if not infos:
        return None
    named = {info.named for info in infos}
    return Reference(
        combine([info.sha256 for info in infos]), named.pop() if len(named) == 1 else None
    )


def decodable(audio: bytes) -> bool:
    try:
        sf.info(io.BytesIO(audio))
    except Exception:
        return False
    return True


def upsample(samples: np.ndarray) -> np.ndarray:
    """eSpeak's 22050 Hz to the codec's 44100 Hz by linear interpolation (deterministic)."""
    if len(samples) == 0:
        return samples
    positions = np.arange(2 * len(samples)) / 2
    return np.round(np.interp(positions, np.arange(len(samples)), samples)).astype(np.int16)


def speak_espeak(text: str, language: str, voice: espeak.Voice) -> np.ndarray:
    return upsample(espeak.synthesize(text, language, voice))


def speak_tone(text: str, language: str, voice: espeak.Voice) -> np.ndarray:
    """Zero-cost stand-in: a voice-dependent buzz, 60 ms per character, pulsing like syllables."""
    variant_shift = zlib.crc32((voice.variant or "").encode()) % 50
    f0 = 90 + 3 * voice.pitch + variant_shift + 10 * list(espeak.LANGUAGES).index(language)
    seconds = max(0.2, 0.06 * len(text) * 175 / voice.rate)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    wave = np.sin(2 * np.pi * f0 * t) + 0.3 * np.sin(4 * np.pi * f0 * t)
    envelope = 0.55 + 0.4 * np.sin(2 * np.pi * 4 * t)
    return np.round(wave * envelope * 8000).astype(np.int16)


ENGINES = {"espeak": speak_espeak, "tone": speak_tone}


def encode_audio(samples: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, SAMPLE_RATE, format=fmt)  # "pcm" raises, as in the real server
    return buffer.getvalue()


def model_failure(params: dict) -> str | None:
    """Errors the real model raises (HTTP 500 with the exception text) for accepted values."""
    if params["max_new_tokens"] < 0 or params["max_new_tokens"] == 1:
        # decode_n_tokens loops over range(max_new_tokens - 1) and then reads its loop variable
        return "cannot access local variable 'i' where it is not associated with a value"
    if params["repetition_penalty"] >= 2:
        return "repetition_penalty must be in (0, 2)"  # an assert stricter than the schema
    return None


def max_samples(max_new_tokens: int) -> int:
    tokens = max_new_tokens or MODEL_MAX_TOKENS
    return (tokens - 1) * SAMPLES_PER_TOKEN  # the last token generated is the end token


# ---------------------------------------------------------------------------------------------
# The application
# ---------------------------------------------------------------------------------------------


@dataclass
class Config:
    workdir: Path
    api_key: str | None = None
    engine: str = "espeak"
    fail_pattern: re.Pattern | None = None
    latency_s: float = 0.0
    wrong_voice_pattern: re.Pattern | None = None
    vary_with_seed: bool = False
    # Faults in the audio, for the quality judge's tests: another text spoken, or a long
    # silence before the speech; these two and the wrong voice are restricted to these request
    # seeds when set.
    wrong_text_pattern: re.Pattern | None = None
    silence_pattern: re.Pattern | None = None
    fault_seeds: frozenset[int] | None = None


def take(voice: espeak.Voice, seed: int) -> espeak.Voice:
    """The voice of one seed's take: its intonation range and pace move a little, as a real
    model's sampling varies a take (so that a regenerated item is new audio)."""
    digest = hashlib.sha256(f"take {seed}".encode()).digest()
    return replace(voice, range=digest[0] % 101, rate=voice.rate - 5 + digest[1] % 11)


class DemoApp:
    """Routes requests. Handlers run one at a time, as in the real server, whose inference
    blocks its event loop: even /v1/health waits while a TTS request runs."""

    def __init__(self, config: Config):
        self.config = config
        self.references = config.workdir / "references"
        self.lock = threading.Lock()
        self.file_infos: dict[Path, tuple[tuple[int, int], AudioInfo]] = {}
        self.id_cache: dict[str, Reference | None] = {}  # use_memory_cache="on" reuses these
        self.routes = {
            "/v1/health": {"GET": self.health, "POST": self.health},
            "/v1/tts": {"POST": self.tts},
            "/v1/references/add": {"POST": self.add_reference},
            "/v1/references/list": {"GET": self.list_references},
            "/v1/references/delete": {"DELETE": self.delete_reference},
        }

    def handle(self, req: Request) -> Response:
        try:
            methods = self.routes.get(req.path)
            if methods is None:
                raise HTTPError(404, None)
            # The real server checks the method of its one class-based view (health) before the
            # API key, and that of every other route after it. A 405 has an empty body.
            key_first = req.path != "/v1/health"
            if key_first:
                self.check_token(req)
            if req.method not in methods:
                return Response(405, headers={"Allow": ", ".join(methods)})
            if not key_first:
                self.check_token(req)
            with self.lock:
                return methods[req.method](req)
        except HTTPError as exc:
            return error_response(exc)
        except Invalid as exc:
            return exc.response()
        except Exception as exc:  # like the real catch-all handler: 500 with the text
            traceback.print_exc()
            return error_response(HTTPError(500, str(exc)))

    def check_token(self, req: Request) -> None:
        if self.config.api_key is None:
            return
        scheme, _, token = req.headers.get("Authorization", "").strip().partition(" ")
        if scheme != "Bearer" or not token:
            raise HTTPError(401, None, {"WWW-Authenticate": "Bearer"})
        if token != self.config.api_key:
            raise HTTPError(401, "Invalid token")

    def health(self, req: Request) -> Response:
        return json_response({"status": "ok"})

    # -- TTS ------------------------------------------------------------------------------------

    def tts(self, req: Request) -> Response:
        data = parse_body(req)
        if isinstance(data, dict):
            req.log.update({k: data.get(k) for k in ("reference_id", "seed", "text")})
        params = validate(data, TTS_FIELDS, "ServeTTSRequest")
        if params["streaming"] and params["format"] != "wav":
            raise HTTPError(400, "Streaming only supports WAV format")
        headers = {"Content-Disposition": f"attachment; filename=audio.{params['format']}"}
        language = data.get("language")
        if params["streaming"]:
            # The real server drops the WAV header it builds: the body is the samples alone, in
            # one chunk (it streams one segment per request for text without speaker tags).
            def pcm() -> bytes:
                return self.speak(params, language).tobytes()

            return Response(200, content_type="audio/wav", headers=headers, stream=pcm)
        samples = self.speak(params, language)
        try:
            body = encode_audio(samples, params["format"])
        except Exception:
            raise HTTPError(500, FAILED_TTS) from None
        content_type = CONTENT_TYPES.get(params["format"], "application/octet-stream")
        return Response(200, body, content_type, headers)

    def speak(self, params: dict, language_hint: Any) -> np.ndarray:
        time.sleep(self.config.latency_s)  # the model's time: after a stream's headers
        return self.synthesize(params, language_hint)

    def stream_body(self, response: Response) -> bytes | None:
        """A streamed response's body, made one request at a time like every handler; None
        where making it failed."""
        with self.lock:
            try:
                return response.stream()
            except Exception as exc:
                if not isinstance(exc, HTTPError):
                    traceback.print_exc()
                return None

    def synthesize(self, params: dict, language_hint: Any) -> np.ndarray:
        pattern = self.config.fail_pattern
        if pattern is not None and pattern.search(params["text"]):
            raise HTTPError(500, FAILED_TTS)
        try:
            voice = self.request_voice(params)
        except (ValueError, OSError, RuntimeError):
            raise HTTPError(500, FAILED_TTS) from None
        if self.faulty(self.config.wrong_voice_pattern, params):
            voice = demo_voices.wrong_voice(voice)  # a model that ignores its reference
        failure = model_failure(params)
        if failure:
            raise HTTPError(500, failure)
        # fishflow's optional hint; the real server ignores unknown fields, so junk is ignored too
        known = isinstance(language_hint, str) and language_hint in espeak.LANGUAGES
        language = language_hint if known else detect_language(params["text"])
        if self.config.vary_with_seed and params["seed"] is not None:
            voice = take(voice, params["seed"])
        speak = ENGINES[self.config.engine]
        wrong_text = self.faulty(self.config.wrong_text_pattern, params)
        samples = speak(WRONG_TEXT if wrong_text else params["text"], language, voice)
        if self.faulty(self.config.silence_pattern, params):
            silence = np.zeros(int(FAULT_SILENCE_S * SAMPLE_RATE), dtype=samples.dtype)
            samples = np.concatenate([silence, samples])
        samples = samples[: max_samples(params["max_new_tokens"])]
        if len(samples) == 0:
            raise HTTPError(500, "No audio generated, please check the input text.")
        return samples

    def faulty(self, pattern: re.Pattern | None, params: dict) -> bool:
        """A fault applies to texts matching its pattern, and only to `fault_seeds` if set."""
        if pattern is None or not pattern.search(params["text"]):
            return False
        return self.config.fault_seeds is None or params["seed"] in self.config.fault_seeds

    def request_voice(self, params: dict) -> espeak.Voice:
        """The voice of the request's reference_id (which wins) or inline references."""
        ref_id = params["reference_id"]
        if ref_id is not None:
            reference = self.registered_reference(ref_id, params["use_memory_cache"] == "on")
        elif params["references"]:
            infos = [audio_info(r["audio"]) for r in params["references"]]
            if not all(info.decodable for info in infos):
                raise ValueError("reference audio cannot be decoded")
            reference = reference_of(infos)
        else:
            reference = None
        if reference is None:
            return espeak.Voice()
        if reference.named is not None:
            return reference.named
        registered = [self.folder_reference(self.references / i) for i in self.listed_ids()]
        digests = [r.digest for r in registered if r is not None]
        return voice_in_slot(
            reference.digest, assign_slots([*digests, reference.digest])[reference.digest]
        )

    def registered_reference(self, ref_id: str, use_cache: bool) -> Reference | None:
        if not ID_PATTERN.match(ref_id) or len(ref_id) > 255:
            raise ValueError(BAD_ID)
        folder = self.references / ref_id
        # QUIRK of the real server: an unknown id leaves an empty folder behind.
        folder.mkdir(parents=True, exist_ok=True)
        if not use_cache or ref_id not in self.id_cache:
            self.id_cache[ref_id] = self.folder_reference(folder, strict=True)
        return self.id_cache[ref_id]

    def folder_reference(self, folder: Path, strict: bool = False) -> Reference | None:
        """A folder's reference audio; ``strict``: all of it must decode, as the real server
        encodes every file when the reference is used (and only then)."""
        infos = [self.file_info(p) for p in audio_files(folder)]
        if strict and not all(info.decodable for info in infos):
            raise ValueError(f"reference audio in {folder} cannot be decoded")
        return reference_of(infos)

    def file_info(self, path: Path) -> AudioInfo:
        """An audio file's `AudioInfo`, cached while its mtime and size stay put."""
        stat = path.stat()
        key = (stat.st_mtime_ns, stat.st_size)
        if path not in self.file_infos or self.file_infos[path][0] != key:
            self.file_infos[path] = (key, audio_info(path.read_bytes()))
        return self.file_infos[path][1]

    # -- references -----------------------------------------------------------------------------

    def listed_ids(self) -> list[str]:
        """Folders holding an audio file with a same-stem .lab transcript, as the real list."""
        if not self.references.is_dir():
            return []
        return sorted(
            folder.name
            for folder in self.references.iterdir()
            if folder.is_dir() and any(p.with_suffix(".lab").exists() for p in audio_files(folder))
        )

    def list_references(self, req: Request) -> Response:
        ids = self.listed_ids()
        message = f"Found {len(ids)} reference voices"
        return format_response(req, {"success": True, "reference_ids": ids, "message": message})

    def add_reference(self, req: Request) -> Response:
        fields = validate(parse_body(req), ADD_FIELDS, "temporary_model")
        ref_id, audio, text = fields["id"], fields["audio"].data, fields["text"]
        req.log.update(reference_id=ref_id, text=text)
        answer = partial(reference_answer, req, ref_id)

        if not ref_id.strip():
            return answer(400, "Reference ID cannot be empty")
        if not text.strip():
            return answer(400, "Reference text cannot be empty")
        if not audio:
            return answer(400, "Audio file is empty or could not be read")
        if not ID_PATTERN.match(ref_id) or len(ref_id) > 255:
            return answer(400, BAD_ID)
        folder = self.references / ref_id
        if folder.exists():
            return answer(409, f"Reference ID '{ref_id}' already exists")
        folder.mkdir(parents=True)
        (folder / REFERENCE_AUDIO_NAME).write_bytes(audio)
        (folder / REFERENCE_TEXT_NAME).write_text(text, encoding="utf-8")
        self.id_cache.pop(ref_id, None)
        return answer(200, f"Reference voice '{ref_id}' added successfully")

    def delete_reference(self, req: Request) -> Response:
        ref_id = validate(parse_body(req), DELETE_FIELDS, "temporary_model")["reference_id"]
        req.log.update(reference_id=ref_id)
        answer = partial(reference_answer, req, ref_id)

        if not ref_id.strip():
            return answer(400, "Reference ID cannot be empty")
        if not ID_PATTERN.match(ref_id) or len(ref_id) > 255:
            return answer(400, "Reference ID contains invalid characters or is too long")
        folder = self.references / ref_id
        if not folder.exists():
            return answer(404, f"Reference ID '{ref_id}' not found")
        shutil.rmtree(folder)
        self.id_cache.pop(ref_id, None)
        return answer(200, f"Reference voice '{ref_id}' deleted successfully")


# ---------------------------------------------------------------------------------------------
# HTTP plumbing
# ---------------------------------------------------------------------------------------------


class RequestLog:
    """One flushed JSON line per request, so tests can count what reached the server."""

    def __init__(self, path: Path):
        self.file = path.open("a", encoding="utf-8")
        self.lock = threading.Lock()

    def write(self, entry: dict) -> None:
        line = json.dumps(entry, ensure_ascii=False, default=_jsonable)
        with self.lock:
            self.file.write(line + "\n")
            self.file.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like uvicorn
    server: "DemoServer"

    def do_GET(self) -> None:
        self.dispatch()

    do_POST = do_DELETE = do_PUT = do_PATCH = do_GET

    def dispatch(self) -> None:
        start = time.monotonic()
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        req = Request(self.command, url.path, parse_qs(url.query), self.headers, body)
        response = self.server.app.handle(req)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.stream is not None:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()  # sent now: a streamed body is made after its headers went out
        streamed = None
        if response.stream is not None:
            streamed = self.server.app.stream_body(response)
            response.body = streamed or b""
        # Logged before the answer's last bytes go out: a client that has it finds its line.
        if self.server.request_log is not None:
            self.server.request_log.write(self.log_entry(req, response, time.monotonic() - start))
        if response.stream is None:
            self.wfile.write(response.body)
        elif streamed is None:
            self.close_connection = True  # before the last chunk: the client sees a cut stream
        else:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(streamed), streamed) if streamed else b"")
            self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    @staticmethod
    def log_entry(req: Request, response: Response, seconds: float) -> dict:
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return {
            "time": now,
            "method": req.method,
            "path": req.path,
            "status": response.status,
            "reference_id": req.log.get("reference_id"),
            "seed": req.log.get("seed"),
            "text": req.log.get("text"),
            "bytes_out": len(response.body),
            "seconds": round(seconds, 6),
        }


class DemoServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple, app: DemoApp, request_log: RequestLog | None):
        self.app, self.request_log = app, request_log
        super().__init__(address, Handler)


class DemoServer6(DemoServer):
    address_family = socket.AF_INET6


class Shutdown(Exception):
    """Raised by the SIGTERM/SIGINT handler to leave the serving loop."""


def loopback(host: str) -> str:
    """The host as an IP literal, refusing anything that is not a loopback address."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"refusing to listen on non-loopback address {host!r}")


def regex(pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"bad regular expression {pattern!r}: {exc}") from None


def seed_list(text: str) -> frozenset[int]:
    try:
        return frozenset(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of seeds: {text!r}") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    description = __doc__.splitlines()[0]
    parser = argparse.ArgumentParser(
        prog="python -m fishflow.serving.demo_server", description=description
    )
    parser.add_argument("--host", type=loopback, default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--workdir", type=Path, required=True, help="holds references/<id>/")
    parser.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on every route")
    parser.add_argument("--request-log", type=Path, help="append one JSON line per request")
    parser.add_argument("--engine", choices=sorted(ENGINES), default="espeak")
    parser.add_argument("--fail-pattern", type=regex, help="TTS texts matching it get 500")
    parser.add_argument(
        "--wrong-voice-pattern", type=regex, help="TTS texts matching it get another demo voice"
    )
    parser.add_argument(
        "--wrong-text-pattern",
        type=regex,
        help="TTS texts matching it are answered with speech of another text",
    )
    parser.add_argument(
        "--silence-pattern",
        type=regex,
        help=f"TTS texts matching it get {FAULT_SILENCE_S} s of silence before the speech",
    )
    parser.add_argument(
        "--fault-seeds",
        type=seed_list,
        help="comma-separated seeds: the three faults above apply only to requests with them",
    )
    parser.add_argument("--latency-s", type=float, default=0.0, help="extra sleep per TTS request")
    parser.add_argument("--warmup-s", type=float, default=0.0, help="sleep before listening")
    parser.add_argument(
        "--vary-with-seed", action="store_true", help="each seed speaks a slightly different take"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def stop(signum, frame):
        raise Shutdown

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    config = Config(
        args.workdir,
        args.api_key,
        args.engine,
        args.fail_pattern,
        args.latency_s,
        args.wrong_voice_pattern,
        args.vary_with_seed,
        args.wrong_text_pattern,
        args.silence_pattern,
        args.fault_seeds,
    )
    request_log = RequestLog(args.request_log) if args.request_log else None
    server_class = DemoServer6 if ":" in args.host else DemoServer
    server = None
    try:
        if args.warmup_s:
            # Said once the signal handlers are in place: from here SIGTERM stops it cleanly.
            print(f"demo server warming up for {args.warmup_s} s", file=sys.stderr, flush=True)
            time.sleep(args.warmup_s)
        server = server_class((args.host, args.port), DemoApp(config), request_log)
        host, port = server.server_address[:2]
        host = f"[{host}]" if ":" in host else host
        print(f"demo server listening on http://{host}:{port}", file=sys.stderr, flush=True)
        server.serve_forever()
    except Shutdown:
        pass
    finally:
        if server is not None:
            server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
