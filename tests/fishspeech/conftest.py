"""The REAL fish-speech 0.1.0 server (CPU, tiny random checkpoints) driven through the workflow.

The server's venv and the tiny checkpoints are built once and cached under .cache/
(tests/tooling/fish_speech_env.py), so a session with both cached starts its first workflow at once.
"""

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import make_config
from tests.tooling.fish_speech_env import CODEC_CONFIG_NAME, cached_tiny_checkpoints, ensure_env
from tests.workflow_runner import Project

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
