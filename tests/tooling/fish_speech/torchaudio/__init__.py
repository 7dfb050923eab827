"""Stand-in for torchaudio inside the fish-speech test server env.

No torchaudio wheel exists for torch 2.13 (and newer PyPI builds pull CUDA), while the fish-speech
0.1.0 server only needs audio file I/O and resampling, which soundfile and soxr cover.
"""

from types import SimpleNamespace

import soundfile
import torch

from . import functional, transforms

__all__ = ["functional", "info", "list_audio_backends", "load", "transforms"]


def list_audio_backends() -> list[str]:
    return ["soundfile"]


def load(uri, backend: str | None = None) -> tuple[torch.Tensor, int]:
    """Return (channels x frames float32 tensor, sample rate) like torchaudio.load."""
    data, sample_rate = soundfile.read(uri, dtype="float32", always_2d=True)
    return torch.from_numpy(data.T.copy()), sample_rate


def info(uri, backend: str | None = None) -> SimpleNamespace:
    meta = soundfile.info(uri)
    return SimpleNamespace(
        sample_rate=meta.samplerate, num_frames=meta.frames, num_channels=meta.channels
    )
