"""The loop rules of engine.quality: when a running decode is stopped as stuck, and how
many copies of a phrase end a text."""

from __future__ import annotations

import pytest

from engine.quality import repeated_tail, stuck_in_loop, words_of

PIN = "Please enter the conference PIN number."


def test_words_ignore_case_and_edge_punctuation() -> None:
    assert words_of('Please, enter the "PIN" number.') == ["please", "enter", "the", "pin", "number"]


@pytest.mark.parametrize(
    ("text", "copies"),
    [
        ("to lock or unlock the conference", 1),
        (f"{PIN} {PIN}", 2),
        (f"{PIN} {PIN} {PIN}", 3),
        # Caught mid-sentence: the copies are rotations of the sentence.
        (f"{PIN} {PIN} {PIN} Please enter the", 3),
        # One- and two-word repeats are speech, not loops.
        ("no no no no no no", 1),
        ("I'm sorry I'm sorry I'm sorry", 1),
    ],
)
def test_copies_of_the_ending_phrase(text: str, copies: int) -> None:
    assert repeated_tail(words_of(text)) == copies


def test_a_decode_is_stuck_at_three_copies_more_than_its_audio_holds() -> None:
    # The incident's shape: tiny.en restarting one 2.6 s prompt in a 10 s window.
    assert not stuck_in_loop(f"{PIN} {PIN}", 2.6)
    assert stuck_in_loop(f"{PIN} {PIN} {PIN}", 2.6)
    assert stuck_in_loop(f"{PIN} {PIN} {PIN} Please enter", 2.6)


def test_a_phrase_said_three_times_is_speech_when_the_audio_holds_it() -> None:
    assert not stuck_in_loop(f"{PIN} {PIN} {PIN}", 9.0)
    assert not stuck_in_loop("Thank you very much, thank you very much. See you next week.", 4.0)


def test_four_copies_are_a_loop_whatever_the_audio() -> None:
    assert stuck_in_loop(f"{PIN} {PIN} {PIN} {PIN}", 25.0)


def test_one_word_repeated_past_what_the_audio_holds_is_stuck() -> None:
    # The first partial of an utterance: 0.5 s of "Printing" in a 10 s window.
    assert stuck_in_loop("printing printing printing printing printing printing", 0.52)
    assert stuck_in_loop("Pr- Pr- Pr- Pr- Pr- Pr- Pr-", 0.52)
    assert repeated_tail(words_of("printing printing printing"), min_words=1) == 3


def test_a_word_said_over_is_speech_while_the_audio_holds_it() -> None:
    assert not stuck_in_loop("no no no no no", 1.0)
    assert not stuck_in_loop("yeah yeah yeah yeah yeah yeah", 2.0)
    assert not stuck_in_loop("printing printing printing printing printing printing", 2.0)


def test_phrases_longer_than_the_look_back_are_not_searched_while_decoding() -> None:
    long_sentence = " ".join(f"w{i}" for i in range(40))
    assert not stuck_in_loop(" ".join([long_sentence] * 4), 1.0)
    assert repeated_tail(words_of(" ".join([long_sentence] * 4))) == 4


# -- when a short encoder window's decode is redone on the full window (VllmEngine._doubtful) --


def _result(text: str, avg_logprob: float | None):
    from engine.base import Transcription

    return Transcription(text=text, language="en", duration=3.0, avg_logprob=avg_logprob)


def test_an_unsure_decode_is_doubtful() -> None:
    import numpy as np

    from engine.base import DecodeRequest
    from engine.vllm_engine import VllmEngine

    request = DecodeRequest(np.zeros(48_000, np.float32))
    # A bird's whistle in a 10 s window, seen in the bench (the full window says "[Squeaking]").
    assert VllmEngine._doubtful(_result("I'm so...", -2.24), False, request)
    assert not VllmEngine._doubtful(_result("to lock or unlock the conference", -0.3), False, request)
    assert not VllmEngine._doubtful(_result("text from a remote engine", None), False, request)


def test_a_loop_is_doubtful() -> None:
    import numpy as np

    from engine.base import DecodeRequest
    from engine.vllm_engine import VllmEngine

    request = DecodeRequest(np.zeros(48_000, np.float32))
    assert VllmEngine._doubtful(_result(f"{PIN} {PIN} {PIN}", -0.1), True, request)
    assert VllmEngine._doubtful(_result(f"{PIN} {PIN}", -0.1), False, request)


def test_the_guards_loop_rules_are_the_engines() -> None:
    """One module decides what a loop is (issue 17): the streaming guards call
    engine.quality's finder with their thresholds, CJK included."""
    from engine.quality import has_loop, strip_loop
    from streaming.guards import is_repetition_loop, strip_repetition

    cjk = "我们今天讨论" + "我们今天讨论" * 6
    words = "I said no. And then and then and then and then and then"
    assert has_loop(cjk) and is_repetition_loop(cjk)
    assert strip_loop(words) == strip_repetition(words) == "I said no. And then"
    assert strip_loop(cjk) == strip_repetition(cjk) == "我们今天讨论"
    assert not has_loop("thank you very much, thank you very much")
