"""Quality figures of a group of items, from the judge's `scores` and `takes` in their records.

Every item the judge scored counts, spoken or failed (a failed item with the scores of its best
take), so a checkpoint whose items fail a gate is not flattered by leaving them out; items that
failed before being judged (a server error) have no scores. A score the judge did not measure
(judge off, a language without an ASR model, WER in a language not written with spaces, a run
made before the judge) is None, and so is every figure made only from such scores.
"""

from __future__ import annotations

import numpy as np

# Score → which side of its gate fails it (a gate keyed like the score in quality.gates).
GATED = {"wer": "above", "cer": "above", "similarity": "below"}
QUALITY_REASON = "quality:"
JUDGE_STEPS = ("vad", "asr", "speaker")


def _rounded(value: float) -> float:
    return round(float(value), 4)


def distribution(values: list[float], gate: float | None = None, fails: str = "above") -> dict:
    """Mean, median and the share of values on the failing side of `gate` (None without a
    gate or without values)."""
    if not values:
        return {"n": 0, "mean": None, "median": None, "gate": gate, "beyond_gate": None}
    beyond = None
    if gate is not None:
        failing = [v > gate if fails == "above" else v < gate for v in values]
        beyond = _rounded(sum(failing) / len(values))
    return {
        "n": len(values),
        "mean": _rounded(np.mean(values)),
        "median": _rounded(np.median(values)),
        "gate": gate,
        "beyond_gate": beyond,
    }


def _scores(items: list[dict]) -> list[dict]:
    return [item["scores"] for item in items if item.get("scores")]


def _measured(scores: list[dict], key: str) -> list[float]:
    return [s[key] for s in scores if s.get(key) is not None]


def figures(items: list[dict], gates: dict) -> dict:
    """The quality figures of `items`; `gates` is config quality.gates (empty: all off)."""
    scores = _scores(items)
    takes = [item["takes"] for item in items if item.get("takes") is not None]
    failed = [
        item["reason"].removeprefix(QUALITY_REASON)
        for item in items
        if item["status"] == "failed" and (item["reason"] or "").startswith(QUALITY_REASON)
    ]
    # Kept although a gate failed them (quality.keep_failed): spoken, flagged with the gate.
    flagged = [
        item["scores"]["gate"]
        for item in items
        if item["status"] == "ok" and (item.get("scores") or {}).get("gate")
    ]
    figures = {"judged": len(scores)}
    for key, fails in GATED.items():
        figures[key] = distribution(_measured(scores, key), gates.get(key), fails)
    figures["mos"] = distribution(_measured(scores, "mos"))
    figures["regenerations"] = {
        "n": len(takes),
        "per_item": _rounded(np.mean(takes) - 1) if takes else None,
        "total": sum(takes) - len(takes) if takes else None,
    }
    figures["failed"] = _counts(failed)
    figures["flagged"] = _counts(flagged)
    return figures


def _counts(gates: list[str]) -> dict[str, int]:
    return {gate: gates.count(gate) for gate in sorted(set(gates))}


def judge_seconds(items: list[dict]) -> dict:
    """Mean seconds the judge spent per judged take, by step (timing: it changes per run)."""
    steps = [s["judge_s"] for s in _scores(items) if s.get("judge_s")]
    return {
        step: _rounded(np.mean(values)) if (values := _measured(steps, step)) else None
        for step in JUDGE_STEPS
    }
