"""Server backends: what each can speak, how it identifies its model, how it is launched."""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from .errors import ConfigError

DEMO_LANGUAGES = frozenset({"en", "de", "fr", "ja", "zh"})
# The languages OpenAudio S1 / S1-mini were trained on.
S1_LANGUAGES = frozenset(
    {"en", "zh", "ja", "ko", "fr", "de", "ar", "es", "ru", "nl", "it", "pl", "pt"}
)
S1_CHECKPOINT_FILES = ("config.json", "model.pth", "tokenizer.tiktoken", "special_tokens.json")


@dataclass(frozen=True)
class Launch:
    """How to start one server process."""

    command: list[str]
    env: dict[str, str]
    # Log lines that mean the server will never become healthy (it may hang instead of exiting).
    fatal_marks: tuple[str, ...] = ()


class DemoBackend:
    name = "demo"
    languages = DEMO_LANGUAGES

    def model_id(self, server: dict) -> str:
        engine = server["demo"]["engine"]
        return f"demo/{engine}/espeakng-loader-{version('espeakng-loader')}"

    def preflight(self, server: dict) -> None:
        """Nothing to check: the demo server ships with fishflow."""

    def launch(self, server: dict, port: int, workdir: Path, api_key: str | None) -> Launch:
        demo = server["demo"]
        command = [
            sys.executable,
            "-m",
            "fishflow.demo_server",
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
            command += ["--fail-pattern", demo["fail_pattern"]]
        if api_key:
            command += ["--api-key", api_key]
        return Launch(command, env={})


class FishSpeechBackend:
    """The real `tools.api_server` (PyPI 0.1.0 or a git checkout), in its own environment."""

    name = "fish-speech"
    languages = S1_LANGUAGES

    @staticmethod
    def _paths(server: dict) -> tuple[Path, Path, Path]:
        fish = server["fish_speech"]
        checkpoint = Path(fish["checkpoint_dir"])
        decoder = Path(fish["decoder_checkpoint"] or checkpoint / "codec.pth")
        return Path(fish["python"]), checkpoint, decoder

    def model_id(self, server: dict) -> str:
        """Checkpoint name, file sizes and numerics; sizes are a cheap stand-in for hashes,
        which the checkpoint rule records in full for provenance."""
        fish = server["fish_speech"]
        _, checkpoint, decoder = self._paths(server)
        files = [checkpoint / name for name in S1_CHECKPOINT_FILES] + [decoder]
        sizes = hashlib.sha256(repr([(f.name, _size(f)) for f in files]).encode()).hexdigest()
        precision = "fp16" if fish["half"] else "bf16"
        compiled = "compile" if fish["compile"] else "eager"
        return f"fish-speech/{checkpoint.name}/{sizes[:12]}/{fish['device']}/{precision}/{compiled}"

    def preflight(self, server: dict) -> None:
        """Fail at planning time, before any GPU time, on a missing environment or checkpoint."""
        python, checkpoint, decoder = self._paths(server)
        if not (python.is_file() and os.access(python, os.X_OK)):
            raise ConfigError(
                f"config key server.fish_speech.python: {python} is not an executable Python "
                "(create the server environment first: see envs/README.md)"
            )
        if not checkpoint.is_dir():
            raise ConfigError(
                f"config key server.fish_speech.checkpoint_dir: {checkpoint} is not a directory"
            )
        missing = [
            str(checkpoint / n) for n in S1_CHECKPOINT_FILES if not (checkpoint / n).is_file()
        ]
        if not decoder.is_file():
            missing.append(str(decoder))
        if missing:
            raise ConfigError(f"checkpoint files missing: {', '.join(missing)}")

    def launch(self, server: dict, port: int, workdir: Path, api_key: str | None) -> Launch:
        fish = server["fish_speech"]
        python, checkpoint, decoder = self._paths(server)
        command = [
            # -P: a tools/ or fish_speech/ folder in the working directory must not shadow the
            # installed server (a git checkout is put on PYTHONPATH instead).
            str(python),
            "-P",
            "-m",
            "tools.api_server",
            "--listen",
            f"127.0.0.1:{port}",
            "--llama-checkpoint-path",
            str(checkpoint.resolve()),
            "--decoder-checkpoint-path",
            str(decoder.resolve()),
            "--decoder-config-name",
            fish["decoder_config_name"],
            "--device",
            fish["device"],
            "--max-text-length",
            str(fish["max_text_length"]),
        ]
        command += ["--compile"] if fish["compile"] else []
        command += ["--half"] if fish["half"] else []
        command += ["--api-key", api_key] if api_key else []
        command += [str(arg) for arg in fish["extra_args"]]
        env = {"PYTHONPATH": str(Path(fish["checkout"]).resolve())} if fish["checkout"] else {}
        return Launch(command, env, fatal_marks=("Exception in thread", "Traceback (most recent"))


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
