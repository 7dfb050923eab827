"""The REAL fish-speech 0.1.0 server (CPU, tiny random checkpoints) driven through the workflow.

The server's venv is built once and cached under .cache/ (tests/tooling/fish_speech_env.py); the
tiny checkpoints are cached beside it, keyed by what shapes them, so a session with both cached
starts its first workflow at once.
"""

import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import make_config
from tests.tooling.fish_speech_env import (
    CACHE_DIR,
    CODEC_CONFIG_NAME,
    TINY_CHECKPOINTS_SCRIPT,
    build_tiny_checkpoints,
    ensure_env,
    recipe_hash,
)
from tests.workflow_runner import Project

CHECKPOINT_CACHE = CACHE_DIR / "tiny-checkpoints"
MAX_NEW_TOKENS = 24
# The tiny model never samples its end token: every item is (max_new_tokens - 1) codec frames of
# 2048 samples at 44.1 kHz, whatever the text (noise-like audio from random weights).
FRAMES = (MAX_NEW_TOKENS - 1) * 2048
SECONDS = FRAMES / 44100
TEXTS = {
    "en": ["The first sentence of the test.", "A second one follows.", "The end!"],
    "de": ["Der erste Satz des Tests.", "Ein zweiter folgt.", "Das Ende!"],
}


@dataclass(frozen=True)
class FishSpeech:
    python: Path
    checkpoint_dir: Path


def cached_tiny_checkpoints() -> Path:
    """Build the tiny checkpoints once per recipe and generator script (about 10 s saved)."""
    key = hashlib.sha256(recipe_hash().encode() + TINY_CHECKPOINTS_SCRIPT.read_bytes())
    folder = CHECKPOINT_CACHE / key.hexdigest()[:16]
    if folder.is_dir():
        return folder
    CHECKPOINT_CACHE.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(dir=CHECKPOINT_CACHE, prefix=".partial-"))
    build_tiny_checkpoints(partial)
    try:
        partial.rename(folder)  # complete or absent, never half-written
    except OSError:  # a concurrent session renamed its identical copy first
        shutil.rmtree(partial)
    return folder


@pytest.fixture(scope="session")
def fish_speech() -> FishSpeech:
    return FishSpeech(ensure_env(), cached_tiny_checkpoints())


def fish_project(root: Path, fish: FishSpeech, out: str = "out", **fish_speech) -> Project:
    """2 languages x 2 voices x 3 rows (8 shards, one server) through the real server."""
    texts = {
        lang: [{"id": f"{lang}{i}", "text": text} for i, text in enumerate(rows)]
        for lang, rows in TEXTS.items()
    }
    config = make_config(
        root,
        texts,
        shard_size=2,
        generation={"max_new_tokens": MAX_NEW_TOKENS},
        # Random weights: the length is known exactly and does not depend on the text.
        validation={
            "min_duration_s": SECONDS - 0.01,
            "max_duration_s": SECONDS + 0.01,
            "min_seconds_per_char": 0.0,
            "retries": 0,
        },
        server={
            "backend": "fish-speech",
            "startup_timeout_s": 120,
            "retries": 1,
            "backoff_s": 0.1,
            "fish_speech": {
                "python": str(fish.python),
                "checkpoint_dir": str(fish.checkpoint_dir),
                "decoder_config_name": CODEC_CONFIG_NAME,
                "device": "cpu",
                **fish_speech,
            },
        },
    )
    config["output_dir"] = str(root / out)
    return Project(root=root, config=config)
