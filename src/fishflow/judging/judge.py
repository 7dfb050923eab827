"""The judge of a generation job: its engines loaded once, the reference voices embedded once,
every take of an item scored, and the best of an item's takes chosen (best-of-N).

Scores (the keys of `ItemRecord.scores`; None means "not measured"): wer, cer, transcript,
repetition, similarity, lead_silence_s, trail_silence_s, speech_fraction, mos, judge_s, gate.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fishflow.judging import engines, text
from fishflow.judging.gates import Judged, best, describe, failed_gates
from fishflow.judging.models import JudgeModels
from fishflow.speaking.audio import AudioCheck

log = logging.getLogger("fishflow.judge")


@dataclass(frozen=True)
class Take:
    """One spoken rendering of an item that passed the audio checks."""

    seed: int
    data: bytes
    check: AudioCheck
    attempts: int = 0  # requests it took
    seconds: float = 0.0  # time it took to speak, retries included
    on_disk: bool = False  # the item's WAV already holds it (spoken by an earlier run)
    # Fetched streamed (server.streaming): seconds to the answer's first byte and first audio.
    ttfb_s: float | None = None
    ttfa_s: float | None = None


@dataclass(frozen=True)
class Verdict:
    take: Take  # the take kept
    scores: dict  # its scores; scores["gate"]: the first gate it failed, None if it passed
    takes: int  # takes judged to choose it
    detail: str | None  # why it failed its gate, None if it passed

    @property
    def gate(self) -> str | None:
        return self.scores["gate"]


class Judge:
    def __init__(self, quality: dict, models: JudgeModels, lang: str, references: Iterable[dict]):
        started = time.monotonic()
        self.gates = quality["gates"]
        self.retries = quality["retries"]
        self.lang = lang
        device = engines.device(quality["device"])
        self.vad = engines.Vad()
        folder = models.asr.get(lang)
        self.asr = (
            engines.Asr(folder, device, quality["asr"]["timeout_s"]) if folder is not None else None
        )
        self.speaker = engines.Speaker(models.speaker_weights, device)
        self.lock = threading.Lock()  # one take at a time: the engines share the job's cores
        self.references = {ref["id"]: self._reference(Path(ref["audio"])) for ref in references}
        for voice in sorted(v for v, embedding in self.references.items() if embedding is None):
            log.warning(
                "judge: voice %s: no speech found in its reference; its items' "
                "similarity is not measured",
                voice,
            )
        log.info(
            "judge for %s loaded on %s in %.1f s (ASR: %s)",
            lang,
            device,
            time.monotonic() - started,
            folder or "none, wer/cer not measured",
        )

    def _reference(self, path: Path):
        audio = engines.load_16k(path)
        return self.speaker.embed(self.vad.bounds(audio).speech(audio))

    def score(self, data: bytes, item_text: str, voice: str) -> dict:
        """One take's scores."""
        with self.lock:
            clock = time.monotonic()
            audio = engines.load_16k(data)
            bounds = self.vad.bounds(audio)
            speech = bounds.speech(audio)
            vad_s, clock = time.monotonic() - clock, time.monotonic()
            transcript = None
            if self.asr is not None:
                # Leading and trailing silence cut off: Whisper makes words up in silence.
                first, last = (bounds.spans[0][0], bounds.spans[-1][1]) if bounds.spans else (0, 0)
                transcript = self.asr.transcribe(audio[first:last], item_text, self.lang)
            asr_s, clock = time.monotonic() - clock, time.monotonic()
            embedding = self.speaker.embed(speech)
            speaker_s = time.monotonic() - clock
        measured = transcript is not None
        return {
            "wer": _round(text.wer(item_text, transcript, self.lang)) if measured else None,
            "cer": _round(text.cer(item_text, transcript)) if measured else None,
            "transcript": transcript,
            "repetition": text.repeats(item_text, transcript) if measured else None,
            "similarity": engines.similarity(embedding, self.references[voice]),
            "lead_silence_s": bounds.lead_silence_s,
            "trail_silence_s": bounds.trail_silence_s,
            "speech_fraction": bounds.speech_fraction,
            "mos": None,  # no MOS engine is configured
            "judge_s": {
                "vad": round(vad_s, 3),
                "asr": round(asr_s, 3),
                "speaker": round(speaker_s, 3),
            },
            "gate": None,
        }

    def best_of(self, item_text: str, voice: str, takes: Iterable[Take]) -> Verdict | None:
        """Judge `takes` in order until one passes every gate, at most 1 + quality.retries of
        them; keep the best (gates.Judged.rank). None: not one take could be had."""
        judged: list[tuple[Judged, Take]] = []
        for index, take in enumerate(itertools.islice(takes, 1 + self.retries)):
            scores = self.score(take.data, item_text, voice)
            failed = tuple(failed_gates(scores, self.gates))
            judged.append((Judged(index, scores, failed), take))
            if not failed:
                break
        if not judged:
            return None
        chosen = best([j for j, _ in judged])
        take = judged[chosen.index][1]
        scores = {**chosen.scores, "gate": chosen.failed[0] if chosen.failed else None}
        detail = describe(chosen.failed[0], scores, self.gates) if chosen.failed else None
        return Verdict(take, scores, len(judged), detail)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
