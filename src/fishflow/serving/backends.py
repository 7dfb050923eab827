"""Server backends: what each can speak, how it identifies its model, how it is launched."""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from fishflow.errors import ConfigError
from fishflow.serving.api_key_shim import KEY_ENV
from fishflow.serving.checkpoints import (
    GENERATION_TITLES,
    S1,
    S2,
    check_files,
    checkpoint_files,
    decoder_path,
    generation,
)

DEMO_LANGUAGES = frozenset({"en", "de", "fr", "ja", "zh"})
# The languages OpenAudio S1 / S1-mini were trained on.
S1_LANGUAGES = frozenset(
    {"en", "zh", "ja", "ko", "fr", "de", "ar", "es", "ru", "nl", "it", "pl", "pt"}
)
# Fish Audio S2 (s2-pro): the `language:` list of the fishaudio/s2-pro model card ("80+
# languages"); the 3dd1f85 source and pyproject name none. A superset of S1_LANGUAGES. "jw" is
# the card's code for Javanese. Not tested: the test checkpoints have random weights.
S2_LANGUAGES = frozenset(
    "zh en ja ko es pt ar ru fr de sv it tr no nl cy eu ca da gl ta hu fi pl et hi la ur th vi "
    "jw bn yo sl cs sw nn he ms uk id kk bg lv my tl sk ne fa af el bo hr ro sn mi yi am be km "
    "is az sd br sq ps mn ht ml sr sa te ka bs pa lt kn si hy mr as gu fo".split()
)
GENERATION_LANGUAGES = {S1: S1_LANGUAGES, S2: S2_LANGUAGES}
# Model ids start with these: an S2 id never equals an S1 one, and S1 ids keep today's form.
MODEL_ID_PREFIXES = {S1: "fish-speech", S2: "fish-speech-s2"}


# Starts every server with the API key from its environment, never on its command line.
KEY_SHIM = Path(__file__).resolve().with_name("api_key_shim.py")


@dataclass(frozen=True)
class Launch:
    """How to start one server process."""

    command: list[str]
    env: dict[str, str]
    # Log lines that mean the server will never become healthy (it may hang instead of exiting).
    fatal_marks: tuple[str, ...] = ()


class DemoBackend:
    name = "demo"

    def languages(self, server: dict) -> frozenset[str]:
        return DEMO_LANGUAGES

    def generation(self, server: dict) -> str | None:
        """The demo speaks no fish-speech model."""
        return None

    def model_id(self, server: dict) -> str:
        engine = server["demo"]["engine"]
        # Takes that vary with the seed are other audio; without, the id keeps its bytes.
        seeded = "/seeded" if server["demo"]["vary_with_seed"] else ""
        return f"demo/{engine}/espeakng-loader-{version('espeakng-loader')}{seeded}"

    def preflight(self, server: dict) -> None:
        """Nothing to check: the demo server ships with fishflow."""

    def launch(self, server: dict, port: int, workdir: Path, api_key: str | None) -> Launch:
        demo = server["demo"]
        args = [
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workdir",
            str(workdir),
            "--request-log",
            str(workdir / "requests.jsonl"),
            "--engine",
            demo["engine"],
            "--latency-s",
            str(demo["latency_s"]),
            "--warmup-s",
            str(demo["warmup_s"]),
        ]
        if demo["fail_pattern"]:
            args += ["--fail-pattern", demo["fail_pattern"]]
        if demo["wrong_voice_pattern"]:
            args += ["--wrong-voice-pattern", demo["wrong_voice_pattern"]]
        if demo["vary_with_seed"]:
            args.append("--vary-with-seed")
        if demo["wrong_text_pattern"]:
            args += ["--wrong-text-pattern", demo["wrong_text_pattern"]]
        if demo["silence_pattern"]:
            args += ["--silence-pattern", demo["silence_pattern"]]
        if demo["fault_seeds"] is not None:
            args += ["--fault-seeds", ",".join(map(str, demo["fault_seeds"]))]
        return Launch(
            keyed_command(sys.executable, "fishflow.serving.demo_server", args), key_env(api_key)
        )


