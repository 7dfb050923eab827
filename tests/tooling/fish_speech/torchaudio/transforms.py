import torch

from .functional import resample


class Resample(torch.nn.Module):
    def __init__(self, orig_freq: int, new_freq: int) -> None:
        super().__init__()
        self.orig_freq = orig_freq
        self.new_freq = new_freq

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return resample(waveform, self.orig_freq, self.new_freq)
