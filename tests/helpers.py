"""Small builders shared by the tests: real WAV files, configs, JSONL inputs."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import NoReturn

import numpy as np
import pytest
import soundfile

from fishflow.planning.config import validate_config

REPO = Path(__file__).resolve().parents[1]


def write_wav(
    path: Path, seconds: float = 2.0, freq: float = 220.0, rate: int = 22050, amplitude: float = 0.3
) -> Path:
    """A real, non-silent WAV: a tone with a slow tremolo."""
    t = np.arange(int(seconds * rate)) / rate
    signal = amplitude * np.sin(2 * np.pi * freq * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), signal.astype(np.float32), rate, subtype="PCM_16")
    return path


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [row if isinstance(row, str) else json.dumps(row, ensure_ascii=False) for row in rows]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def make_config(tmp: Path, texts: dict[str, list], voices=("alice", "bob"), **overrides) -> dict:
    """A validated config whose inputs and reference WAVs live under `tmp`."""
    config = {
        "output_dir": str(tmp / "out"),
        "inputs": {
            lang: str(write_jsonl(tmp / f"{lang}.jsonl", rows)) for lang, rows in texts.items()
        },
        "voices": {
            voice: {
                "audio": str(write_wav(tmp / "voices" / f"{voice}.wav", freq=180 + 40 * i)),
                "text": f"Reference transcript of {voice}.",
            }
            for i, voice in enumerate(voices)
        },
    }
    for key, value in overrides.items():
        if isinstance(value, dict):
            config.setdefault(key, {}).update(copy.deepcopy(value))
        else:
            config[key] = value
    return validate_config(config)


def skip_loudly(message: str) -> NoReturn:
    """Skip with the message (say what was not run, in capitals); under CI=true fail instead:
    CI must run these tests."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
