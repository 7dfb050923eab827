"""Gates on scores, and which take is kept."""

from fishflow.judging.gates import Judged, best, describe, failed_gates

GATES = {
    "wer": None,
    "cer": 0.6,
    "similarity": 0.7,
    "lead_silence_s": 1.0,
    "trail_silence_s": 1.0,
    "repetition": True,
}


def scores(**changes):
    base = {
        "wer": 0.2,
        "cer": 0.1,
        "repetition": False,
        "similarity": 0.9,
        "lead_silence_s": 0.1,
        "trail_silence_s": 0.1,
        "transcript": "hello",
    }
    return {**base, **changes}


def test_each_gate_fails_on_its_side_of_the_limit():
    assert failed_gates(scores(), GATES) == []
    assert failed_gates(scores(cer=0.61), GATES) == ["cer"]
    assert failed_gates(scores(cer=0.6), GATES) == []  # the limit itself passes
    assert failed_gates(scores(similarity=0.69), GATES) == ["similarity"]
    assert failed_gates(scores(lead_silence_s=3.0, trail_silence_s=2), GATES) == [
        "lead_silence",
        "trail_silence",
    ]
    assert failed_gates(scores(repetition=True, cer=2.0), GATES) == ["repetition", "cer"]


def test_gates_off_and_unmeasured_scores_pass():
    off = {key: None for key in GATES} | {"repetition": False}
    assert failed_gates(scores(cer=5.0, similarity=0.0, repetition=True), off) == []
    assert failed_gates(scores(wer=None, cer=None, repetition=None), GATES) == []
    assert failed_gates(scores(wer=0.9), {**GATES, "wer": 0.5}) == ["wer"]


def test_describe_names_key_score_and_limit():
    assert describe("cer", scores(cer=0.93), GATES) == "cer 0.93 > 0.6"
    assert describe("similarity", scores(similarity=0.5), GATES) == "similarity 0.5 < 0.7"


def test_best_take_fewest_failures_then_cer_then_similarity_then_earliest():
    a = Judged(0, scores(cer=0.9), ("cer",))
    b = Judged(1, scores(cer=0.7, similarity=0.5), ("cer", "similarity"))
    c = Judged(2, scores(cer=0.8), ("cer",))
    assert best([a, b, c]) is c  # one gate failed, lower CER than a
    d = Judged(3, scores(cer=0.8, similarity=0.95), ("cer",))
    assert best([a, b, c, d]) is d  # same CER as c, more similar
    e = Judged(4, scores(cer=0.8, similarity=0.95), ("cer",))
    assert best([e, d]) is d and best([d, e]) is d  # a tie: the earliest take
