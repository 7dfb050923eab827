"""Which judge models a run uses, checked at planning: the ASR model folder per language, the
speaker weights, and the fingerprint that decides which judged items are still judged right.

Nothing here loads a model (planning stays fast); the generation job does (judging.judge).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from fishflow.errors import ConfigError

PACKAGE = "package:"
# CTranslate2 tells a multilingual Whisper model from an English-only one by its vocabulary:
# 51864 tokens for the .en models, 51865 or more (51866 in large-v3) for multilingual ones.
MULTILINGUAL_VOCABULARY = 51865
ENGINES = ("faster-whisper", "ctranslate2", "resemblyzer", "onnxruntime")


@dataclass(frozen=True)
class JudgeModels:
    asr: dict[str, Path]  # language -> CTranslate2 Whisper folder, for the planned languages
    unmeasured: tuple[str, ...]  # planned languages without an ASR model: wer/cer None
    speaker_weights: Path
    # Per language: changes with any quality setting or with the language's models; an item
    # judged under another one is judged again (from its WAV: the audio is not spoken again).
    fingerprints: dict[str, str]

    def describe(self) -> str:
        """The plan summary's line about the judge."""
        asr = ", ".join(f"{lang}: {folder}" for lang, folder in sorted(self.asr.items()))
        text = f"ASR {asr}" if asr else "no ASR"
        if self.unmeasured:
            text += f"; wer/cer not measured for {list(self.unmeasured)} (no quality.asr.models)"
        return f"{text}; speaker similarity ({self.speaker_weights.name}) and VAD for every item"


def package_folder(name: str) -> Path | None:
    """An installed package's folder, found without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def asr_folder(lang: str, spec: str) -> Path:
    """The model folder `spec` names: a path, or `package:<name>`, an installed package that
    ships a CTranslate2 Whisper model in its folder or in its `model/` subfolder."""
    key = f"config key quality.asr.models.{lang}"
    if spec.startswith(PACKAGE):
        name = spec[len(PACKAGE) :]
        folder = package_folder(name)
        if folder is None:
            raise ConfigError(f"{key}: package {name!r} is not installed")
        candidates = [folder, folder / "model"]
    else:
        candidates = [Path(spec)]
    for folder in candidates:
        if (folder / "model.bin").is_file():
            check_language(key, folder, lang)
            return folder
    raise ConfigError(
        f"{key}: no CTranslate2 Whisper model (model.bin) in {candidates[0]}"
        + ("" if spec.startswith(PACKAGE) else " (convert one with ct2-transformers-converter)")
    )


def vocabulary_size(folder: Path) -> int | None:
    if (folder / "vocabulary.txt").is_file():
        with open(folder / "vocabulary.txt", encoding="utf-8") as handle:
            return sum(1 for _ in handle)
    if (folder / "vocabulary.json").is_file():
        return len(json.loads((folder / "vocabulary.json").read_text(encoding="utf-8")))
    return None


def check_language(key: str, folder: Path, lang: str) -> None:
    size = vocabulary_size(folder)
    if size is None:
        raise ConfigError(f"{key}: {folder} has no vocabulary.txt or vocabulary.json")
    if size < MULTILINGUAL_VOCABULARY and lang != "en":
        raise ConfigError(
            f"{key}: {folder} is an English-only Whisper model (vocabulary of {size} tokens; "
            f"multilingual ones have {MULTILINGUAL_VOCABULARY} or more): it cannot transcribe "
            f"{lang!r}"
        )


def speaker_weights(quality: dict) -> Path:
    configured = quality["speaker"]["weights"]
    if configured is not None:
        path = Path(configured)
        if not path.is_file():
            raise ConfigError(f"config key quality.speaker.weights: {path} does not exist")
        return path
    folder = package_folder("resemblyzer")
    if folder is None or not (folder / "pretrained.pt").is_file():
        raise ConfigError(
            "config key quality.speaker.weights: null, and resemblyzer (whose weights are the "
            "default) is not installed"
        )
    return folder / "pretrained.pt"


def _identity(path: Path) -> list:
    """What names a model's content cheaply (a production ASR model is gigabytes): its small
    config hashed, its weights by size."""
    config = path / "config.json" if path.is_dir() else None
    weights = path / "model.bin" if path.is_dir() else path
    config_hash = (
        hashlib.sha256(config.read_bytes()).hexdigest() if config and config.is_file() else None
    )
    return [str(path.resolve()), config_hash, weights.stat().st_size]


def judge_models(quality: dict, languages: list[str]) -> JudgeModels | None:
    """The judge's models for a run over `languages`; None with the judge off."""
    if not quality["enabled"]:
        return None
    configured = quality["asr"]["models"]
    asr = {lang: asr_folder(lang, configured[lang]) for lang in languages if lang in configured}
    weights = speaker_weights(quality)
    common = {
        "quality": {key: value for key, value in quality.items() if key != "asr"},
        "asr_timeout_s": quality["asr"]["timeout_s"],
        "speaker": _identity(weights),
        "engines": {name: _version(name) for name in ENGINES},
    }
    fingerprints = {
        lang: _digest({**common, "asr": _identity(asr[lang]) if lang in asr else None})
        for lang in languages
    }
    unmeasured = tuple(lang for lang in languages if lang not in asr)
    return JudgeModels(asr, unmeasured, weights, fingerprints)


def _digest(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:  # not installed: the job says so when it loads the engine
        return None
