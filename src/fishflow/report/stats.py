"""Figures per language × voice, per language and in total. Counts, audio seconds and quality
scores are properties of the audio; generation and judging seconds and everything derived
from them go into `timing`."""

from __future__ import annotations

from collections import Counter

import numpy as np

from fishflow.report import quality

PERCENTILES = (50, 95, 99)


def _timing(ok: list[dict], audio_s: float) -> dict:
    # Generation seconds are the summed per-request latencies: the time the GPU spent on these
    # items, without server start-up (reported apart) and without idle time between jobs.
    latencies = [item["generation_s"] for item in ok]
    generation_s = sum(latencies)
    timing = {"generation_s": round(generation_s, 4)}
    for p in PERCENTILES:
        timing[f"latency_p{p}_s"] = round(float(np.percentile(latencies, p)), 4) if ok else None
    per_s = 1 / generation_s if generation_s > 0 else None
    timing["rtf"] = round(generation_s / audio_s, 4) if audio_s > 0 else None
    timing["items_per_min"] = round(len(ok) * 60 * per_s, 3) if per_s else None
    timing["audio_min_per_gpu_hour"] = round(audio_s / 60 * 3600 * per_s, 3) if per_s else None
    return timing


def row(lang: str, voice: str, items: list[dict], gates: dict) -> dict:
    ok = [item for item in items if item["status"] == "ok"]
    failed = [item for item in items if item["status"] == "failed"]
    audio_s = round(sum(item["duration_s"] for item in ok), 4)
    reasons = Counter(item["reason"] for item in failed)
    return {
        "lang": lang,
        "voice": voice,
        "items": len(items),
        "ok": len(ok),
        "failed": len(failed),
        "audio_s": audio_s,
        "text_chars": sum(item["text_chars"] for item in items),
        "failures": dict(sorted(reasons.items())),
        "validation": {
            "passed_first_attempt": sum(item["attempts"] == 1 for item in ok),
            "passed_after_retry": sum(item["attempts"] > 1 for item in ok),
            "failed": sum(reason.startswith("validation:") for reason in reasons.elements()),
        },
        "quality": quality.figures(items, gates),
        "timing": {**_timing(ok, audio_s), "judge_s": quality.judge_seconds(items)},
    }


def _groups(items: list[dict], key) -> list[tuple[tuple, list[dict]]]:
    groups: dict[tuple, list[dict]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return sorted(groups.items())


def figures(items: list[dict], gates: dict) -> tuple[list[dict], dict]:
    """One row per language × voice (sorted), and the total over all items. `gates`: config
    quality.gates (empty: all off)."""
    cells = _groups(items, lambda item: (item["lang"], item["voice"]))
    rows = [row(lang, voice, cell, gates) for (lang, voice), cell in cells]
    return rows, row("all", "all", items, gates)


def by_language(items: list[dict], gates: dict) -> list[dict]:
    """One row per language over all its voices (voice "all"): a language is a test set."""
    languages = _groups(items, lambda item: (item["lang"],))
    return [row(lang, "all", cell, gates) for (lang,), cell in languages]
