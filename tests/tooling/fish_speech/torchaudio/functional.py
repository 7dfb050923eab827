"""soxr-backed resampling (librosa's default resampler costs a multi-second numba compile)."""

import soxr
import torch


def resample(waveform: torch.Tensor, orig_freq: int, new_freq: int) -> torch.Tensor:
    """Resample the last axis of ``waveform`` like torchaudio.functional.resample."""
    if orig_freq == new_freq:
        return waveform
    frames = waveform.reshape(-1, waveform.shape[-1]).T.double().numpy()
    out = soxr.resample(frames, orig_freq, new_freq)
    return torch.from_numpy(out.T.copy()).to(waveform.dtype).reshape(*waveform.shape[:-1], -1)
