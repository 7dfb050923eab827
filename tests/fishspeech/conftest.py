"""The REAL fish-speech servers (CPU, tiny random checkpoints) driven through the workflow: 0.1.0
from PyPI (`fish_speech`) and the git servers at d3df505 and 3dd1f85 (`git_fish_speech`).

The servers' venv, the git sources and the tiny checkpoints are built once and cached under
$FISHFLOW_TEST_CACHE (tests/tooling/fish_speech_env.py), so a session with all cached starts its
first workflow at once. A git server whose source cannot be had skips loudly (fails under CI=true).
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest
import soundfile

from tests.helpers import make_config, skip_loudly
from tests.tooling.fish_speech_env import (
    GIT_S1,
    GIT_S2,
    PYPI_0_1_0,
    ServerVersion,
    SourceUnavailable,
    cached_tiny_checkpoints,
    ensure_install,
)
from tests.workflow_runner import Project

MAX_NEW_TOKENS = 24
# The tiny model never samples its end token: every item is (max_new_tokens - 1) codec frames of
# 2048 samples at 44.1 kHz, whatever the text (noise-like audio from random weights).
FRAMES = (MAX_NEW_TOKENS - 1) * 2048
SECONDS = FRAMES / 44100
# One language: one batch, so one server start per run (each takes 20-60 s on CPU here).
TEXTS = {
    "en": [
        "The first sentence of the test.",
        "A second one follows.",
        "The end!",
        "Der erste Satz des Tests.",
        "Ein zweiter folgt.",
        "Das Ende!",
    ],
}
ITEMS = sum(len(rows) for rows in TEXTS.values()) * 2  # x 2 voices


@dataclass(frozen=True)
class FishSpeech:
    version: ServerVersion
    python: Path
    checkpoint_dir: Path
    checkout: Path | None  # a git server's source (server.fish_speech.checkout)


def install(version: ServerVersion) -> FishSpeech:
    try:
        setup = ensure_install(version)
    except SourceUnavailable as error:
        skip_loudly(f"REAL fish-speech {version.name} SERVER UNAVAILABLE, not run: {error}")
    return FishSpeech(version, setup.python, cached_tiny_checkpoints(version), setup.source)


@pytest.fixture(scope="session")
def fish_speech() -> FishSpeech:
    return install(PYPI_0_1_0)


@pytest.fixture(
    scope="module",
    params=[
        pytest.param(GIT_S1, id="fish-speech-git-s1"),
        pytest.param(GIT_S2, id="fish-speech-git-s2"),
    ],
)
def git_fish_speech(request) -> FishSpeech:
    return install(request.param)


def fish_project(root: Path, fish: FishSpeech, out: str = "out", **fish_speech) -> Project:
    """1 language x 2 voices x 6 rows (6 shards, one batch, one server) through the real
    server."""
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
                "decoder_config_name": fish.version.codec_config_name,
                "checkout": str(fish.checkout) if fish.checkout else None,
                "device": "cpu",
                **fish_speech,
            },
        },
    )
    config["output_dir"] = str(root / out)
    return Project(root=root, config=config)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# How the manifests name the model: fishflow's model id starts with the checkpoint's generation.
MODEL_ID_PREFIXES = {"s1": "fish-speech/", "s2": "fish-speech-s2/"}


def assert_complete_output(project: Project, generation: str = "s1") -> None:
    """Every item spoken at the tiny model's fixed length, in the manifests, none failed."""
    wavs = project.wavs()
    assert len(wavs) == ITEMS
    for path in wavs.values():
        info = soundfile.info(str(path))
        assert (info.samplerate, info.channels, info.subtype) == (44100, 1, "PCM_16")
        assert info.frames == FRAMES
    for lang, rows in TEXTS.items():
        metadata = project.manifest("metadata", lang)
        assert len(metadata) == 2 * len(rows)
        assert all(r["backend"].startswith(MODEL_ID_PREFIXES[generation]) for r in metadata)
        assert all(r["sha256"] == sha(project.out / r["path"]) for r in metadata)
        assert project.manifest("failed", lang) == []
    assert project.summary()["total"] == {"ok": ITEMS, "failed": 0}
