"""The fish-speech checkpoint: which files the server loads, their hashes (provenance), download.

Used at planning time (preflight, model id: names and sizes only, cheap) and by the `checkpoint`
rule, which hashes every file once per checkpoint for `<out>/provenance/checkpoint.json`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from . import atomic
from .errors import ConfigError, FishflowError
from .voices import sha256_file

S1_CHECKPOINT_FILES = ("config.json", "model.pth", "tokenizer.tiktoken", "special_tokens.json")
DOWNLOAD_REPO_ID = "fishaudio/openaudio-s1-mini"

log = logging.getLogger("fishflow.checkpoints")


def decoder_path(fish: dict) -> Path:
    """The codec weights (`fish`: config server.fish_speech)."""
    return Path(fish["decoder_checkpoint"] or Path(fish["checkpoint_dir"]) / "codec.pth")


def checkpoint_files(fish: dict) -> dict[str, Path]:
    """Role (file name in the checkpoint, or "decoder") -> path of everything the server loads."""
    checkpoint = Path(fish["checkpoint_dir"])
    files = {name: checkpoint / name for name in S1_CHECKPOINT_FILES}
    return {**files, "decoder": decoder_path(fish)}


def check_files(fish: dict) -> None:
    """Raise ConfigError naming every file the server would fail to load."""
    missing = [str(path) for path in checkpoint_files(fish).values() if not path.is_file()]
    if missing:
        raise ConfigError(
            "config key server.fish_speech.checkpoint_dir: checkpoint files missing: "
            + ", ".join(missing)
        )


def describe(fish: dict) -> dict:
    """Provenance: where the checkpoint is, and each file's size and sha256."""
    check_files(fish)
    return {
        "checkpoint_dir": str(Path(fish["checkpoint_dir"]).resolve()),
        "files": {
            name: {
                "path": str(path.resolve()),
                "bytes": path.stat().st_size,
                "sha256": sha256_file(path),
            }
            for name, path in checkpoint_files(fish).items()
        },
    }


def download(local_dir: Path, repo_id: str = DOWNLOAD_REPO_ID) -> None:
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
        log.info("downloading %s into %s", DOWNLOAD_REPO_ID, checkpoint)
        download(checkpoint)
    provenance = describe(fish)
    atomic.write_json(output, provenance)
    log.info("recorded %d checkpoint files in %s", len(provenance["files"]), output)