class FishSpeechBackend:
    """The real `tools.api_server` (PyPI 0.1.0 or a git checkout), in its own environment."""

    name = "fish-speech"

    def languages(self, server: dict) -> frozenset[str]:
        return GENERATION_LANGUAGES[generation(server["fish_speech"])]

    def generation(self, server: dict) -> str:
        gen = generation(server["fish_speech"])
        return f"{gen} ({GENERATION_TITLES[gen]})"

    def model_id(self, server: dict) -> str:
        """Generation, checkpoint name, file sizes and numerics; sizes are a cheap stand-in for
        hashes, which the checkpoint rule records in full for provenance."""
        fish = server["fish_speech"]
        files = checkpoint_files(fish).values()
        sizes = hashlib.sha256(repr([(f.name, _size(f)) for f in files]).encode()).hexdigest()
        precision = "fp16" if fish["half"] else "bf16"
        compiled = "compile" if fish["compile"] else "eager"
        name = Path(fish["checkpoint_dir"]).name
        gen = generation(fish)
        model_id = (
            f"{MODEL_ID_PREFIXES[gen]}/{name}/{sizes[:12]}/{fish['device']}/{precision}/{compiled}"
        )
        # The S2-era server's stream truncates float samples where its WAV file floors them
        # (about 2 % of samples one step apart, benchmarks/RESULTS.md): there, streaming makes
        # other audio, so it names it. S1-era streams are the file's samples exactly.
        if gen == S2 and server.get("streaming"):
            model_id += "/streamed"
        return model_id

    def preflight(self, server: dict) -> None:
        """Fail at planning time, before any GPU time, on a missing environment or checkpoint."""
        fish = server["fish_speech"]
        python, checkpoint = Path(fish["python"]), Path(fish["checkpoint_dir"])
        if not (python.is_file() and os.access(python, os.X_OK)):
            raise ConfigError(
                f"config key server.fish_speech.python: {python} is not an executable Python "
                "(create the server environment first: see envs/README.md)"
            )
        if fish["download"] and not checkpoint.is_dir():
            return  # the checkpoint rule downloads it before any server starts
        check_files(fish)

    def launch(self, server: dict, port: int, workdir: Path, api_key: str | None) -> Launch:
        fish = server["fish_speech"]
        args = [
            "--listen",
            f"127.0.0.1:{port}",
            "--llama-checkpoint-path",
            str(Path(fish["checkpoint_dir"]).resolve()),
            "--decoder-checkpoint-path",
            str(decoder_path(fish).resolve()),
            "--decoder-config-name",
            fish["decoder_config_name"],
            "--device",
            fish["device"],
            "--max-text-length",
            str(fish["max_text_length"]),
        ]
        args += ["--compile"] if fish["compile"] else []
        args += ["--half"] if fish["half"] else []
        args += [str(arg) for arg in fish["extra_args"]]
        # A git checkout goes on PYTHONPATH (-P keeps the working directory off sys.path).
        env = {"PYTHONPATH": str(Path(fish["checkout"]).resolve())} if fish["checkout"] else {}
        # absolute(), not resolve(): the server starts in its workdir, and a venv's python is
        # a symlink.
        python = str(Path(fish["python"]).absolute())
        return Launch(
            keyed_command(python, "tools.api_server", args),
            {**env, **key_env(api_key)},
            fatal_marks=("Exception in thread", "Traceback (most recent"),
        )


def keyed_command(python: str, module: str, args: list[str]) -> list[str]:
    """`python -m module args`, through the shim that adds the key from the environment. -P:
    neither the shim's folder (fishflow's own modules) nor the working directory (a tools/ or
    fish_speech/ folder there) may shadow the server's modules."""
    return [python, "-P", str(KEY_SHIM), module, *args]


def key_env(api_key: str | None) -> dict[str, str]:
    return {KEY_ENV: api_key} if api_key else {}


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


BACKENDS = {"demo": DemoBackend(), "fish-speech": FishSpeechBackend()}


def get_backend(server: dict):
    try:
        return BACKENDS[server["backend"]]
    except KeyError:
        raise ConfigError(
            f"config key server.backend: unknown backend {server['backend']!r}"
        ) from None
