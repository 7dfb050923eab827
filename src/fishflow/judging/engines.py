"""The judge's models, each loaded once per generation job and called with bounded work:
speech bounds by Silero VAD (shipped with faster-whisper), a transcript by faster-whisper
(CTranslate2) from a model folder, a speaker embedding by Resemblyzer's GE2E encoder.

Audio reaches every engine as 16 kHz mono float32, resampled here by soxr, and the speaker
encoder's mel spectrogram is computed here with numpy, rather than by Resemblyzer's librosa
preprocessing: in a fresh process that costs tens of seconds of warm-up (measured: 34 s for the
first reference on a 2-core box, 2.3 s for the first spectrogram alone), paid by every job.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import soundfile
import soxr

RATE = 16000
# Speech shorter than this between two pauses is not speech (a click); a pause shorter than
# this inside speech does not split it.
VAD_MIN_SPEECH_MS = 100
VAD_MIN_SILENCE_MS = 300
# Whisper's decoder context is 448 tokens, a few of them taken by the prompt.
WHISPER_MAX_NEW_TOKENS = 440


def load_16k(source: bytes | Path) -> np.ndarray:
    """Audio (WAV bytes or a file) as 16 kHz mono float32."""
    data, rate = soundfile.read(
        io.BytesIO(source) if isinstance(source, bytes) else str(source),
        dtype="float32",
        always_2d=True,
    )
    mono = data.mean(axis=1)
    return soxr.resample(mono, rate, RATE).astype(np.float32) if rate != RATE else mono


def device(choice: str) -> str:
    """ "auto": the job's GPU when torch sees one, else the CPU."""
    if choice != "auto":
        return choice
    import torch  # only here: a config that names the device never pays for the check

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class SpeechBounds:
    lead_silence_s: float
    trail_silence_s: float
    speech_fraction: float
    spans: tuple[tuple[int, int], ...]  # speech, in samples at 16 kHz

    def speech(self, audio: np.ndarray) -> np.ndarray:
        """The audio's speech only, pauses longer than VAD_MIN_SILENCE_MS left out."""
        if not self.spans:
            return audio[:0]
        return np.concatenate([audio[start:end] for start, end in self.spans])


class Vad:
    """Silero VAD as faster-whisper ships it (ONNX), without padding around speech: padding
    would shift the silence measured by its width."""

    def __init__(self):
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        self._detect = get_speech_timestamps
        self._options = VadOptions(
            speech_pad_ms=0,
            min_speech_duration_ms=VAD_MIN_SPEECH_MS,
            min_silence_duration_ms=VAD_MIN_SILENCE_MS,
        )

    def bounds(self, audio: np.ndarray) -> SpeechBounds:
        spans = tuple(
            (s["start"], s["end"]) for s in self._detect(audio, self._options, sampling_rate=RATE)
        )
        total = len(audio) / RATE
        if not spans:
            return SpeechBounds(round(total, 3), round(total, 3), 0.0, ())
        speech = sum(end - start for start, end in spans) / RATE
        return SpeechBounds(
            lead_silence_s=round(spans[0][0] / RATE, 3),
            trail_silence_s=round((len(audio) - spans[-1][1]) / RATE, 3),
            speech_fraction=round(speech / total, 4) if total else 0.0,
            spans=spans,
        )


def token_budget(text: str) -> int:
    """New tokens a transcript of `text` may take: twice one token per character, which no
    tokenizer exceeds for speech that says the text (English runs about 4 characters a
    token, CJK 1-3 tokens a character), so only a runaway loop is cut off."""
    return min(WHISPER_MAX_NEW_TOKENS, 16 + 2 * len(text))


class Asr:
    """faster-whisper from a model folder, greedy (beam 1, temperature 0: the same audio gives
    the same transcript on one machine; thread settings such as OMP_NUM_THREADS can change a
    word) and bounded: tokens by `token_budget`, time by `timeout_s` (checked between 30 s
    windows; one window's decode is bounded by its tokens)."""

    def __init__(self, folder: Path, device: str, timeout_s: float):
        from faster_whisper import WhisperModel

        compute_type = "int8" if device == "cpu" else "float16"
        self.model = WhisperModel(str(folder), device=device, compute_type=compute_type)
        self.timeout_s = timeout_s

    def transcribe(self, speech: np.ndarray, text: str, lang: str) -> str:
        if len(speech) == 0:
            return ""  # nothing to hear: Whisper would make something up
        budget = token_budget(text)
        segments, _ = self.model.transcribe(
            speech,
            language=lang,
            beam_size=1,
            temperature=0.0,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
            max_new_tokens=budget,
        )
        words, tokens, deadline = [], 0, time.monotonic() + self.timeout_s
        for segment in segments:
            words.append(segment.text.strip())
            tokens += len(segment.tokens)
            if tokens >= budget or time.monotonic() > deadline:
                break  # the rest would only lengthen a runaway transcript
        return " ".join(words).strip()


