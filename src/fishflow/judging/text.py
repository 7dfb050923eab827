"""Text side of the judge: one normalisation for the input text and the ASR transcript, word and
character error rates, and the repetition check.

The normaliser is deliberately simple (NFKC, lower case, punctuation and symbols dropped,
whitespace collapsed): numbers and abbreviations stay as written, so "42" against a transcript
"forty-two" counts as an error. Gates are set with that in mind (see README, quality).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

# Languages written without spaces between words: no WER, and CER by character.
UNSPACED = frozenset({"ja", "zh", "th", "lo", "km", "my", "bo"})
# The field's repetition filter: a unit repeated this many times in a row is a loop.
REPEAT_LIMIT = 10
_REPEATED = re.compile(rf"(.{{2,60}}?)\1{{{REPEAT_LIMIT - 1},}}")


def normalise(text: str) -> str:
    """NFKC, lower case, punctuation and symbols become spaces, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).lower()
    kept = (" " if unicodedata.category(ch)[0] in "PSZC" else ch for ch in text)
    return " ".join("".join(kept).split())


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]


def error_rate(ref: Sequence, hyp: Sequence) -> float:
    """Edits per reference unit; an empty reference scores 0 against nothing, else 1."""
    if not ref:
        return 0.0 if not hyp else 1.0
    return edit_distance(ref, hyp) / len(ref)


def wer(text: str, transcript: str, lang: str) -> float | None:
    """Word error rate; None for languages without spaces between words."""
    if lang in UNSPACED:
        return None
    return error_rate(normalise(text).split(), normalise(transcript).split())


def cer(text: str, transcript: str) -> float:
    """Character error rate over the normalised characters, spaces left out: the same measure
    for every script (CJK counts by character, as seed-tts-eval scores Chinese)."""
    return error_rate(normalise(text).replace(" ", ""), normalise(transcript).replace(" ", ""))


def longest_run(text: str) -> int:
    """How many times in a row the most repeated unit (2-60 characters) of `text` occurs, once
    that is at least REPEAT_LIMIT; else 0."""
    best = 0
    for match in _REPEATED.finditer(text):
        best = max(best, len(match.group(0)) // len(match.group(1)))
    return best


def repeats(text: str, transcript: str) -> bool:
    """The transcript loops: some unit repeats REPEAT_LIMIT times in a row, more often than in
    the text itself (a text that says "no, no, no, ..." may be heard that way)."""
    heard = longest_run(normalise(transcript) + " ")
    return heard >= REPEAT_LIMIT and heard > longest_run(normalise(text) + " ")
