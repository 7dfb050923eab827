"""The fish-speech checkpoint: its generation, which files the server loads, their hashes
(provenance), download.

Two generations load from different files, and a folder says which one it holds:
- S1 (OpenAudio S1 / S1-mini, fish-speech 0.1.0 and git up to d3df505): a tiktoken tokenizer and
  `model.pth`.
- S2 (Fish Audio S2, git 3dd1f85, `fishaudio/s2-pro`): a Hugging Face tokenizer
  (`AutoTokenizer.from_pretrained`) and weights that its loader takes, in this order, from
  `model.safetensors.index.json` (with every shard it names), `model.safetensors` or `model.pth`
  (`BaseTransformer.from_pretrained` in fish_speech/models/text2semantic/llama.py).
Both read `config.json`, and the codec from `codec.pth` (or `decoder_checkpoint`).

Used at planning time (preflight, model id: names and sizes only, cheap) and by the `checkpoint`
rule, which hashes every file once per checkpoint for `<out>/provenance/checkpoint.json`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from fishflow import atomic
from fishflow.errors import ConfigError, FishflowError
from fishflow.planning.voices import sha256_file

S1, S2 = "S1", "S2"
GENERATION_TITLES = {S1: "OpenAudio S1 / S1-mini", S2: "Fish Audio S2"}
S1_CHECKPOINT_FILES = ("config.json", "model.pth", "tokenizer.tiktoken", "special_tokens.json")
# tokenizer_config.json names the tokenizer class (the model's config.json is no transformers
# model type), tokenizer.json holds the fast tokenizer itself.
S2_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
S2_SHARD_INDEX = "model.safetensors.index.json"
# The S2 loader's order of preference: the first present is the one it loads.
S2_WEIGHTS = (S2_SHARD_INDEX, "model.safetensors", "model.pth")
# What server.fish_speech.download_repo may fetch, and the generation each holds.
DOWNLOAD_REPOS = {"fishaudio/openaudio-s1-mini": S1, "fishaudio/s2-pro": S2}

log = logging.getLogger("fishflow.serving.checkpoints")


def decoder_path(fish: dict) -> Path:
    """The codec weights (`fish`: config server.fish_speech)."""
    return Path(fish["decoder_checkpoint"] or Path(fish["checkpoint_dir"]) / "codec.pth")


def s1_model_files(checkpoint: Path) -> dict[str, Path]:
    return {name: checkpoint / name for name in S1_CHECKPOINT_FILES}


def s2_model_files(checkpoint: Path) -> dict[str, Path]:
    """The files an S2 server loads; with no weights present, the shard index stands for them."""
    names = ["config.json", *S2_TOKENIZER_FILES]
    weights = next((name for name in S2_WEIGHTS if (checkpoint / name).is_file()), S2_SHARD_INDEX)
    names.append(weights)
    if weights == S2_SHARD_INDEX:
        names += shard_names(checkpoint / S2_SHARD_INDEX)
    return {name: checkpoint / name for name in names}


def shard_names(index: Path) -> list[str]:
    """The weight files a sharded safetensors index names (none while the index is absent)."""
    if not index.is_file():
        return []
    try:
        return sorted(set(json.loads(index.read_text())["weight_map"].values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(
            f"config key server.fish_speech.checkpoint_dir: {index} is no safetensors index "
            f"(a 'weight_map' of tensor -> file): {exc}"
        ) from None


MODEL_FILES = {S1: s1_model_files, S2: s2_model_files}


def _missing(files: dict[str, Path]) -> list[str]:
    return [name for name, path in files.items() if not path.is_file()]


def detect_generation(fish: dict) -> str | None:
    """The generation whose model files are all in checkpoint_dir; None if neither's are.

    S1 first: every folder that planned before S2 support still is S1, so its model id, and
    with it every fingerprint of a finished run, stays the same."""
    checkpoint = Path(fish["checkpoint_dir"])
    return next((gen for gen in (S1, S2) if not _missing(MODEL_FILES[gen](checkpoint))), None)


def generation(fish: dict) -> str:
    """The detected generation; for a folder not (completely) there, say before its download,
    the generation of the repo that download_repo names."""
    return detect_generation(fish) or DOWNLOAD_REPOS[fish["download_repo"]]


def checkpoint_files(fish: dict) -> dict[str, Path]:
    """Role (file name in the checkpoint, or "decoder") -> path of everything the server loads."""
    files = MODEL_FILES[generation(fish)](Path(fish["checkpoint_dir"]))
    return {**files, "decoder": decoder_path(fish)}


def check_files(fish: dict) -> None:
    """Raise ConfigError naming every file the server would fail to load: for a folder of
    neither generation, what each would still need."""
    checkpoint, decoder = Path(fish["checkpoint_dir"]), decoder_path(fish)
    if not checkpoint.is_dir():
        raise ConfigError(
            f"config key server.fish_speech.checkpoint_dir: {checkpoint} is not a directory "
            "(download it, see envs/README.md, or set server.fish_speech.download: true)"
        )
    codec = [] if decoder.is_file() else [str(decoder)]
    if detect_generation(fish) is None:
        needs = "; ".join(
            f"{gen} ({GENERATION_TITLES[gen]}) needs "
            + ", ".join(_missing(MODEL_FILES[gen](checkpoint)) + codec)
            for gen in (S1, S2)
        )
        raise ConfigError(
            f"config key server.fish_speech.checkpoint_dir: {checkpoint} holds neither "
            f"checkpoint generation; {needs}. S2 weights: {S2_SHARD_INDEX} with its shards, "
            "model.safetensors or model.pth"
        )
    if codec:
        raise ConfigError(
            "config key server.fish_speech.checkpoint_dir: checkpoint files missing: " + codec[0]
        )


def describe(fish: dict) -> dict:
    """Provenance: where the checkpoint is, and each file's size and sha256."""
    check_files(fish)
    gen = generation(fish)
    return {
        "checkpoint_dir": str(Path(fish["checkpoint_dir"]).resolve()),
        "generation": gen,
        "generation_title": GENERATION_TITLES[gen],
        "files": {
            name: {
                "path": str(path.resolve()),
                "bytes": path.stat().st_size,
                "sha256": sha256_file(path),
            }
            for name, path in checkpoint_files(fish).items()
        },
    }


def download(local_dir: Path, repo_id: str) -> None:
    """Fetch the checkpoint from the Hugging Face Hub (a gated model: log in first).

    Into a sibling folder, renamed when complete: an interrupted download (resumed by the next
    run) never looks like a checkpoint folder with files missing."""
    try:
        # Only this opt-in path needs it: it is not a dependency of the workflow.
        from huggingface_hub import snapshot_download
    except ImportError:
        raise FishflowError(
            "server.fish_speech.download needs huggingface_hub in the workflow environment "
            "(pip install huggingface_hub), or download the checkpoint yourself: envs/README.md"
        ) from None
    partial = local_dir.with_name(local_dir.name + ".partial")
    snapshot_download(repo_id=repo_id, local_dir=str(partial))
    partial.rename(local_dir)


def provide(fish: dict, output: Path) -> None:
    """The `checkpoint` rule: download if asked and absent, then record the provenance."""
    checkpoint = Path(fish["checkpoint_dir"])
    if fish["download"] and not checkpoint.is_dir():
        log.info("downloading %s into %s", fish["download_repo"], checkpoint)
        download(checkpoint, fish["download_repo"])
    provenance = describe(fish)
    atomic.write_json(output, provenance)
    log.info("recorded %d checkpoint files in %s", len(provenance["files"]), output)
