"""Published seed-tts-eval figures, shown beside a run's own as labelled references, never as
measurements. They were scored with other models (Whisper-large-v3 for English, Paraformer-zh
for Chinese, WavLM-large speaker-verification embeddings) on seed-tts-eval's test sets, not on a
fishflow benchmark's sentences: context for a run's figures, not a like-for-like comparison."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BenchmarkRow:
    """One row of a seed-tts-eval style table: a system's error rates and speaker similarity
    on one language's test set, the models that scored them and where they come from."""

    system: str
    lang: str
    test_set: str
    items: int | None
    wer: float | None
    cer: float | None
    similarity: float | None
    asr: str
    speaker: str
    source: str
    published: bool


_SEED_TTS = "Seed-TTS technical report (arXiv:2406.02430), seed-tts-eval"
_S2 = "Fish Audio S2, as published in the fish-speech README"
_WAVLM = "WavLM-large (speaker verification)"
_NO_SIM = "no similarity published"

PUBLISHED = (
    BenchmarkRow(
        "Seed-TTS", "en", "seed-tts-eval test-en", None, wer=0.0225, cer=None, similarity=0.762,
        asr="Whisper-large-v3", speaker=_WAVLM, source=_SEED_TTS, published=True,
    ),
    BenchmarkRow(
        "Seed-TTS", "zh", "seed-tts-eval test-zh", None, wer=None, cer=0.0112, similarity=0.796,
        asr="Paraformer-zh", speaker=_WAVLM, source=_SEED_TTS, published=True,
    ),
    BenchmarkRow(
        "Fish Audio S2", "en", "seed-tts-eval test-en", None, wer=0.0099, cer=None,
        similarity=None, asr="Whisper-large-v3", speaker=_NO_SIM, source=_S2, published=True,
    ),
    BenchmarkRow(
        "Fish Audio S2", "zh", "seed-tts-eval test-zh", None, wer=None, cer=0.0054,
        similarity=None, asr="Paraformer-zh", speaker=_NO_SIM, source=_S2, published=True,
    ),
)  # fmt: skip


def for_language(lang: str) -> list[BenchmarkRow]:
    return [entry for entry in PUBLISHED if entry.lang == lang]
