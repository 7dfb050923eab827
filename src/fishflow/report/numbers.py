"""How the report and `fishflow compare` print numbers: at the precision a reader can use
(`234`, not `233.6546`), error rates in percent as published benchmarks print them, and
"not measured" for a figure nobody measured, never a number."""

from __future__ import annotations

import math

NOT_MEASURED = "not measured"


def significant(value: float | None, digits: int = 3) -> str:
    """`digits` significant digits without an exponent: 0.0266 → "0.0266", 233.65 → "234",
    2253.4 → "2253" (a large value keeps its integer digits)."""
    if value is None:
        return NOT_MEASURED
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}"


def percent(fraction: float | None, decimals: int = 2) -> str:
    """0.0225 → "2.25 %" (seed-tts-eval prints WER and CER in percent, two decimals)."""
    return NOT_MEASURED if fraction is None else f"{100 * fraction:.{decimals}f} %"


def points(difference: float | None) -> str:
    """A difference of two fractions in percentage points, signed: "+0.31 pp"."""
    return NOT_MEASURED if difference is None else f"{100 * difference:+.2f} pp"


def fixed(value: float | None, decimals: int) -> str:
    return NOT_MEASURED if value is None else f"{value:.{decimals}f}"


def duration(seconds: float | None) -> str:
    """Amount of audio: "45 s", "7.5 min", "2.35 h"."""
    if seconds is None:
        return NOT_MEASURED
    if seconds < 120:
        return f"{significant(seconds)} s"
    if seconds < 7200:
        return f"{significant(seconds / 60)} min"
    return f"{significant(seconds / 3600)} h"
