"""Reference voices: checked for readability and length, identified by their content hash."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import soundfile

from fishflow.errors import InputError

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg")


@dataclass(frozen=True)
class Voice:
    id: str
    audio: Path
    text: str
    sha256: str
    duration_s: float

    def spec(self) -> dict:
        """As the server launcher registers and verifies it (JSON, passed on its command line)."""
        return {"id": self.id, "audio": str(self.audio), "text": self.text, "sha256": self.sha256}


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_voice(voice_id: str, spec: dict, min_seconds: float, max_seconds: float) -> Voice:
    """Check one configured reference and return it with its hash and duration."""
    path = Path(spec["audio"])
    where = f"voice {voice_id!r}: reference audio"
    if not path.is_file():
        raise InputError(path, None, f"{where} does not exist")
    if path.suffix.lower() not in AUDIO_SUFFIXES:
        raise InputError(path, None, f"{where} must be one of {', '.join(AUDIO_SUFFIXES)}")
    try:
        info = soundfile.info(str(path))
    except (RuntimeError, soundfile.LibsndfileError) as exc:
        raise InputError(path, None, f"{where} is not readable audio: {exc}") from None
    duration = info.frames / info.samplerate if info.samplerate else 0.0
    if duration < min_seconds:
        raise InputError(
            path, None, f"{where} is too short ({duration:.2f} s < {min_seconds} s minimum)"
        )
    if duration > max_seconds:
        raise InputError(
            path, None, f"{where} is too long ({duration:.2f} s > {max_seconds} s maximum)"
        )
    return Voice(
        id=voice_id,
        audio=path,
        text=spec["text"].strip(),
        sha256=sha256_file(path),
        duration_s=round(duration, 3),
    )


def load_voices(voices: dict, validation: dict) -> dict[str, Voice]:
    return {
        voice_id: load_voice(
            voice_id, spec, validation["reference_min_seconds"], validation["reference_max_seconds"]
        )
        for voice_id, spec in sorted(voices.items())
    }
