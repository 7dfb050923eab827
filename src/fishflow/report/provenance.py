"""Where a report's numbers come from: code, config, inputs, model, software and hardware."""

from __future__ import annotations

import hashlib
import importlib
import json
import platform
import shutil
import subprocess
from pathlib import Path

from fishflow.planning.voices import sha256_file

PACKAGE_DIR = Path(__file__).resolve().parents[1]


def _command(*args: str, cwd: Path | None = None) -> str | None:
    try:
        done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else None


def fishflow_commit() -> str:
    if not shutil.which("git"):
        return "unknown"
    return _command("git", "rev-parse", "HEAD", cwd=PACKAGE_DIR) or "unknown"


def config_sha256(config: dict) -> str:
    # Where the results go does not shape them: the same benchmark elsewhere hashes the same.
    shaping = {key: value for key, value in config.items() if key != "output_dir"}
    return hashlib.sha256(json.dumps(shaping, sort_keys=True, default=str).encode()).hexdigest()


def environment() -> dict:
    try:
        torch = importlib.import_module("torch")
        torch_version, cuda = torch.__version__, torch.version.cuda or "none"
    except ImportError:
        torch_version = cuda = "not installed"
    gpu = None
    if shutil.which("nvidia-smi"):
        gpu = _command("nvidia-smi", "--query-gpu=name", "--format=csv,noheader")
    return {
        "python": platform.python_version(),
        "torch": torch_version,
        "cuda": cuda,
        # The GPU of the machine that wrote the report; generation ran on the server hosts.
        "gpu": gpu.replace("\n", "; ") if gpu else "none",
    }


def provenance(config: dict, items: list[dict], recorded: dict | None) -> dict:
    """`recorded`: the checkpoint's files and hashes as the `provide_model` rule wrote them
    (fish-speech; the demo has none)."""
    server = config["server"]
    fish_speech = server.get("fish_speech") or {}
    real = server["backend"] == "fish-speech"
    return {
        "fishflow_commit": fishflow_commit(),
        "config_sha256": config_sha256(config),
        "inputs_sha256": {
            lang: sha256_file(Path(p)) for lang, p in sorted(config["inputs"].items())
        },
        "references_sha256": {
            voice: sha256_file(Path(spec["audio"]))
            for voice, spec in sorted(config["voices"].items())
        },
        "checkpoint": recorded,
        "backend": server["backend"],
        # As the provide_model rule found it in the files that the servers loaded.
        "model_generation": _generation(recorded),
        "models": sorted({item["backend"] for item in items if item.get("backend")}),
        "server_flags": {
            "compile": fish_speech.get("compile") if real else None,
            "half": fish_speech.get("half") if real else None,
        },
        "environment": environment(),
    }


def _generation(recorded: dict | None) -> str | None:
    """ "S2 (Fish Audio S2)"; None for the demo (no checkpoint), or a record from before S2."""
    if not recorded or "generation" not in recorded:
        return None
    return f"{recorded['generation']} ({recorded['generation_title']})"