class Speaker:
    """Resemblyzer's GE2E encoder (its shipped weights unless `weights` names others).

    Its preprocessing is done here (see the module doc): audio resampled by soxr, cut to speech
    by the judge's VAD instead of a second VAD (webrtcvad), volume-normalised as Resemblyzer
    does, and its mel spectrogram (librosa's defaults: Hann window, centred frames with zero
    padding, power 2, Slaney mel scale) computed by `mel_spectrogram`."""

    def __init__(self, weights: Path | None, device: str):
        from resemblyzer import VoiceEncoder

        self.encoder = VoiceEncoder(device, verbose=False, weights_fpath=weights)

    def embed(self, speech: np.ndarray) -> np.ndarray | None:
        """An L2-normed embedding of the speech (VoiceEncoder.embed_utterance with its
        defaults, on our spectrogram); None for too little speech (under 0.1 s)."""
        import torch
        from resemblyzer.audio import normalize_volume
        from resemblyzer.hparams import audio_norm_target_dBFS

        if len(speech) < RATE // 10:
            return None
        wav = normalize_volume(speech, audio_norm_target_dBFS, increase_only=True)
        wav_slices, mel_slices = self.encoder.compute_partial_slices(len(wav), 1.3, 0.75)
        wav = np.pad(wav, (0, max(0, wav_slices[-1].stop - len(wav))))
        mel = mel_spectrogram(wav.astype(np.float32))
        mels = torch.from_numpy(np.array([mel[s] for s in mel_slices])).to(self.encoder.device)
        with torch.no_grad():
            partials = self.encoder(mels).cpu().numpy()
        embedding = partials.mean(axis=0)
        return embedding / np.linalg.norm(embedding)


# Resemblyzer's spectrogram: 25 ms windows every 10 ms, 40 mel bands (resemblyzer.hparams).
N_FFT, HOP, N_MELS = 400, 160, 40


def mel_spectrogram(wav: np.ndarray) -> np.ndarray:
    """(frames, N_MELS) power mel spectrogram, as librosa.feature.melspectrogram(y=wav,
    sr=16000, n_fft=400, hop_length=160, n_mels=40) transposed (tests/unit compare them)."""
    padded = np.pad(wav, N_FFT // 2)
    count = 1 + (len(padded) - N_FFT) // HOP
    frames = np.lib.stride_tricks.as_strided(
        padded, (count, N_FFT), (padded.strides[0] * HOP, padded.strides[0])
    )
    power = np.abs(np.fft.rfft(frames * _hann(), axis=1)) ** 2
    return (power @ _mel_basis().T).astype(np.float32)


@cache
def _hann() -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / (200 / 3)
    log = hz >= 1000
    return np.where(log, 15 + np.log(np.maximum(hz, 1e-10) / 1000) / (np.log(6.4) / 27), mel)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    hz = mel * (200 / 3)
    log = mel >= 15
    return np.where(log, 1000 * np.exp((np.log(6.4) / 27) * (mel - 15)), hz)


@cache
def _mel_basis() -> np.ndarray:
    """(N_MELS, N_FFT // 2 + 1) triangular filters, Slaney-normalised (area 1)."""
    fft_hz = np.fft.rfftfreq(N_FFT, 1 / RATE)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(RATE / 2), N_MELS + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    return (weights * (2 / (edges[2:] - edges[:-2]))[:, None]).astype(np.float32)


def similarity(item: np.ndarray | None, reference: np.ndarray | None) -> float | None:
    """Cosine similarity of two L2-normed embeddings: 0 for an item without speech (no voice is
    no match), None (not measured) when the reference has no speech to compare with."""
    if reference is None:
        return None
    if item is None:
        return 0.0
    return round(float(np.dot(item, reference)), 4)
