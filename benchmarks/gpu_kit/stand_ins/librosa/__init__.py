"""Stand-in for librosa beside a fish-speech git source on the GPU kit's machine.

The git servers (d3df505, 3dd1f85) import librosa at start-up and call only `librosa.load` (a
reference sent inside a request, tools/server/model_utils.py); real librosa would bring numba,
llvmlite and scikit-learn, about 60 MB of wheels over the kit's 64 MiB. soundfile reads, soxr
resamples (librosa's own default resampler, "soxr_hq").
"""

import numpy as np
import soundfile
import soxr

__version__ = "0+fishflow-stand-in"


def load(path, sr=22050, mono=True, offset=0.0, duration=None, dtype=np.float32, res_type=None):
    """(samples, sample rate) like librosa.load: float, mono by default, resampled to `sr`."""
    data, rate = soundfile.read(path, dtype="float32", always_2d=True)
    start = int(round(offset * rate))
    stop = None if duration is None else start + int(round(duration * rate))
    data = data[start:stop]
    audio = data.mean(axis=1) if mono else data.T
    if sr is not None and sr != rate:
        audio = soxr.resample(audio.T if audio.ndim == 2 else audio, rate, sr, quality="HQ")
        audio = audio.T if audio.ndim == 2 else audio
        rate = sr
    return np.ascontiguousarray(audio, dtype=dtype), rate
