"""Gates on a take's scores, and which of an item's takes is kept.

A score that was not measured (None: no ASR model for the language) passes its gate: a gate
decides on measurements only.
"""

from __future__ import annotations

from dataclasses import dataclass

# Gate names, in the order a failure is reported (`quality:<gate>`): the text first, then the
# voice, then the silences. Each maps to its config key under quality.gates.
GATES = {
    "repetition": "repetition",
    "cer": "cer",
    "wer": "wer",
    "similarity": "similarity",
    "lead_silence": "lead_silence_s",
    "trail_silence": "trail_silence_s",
}


def failed_gates(scores: dict, gates: dict) -> list[str]:
    """The gates `scores` fail under the config's `quality.gates`, in GATES order."""
    failed = []
    for gate, key in GATES.items():
        limit, score = gates[key], scores.get(key)
        if limit is None or limit is False or score is None:
            continue
        if gate == "repetition":
            bad = score is True
        elif gate == "similarity":
            bad = score < limit
        else:
            bad = score > limit
        if bad:
            failed.append(gate)
    return failed


def describe(gate: str, scores: dict, gates: dict) -> str:
    key = GATES[gate]
    if gate == "repetition":
        return f"the transcript loops: {scores.get('transcript')!r}"
    relation = "<" if gate == "similarity" else ">"
    return f"{key} {scores[key]} {relation} {gates[key]}"


@dataclass(frozen=True)
class Judged:
    """One take's scores and the gates it failed; `index`: 0 for the first take."""

    index: int
    scores: dict
    failed: tuple[str, ...]

    def rank(self) -> tuple:
        """Lower is better: fewest gates failed, then lowest CER, then highest similarity,
        then the earliest take (no tie is left to chance: the same takes give the same
        choice)."""
        cer = self.scores.get("cer")
        similarity = self.scores.get("similarity")
        return (
            len(self.failed),
            cer if cer is not None else 0.0,
            -similarity if similarity is not None else 0.0,
            self.index,
        )


def best(judged: list[Judged]) -> Judged:
    return min(judged, key=Judged.rank)
