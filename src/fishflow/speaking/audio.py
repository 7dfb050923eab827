"""Audio checks of a WAV: before it is kept, and again from disk when a batch resumes."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile

CLIP_LEVEL = 32766 / 32768  # PCM16 full scale, with one step of tolerance
PLAUSIBILITY_SLACK_S = 2.0  # pauses and breaths around short texts


@dataclass
class AudioCheck:
    ok: bool
    reason: str | None = None  # short code, e.g. "silent"
    detail: str | None = None
    duration_s: float = 0.0
    sample_rate: int = 0
    channels: int = 0
    bytes: int = 0


def _fail(reason: str, detail: str, **info) -> AudioCheck:
    return AudioCheck(ok=False, reason=reason, detail=detail, **info)


def _spoken_chars(text: str) -> int:
    return max(1, sum(1 for ch in text if not ch.isspace()))


def check_wav(data: bytes, text: str, limits: dict) -> AudioCheck:
    """Is `data` a sane rendering of `text`? `limits` is the config's `validation` section."""
    size = len(data)
    if size < limits["min_bytes"]:
        return _fail("too_small", f"{size} bytes < {limits['min_bytes']}", bytes=size)
    if size > limits["max_bytes"]:
        return _fail("too_large", f"{size} bytes > {limits['max_bytes']}", bytes=size)
    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        return _fail("unreadable", f"soundfile cannot decode it: {exc}", bytes=size)
    info = {"bytes": size, "sample_rate": int(rate), "channels": int(samples.shape[1])}
    duration = samples.shape[0] / rate if rate else 0.0
    info["duration_s"] = round(duration, 4)
    problem = _duration_problem(duration, text, limits) or _signal_problem(samples, limits)
    if problem:
        return _fail(*problem, **info)
    return AudioCheck(ok=True, **info)


def _duration_problem(duration: float, text: str, limits: dict) -> tuple[str, str] | None:
    if duration < limits["min_duration_s"]:
        return "too_short", f"{duration:.3f} s < {limits['min_duration_s']} s"
    if duration > limits["max_duration_s"]:
        return "too_long", f"{duration:.3f} s > {limits['max_duration_s']} s"
    chars = _spoken_chars(text)
    shortest = limits["min_seconds_per_char"] * chars
    longest = limits["max_seconds_per_char"] * chars + PLAUSIBILITY_SLACK_S
    if duration < shortest:
        return "implausibly_short", f"{duration:.3f} s for {chars} characters (< {shortest:.2f} s)"
    if duration > longest:
        return "implausibly_long", f"{duration:.3f} s for {chars} characters (> {longest:.2f} s)"
    return None


def _signal_problem(samples: np.ndarray, limits: dict) -> tuple[str, str] | None:
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    rms_dbfs = 20 * np.log10(rms) if rms > 0 else -np.inf
    if rms_dbfs < limits["silence_dbfs"]:
        return "silent", f"RMS {rms_dbfs:.1f} dBFS < {limits['silence_dbfs']} dBFS"
    clipped = float(np.mean(np.abs(samples) >= CLIP_LEVEL))
    if clipped > limits["max_clipped_fraction"]:
        return "clipped", f"{clipped:.2%} of samples at full scale"
    return None
