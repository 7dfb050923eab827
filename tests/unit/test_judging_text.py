"""The judge's text side: normalisation, WER/CER, the repetition check."""

import pytest

from fishflow.judging.text import cer, edit_distance, longest_run, normalise, repeats, wer


def test_normalise_drops_case_punctuation_and_symbols_keeps_numbers():
    assert normalise("  Hello, World!  Dr. Smith — 42 %") == "hello world dr smith 42"
    assert normalise("Ｆｕｌｌ　ｗｉｄｔｈ") == "full width"  # NFKC
    assert normalise("你好，世界。") == "你好 世界"


def test_edit_distance():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([], ["a"]) == 1
    assert edit_distance(["a", "b"], ["a", "b"]) == 0


def test_wer_counts_words_after_normalisation():
    assert wer("The cat sat.", "the cat sat", "en") == 0.0
    assert wer("The cat sat on the mat.", "the dog sat on mat", "en") == pytest.approx(2 / 6)
    assert wer("a b", "a b c d", "en") == 1.0  # insertions count: rates above 1 are possible


def test_wer_is_not_measured_for_languages_without_spaces():
    assert wer("你好世界", "你好世界", "zh") is None
    assert wer("こんにちは", "こんにちは", "ja") is None


def test_cer_by_character_for_cjk_and_without_spaces_everywhere():
    assert cer("你好，世界", "你好世界") == 0.0
    assert cer("你好世界", "你好地界") == pytest.approx(1 / 4)
    assert cer("ab cd", "abcd") == 0.0
    assert cer("", "") == 0.0 and cer("", "x") == 1.0


def test_right_text_scores_far_better_than_wrong_text():
    text = "The quick brown fox jumps over the lazy dog."
    assert cer(text, "the quick brown fox jumped over the lazy dog") < 0.1
    assert cer(text, "seven purple elephants were dancing quietly") > 0.6


def test_repetition_is_a_loop_beyond_the_text():
    loop = "thank you " * 12
    assert longest_run(loop) == 12
    assert repeats("Thank you.", loop)
    assert not repeats("Thank you.", "thank you " * 3)
    # The text itself says it eleven times: hearing it eleven times is no loop.
    said = "No, " * 11
    assert not repeats(said, "no " * 11)
    assert repeats(said, "no " * 20)
