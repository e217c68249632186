"""LocalAgreement-2: committed text only grows; tentative text follows the last hypothesis."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from streaming.stabilize import LocalAgreement, LocalAgreementOptions, normalize_word

from tests.datasets import TEST_DATA, needs_eval_set, require_eval_set


def test_first_hypothesis_is_all_tentative() -> None:
    la = LocalAgreement()
    assert la.update("Hello world") == ("", "Hello world")


def test_agreed_prefix_is_committed() -> None:
    la = LocalAgreement()
    la.update("the cat sat")
    assert la.update("the cat sat on the") == ("the cat sat", "on the")
    assert la.update("the cat sat on the mat") == ("the cat sat on the", "mat")


def test_disagreeing_tail_stays_tentative() -> None:
    la = LocalAgreement()
    la.update("I scream")
    assert la.update("ice cream is") == ("", "ice cream is")
    assert la.update("ice cream is cold") == ("ice cream is", "cold")


def test_comparison_ignores_case_and_punctuation_but_keeps_words() -> None:
    la = LocalAgreement()
    la.update("hello world how")
    committed, tentative = la.update("Hello, World! How are")
    assert committed == "Hello, World! How"
    assert tentative == "are"


def test_committed_text_never_changes_even_if_the_model_revises_it() -> None:
    la = LocalAgreement()
    la.update("the cat sat on")
    la.update("the cat sat on the")
    assert la.committed == "the cat sat on"
    # The model now rewrites an early word; the committed text stays, and the tail
    # is aligned so no word is repeated or lost.
    # ("the" after the committed words was in both of the last two hypotheses.)
    assert la.update("a cat sat on the mat") == ("the cat sat on the", "mat")
    assert la.update("a cat sat on the mat today") == (
        "the cat sat on the mat",
        "today",
    )


def test_hypothesis_shorter_than_committed() -> None:
    la = LocalAgreement()
    la.update("one two three four")
    la.update("one two three four five")
    assert la.update("one two three") == ("one two three four", "")
    assert la.update("one two three four five six") == (
        "one two three four",
        "five six",
    )


def test_inserted_word_inside_committed_text_is_not_repeated() -> None:
    la = LocalAgreement()
    la.update("hello world")
    la.update("hello world how")
    assert la.update("hello there world how are you") == ("hello world how", "are you")


def test_finalize_returns_final_text_and_resets() -> None:
    la = LocalAgreement()
    la.update("the quick brown")
    la.update("the quick brown fox")
    assert la.finalize("the quick brown fox jumps.") == "the quick brown fox jumps."
    assert la.committed == "" and la.tentative == ""
    assert la.update("next") == ("", "next")  # a fresh utterance


def test_finalize_keeps_committed_words_by_default() -> None:
    la = LocalAgreement()
    la.update("the cat sat on")
    la.update("the cat sat on the")
    assert la.finalize("a cat sat on the mat.") == "the cat sat on the mat."
    la = LocalAgreement(LocalAgreementOptions(keep_committed_on_finalize=False))
    la.update("the cat sat on")
    la.update("the cat sat on the")
    assert la.finalize("a cat sat on the mat.") == "a cat sat on the mat."


def test_finalize_without_a_final_decode_promotes_the_last_partial() -> None:
    la = LocalAgreement()
    la.update("good morning every")
    la.update("good morning everyone here")
    assert la.finalize() == "good morning everyone here"


def test_local_agreement_3_needs_three_hypotheses() -> None:
    la = LocalAgreement(LocalAgreementOptions(n=3))
    la.update("a b c")
    assert la.update("a b c d") == ("", "a b c d")
    assert la.update("a b x d") == ("a b", "x d")
    with pytest.raises(ValueError):
        LocalAgreementOptions(n=1)


def test_empty_hypotheses() -> None:
    la = LocalAgreement()
    assert la.update("") == ("", "")
    assert la.update("   ") == ("", "")
    assert la.finalize("") == ""


def test_normalize_word() -> None:
    assert normalize_word("Hello,") == normalize_word("hello") == "hello"
    assert normalize_word("don’t") == normalize_word("don't")
    assert (
        normalize_word("...") == "..."
    )  # punctuation-only words only match themselves
    assert normalize_word("Straße") == normalize_word("STRASSE")


def _references(base: Path = TEST_DATA) -> list[str]:
    lines = (base / "manifest.jsonl").read_text().splitlines()
    return [
        m["text"]
        for m in map(json.loads, lines)
        if m["kind"] == "speech" and len(m["text"].split()) >= 6
    ]


@pytest.mark.parametrize(("which", "at_least"), [("tests/data", 10), pytest.param("eval set", 100, marks=needs_eval_set)])
def test_simulated_partials_on_real_transcripts(which, at_least) -> None:
    """Partials that grow word by word, with the last word often cut or misheard: the
    committed text only grows, is always a prefix of the truth, and the final is exact."""
    rng = random.Random(0)
    refs = _references(TEST_DATA if which == "tests/data" else require_eval_set())
    assert len(refs) >= at_least
    for ref in refs:
        words = ref.split()
        la = LocalAgreement()
        prev = ""
        for n in range(1, len(words) + 1, rng.choice([1, 1, 2])):
            hyp = words[:n]
            if rng.random() < 0.5:  # a word cut mid-way, or a wrong guess
                hyp = hyp[:-1] + [hyp[-1][: max(1, len(hyp[-1]) // 2)] + "-"]
            committed, _tentative = la.update(" ".join(hyp))
            assert committed.startswith(prev)
            assert ref.startswith(committed)
            prev = committed
        assert la.finalize(ref) == ref
