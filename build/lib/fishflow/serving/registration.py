"""Make voices exist on a server and verify them before any generation.

Git servers have `/v1/references/add|list`; the PyPI 0.1.0 server has not and reads
`references/<id>/` (audio + same-stem `.lab`) from its working directory. Either way the files
must end up in the server's working directory, which fishflow owns, so presence is verified both
through the API (where there is one) and by the content hash of the audio on disk.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from fishflow import atomic
from fishflow.errors import ServerError
from fishflow.planning.voices import AUDIO_SUFFIXES, sha256_file
from fishflow.serving.client import FishSpeechClient


def _folder_problem(folder: Path, voice: dict) -> str | None:
    """Why `folder` does not hold exactly this voice's audio and transcript, or None."""
    if not folder.is_dir():
        return f"{folder} does not exist"
    audio = [p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES]
    if len(audio) != 1:
        return f"{folder} holds {len(audio)} audio files, expected 1"
    if sha256_file(audio[0]) != voice["sha256"]:
        return f"{audio[0]} differs from the configured reference {voice['audio']}"
    lab = audio[0].with_suffix(".lab")
    if not lab.is_file():
        return f"{lab} (the transcript) is missing"
    if lab.read_text(encoding="utf-8").strip() != voice["text"]:
        return f"{lab} differs from the configured transcript"
    return None


def _write_folder(folder: Path, voice: dict) -> None:
    audio = Path(voice["audio"])
    atomic.write_bytes(folder / f"{voice['id']}{audio.suffix.lower()}", audio.read_bytes())
    atomic.write_text(folder / f"{voice['id']}.lab", voice["text"])


def _add_over_http(client: FishSpeechClient, folder: Path, voice: dict) -> None:
    audio = Path(voice["audio"])
    name = f"{voice['id']}{audio.suffix.lower()}"
    status = client.add_reference(voice["id"], audio.read_bytes(), name, voice["text"])
    if status == 409 and _folder_problem(folder, voice):
        # The server's quirk: a TTS call with an unknown id leaves an empty folder behind, after
        # which add answers 409 while list omits the id. The folder is ours: clear it, add again.
        shutil.rmtree(folder)
        status = client.add_reference(voice["id"], audio.read_bytes(), name, voice["text"])
        if status == 409:
            raise ServerError(
                f"voice {voice['id']!r}: add answers 409 even after clearing {folder}"
            )


def register_voices(client: FishSpeechClient, workdir: Path, voices: list[dict]) -> str:
    """Register and verify every voice; return the registry kind ("http" or "folder")."""
    references = Path(workdir) / "references"
    listed = client.list_references()
    registry = "folder" if listed is None else "http"
    for voice in voices:
        folder = references / voice["id"]
        if _folder_problem(folder, voice):
            if registry == "http":
                _add_over_http(client, folder, voice)
            else:
                _write_folder(folder, voice)
    verify_voices(client, workdir, voices, registry)
    return registry


def verify_voices(client: FishSpeechClient, workdir: Path, voices: list[dict], registry: str):
    """Raise ServerError unless every voice is verifiably present: never a default voice."""
    listed = set(client.list_references() or ()) if registry == "http" else None
    problems = []
    for voice in voices:
        problem = _folder_problem(Path(workdir) / "references" / voice["id"], voice)
        if problem is None and listed is not None and voice["id"] not in listed:
            problem = "the server's /v1/references/list does not include it"
        if problem:
            problems.append(f"voice {voice['id']!r}: {problem}")
    if problems:
        raise ServerError(
            "voices not verifiably present on the server:\n  " + "\n  ".join(problems)
        )
