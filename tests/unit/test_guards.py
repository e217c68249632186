"""Hallucination and loop guards (pure functions)."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import pytest

from engine.quality import LoopRule
from streaming.guards import (
    GuardOptions,
    compression_ratio,
    drop_reason,
    is_repetition_loop,
    normalize_text,
    strip_repetition,
)

from tests.datasets import TEST_DATA, needs_eval_set, require_eval_set


def _manifest(base: Path) -> list[dict]:
    return [
        json.loads(line) for line in (base / "manifest.jsonl").read_text().splitlines()
    ]


def _reference_texts(base: Path = TEST_DATA) -> list[str]:
    return [
        m["text"] for m in _manifest(base) if m["kind"] == "speech" and m["text"].strip()
    ]


# --- phantom phrases -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Thank you.",
        " thank you",
        "THANK YOU!",
        "Thank you. Thank you.",
        "Thanks for watching!",
        "Thank you for watching.",
        "you",
        " You",
        "Bye.",
        "[BLANK_AUDIO]",
        "(silence)",
        "[Music]",
        "[MUSIC PLAYING]",
        "(upbeat music)",
        "*applause*",
        "♪",
        "♪ ♪ ♪",
        "♪♪",
        "Subtitles by the Amara.org community",
        "Subtitles by Steve",
        "Transcribed by ESO, translated by —",
        "Sous-titres réalisés par la communauté d'Amara.org",
        "Untertitel der Amara.org-Community",
        "ご視聴ありがとうございました",
    ],
)
def test_phantoms_are_recognised(text) -> None:
    # Without evidence of speech, and with it: tags and credits go whatever the evidence.
    assert drop_reason(text) in ("phantom", "non_speech_tag", "credits")
    assert drop_reason(text, avg_logprob=-0.9, speech_ratio=0.3) in ("phantom", "non_speech_tag", "credits")


@pytest.mark.parametrize(
    "text",
    [
        "Thank you for coming to the meeting today.",
        "You should see this.",
        "The book was translated by her brother.",
        "So the plan is to ship it on Monday.",
        "",
    ],
)
def test_ordinary_sentences_are_not_phantoms(text) -> None:
    assert drop_reason(text) in (None, "empty")


@pytest.mark.parametrize(
    ("which", "at_least"), [("tests/data", 10), pytest.param("eval set", 200, marks=needs_eval_set)]
)
def test_no_reference_transcript_is_a_phantom_or_dropped(which, at_least) -> None:
    """Real transcripts (the larger set: 222 in 5 languages), with good decoder signals."""
    refs = _reference_texts(TEST_DATA if which == "tests/data" else require_eval_set())
    assert len(refs) >= at_least
    assert [t for t in refs if drop_reason(t) in ("phantom", "non_speech_tag", "credits")] == []
    assert [t for t in refs if drop_reason(t, avg_logprob=-0.3, speech_ratio=0.8) is not None] == []


def test_a_real_thank_you_survives_with_clear_speech() -> None:
    assert drop_reason("Thank you.", avg_logprob=-0.2, speech_ratio=0.8) is None
    assert drop_reason("Thank you.", avg_logprob=-0.2, speech_ratio=0.3) == "phantom"
    assert drop_reason("Thank you.", avg_logprob=-0.9, speech_ratio=0.8) == "phantom"
    assert drop_reason("Thank you.") == "phantom"  # no evidence at all
    # Tags and credits go whatever the evidence.
    assert (
        drop_reason("[Music]", avg_logprob=-0.1, speech_ratio=1.0) == "non_speech_tag"
    )
    assert (
        drop_reason("Subtitles by the Amara.org community", -0.1, None, 1.0)
        == "credits"
    )


def test_normalize_text() -> None:
    assert normalize_text("  Thank-you!!  ") == "thank you"
    assert normalize_text("Don’t stop") == "dont stop"
    assert normalize_text("[BLANK_AUDIO]") == "blank audio"
    assert normalize_text("♪ ... ♪") == ""


# --- compression ratio and loops ---------------------------------------------------------


def test_compression_ratio_is_whispers() -> None:
    text = "the quick brown fox jumps over the lazy dog " * 3
    data = text.encode("utf-8")
    assert compression_ratio(text) == len(data) / len(zlib.compress(data))
    assert compression_ratio("") == 0.0
    assert compression_ratio("Hello, how are you today?") < 1.5
    assert compression_ratio("I'm sorry. " * 30) > 2.4


@pytest.mark.parametrize(
    "text",
    [
        "I'm sorry. " * 30,
        ". . . . . . . . . .",
        "and then and then and then and then and then",
        "the the the the the the",
        "We went to the store. We went to the store. We went to the store. We went to the store.",
        "So I said that we should go and then we should go and then we should go and then we should go and then",
        "ありがとうございますありがとうございますありがとうございますありがとうございます",
    ],
)
def test_loops_are_detected(text) -> None:
    assert is_repetition_loop(text)
    # (Bare punctuation is "empty" before it is a loop.)
    assert drop_reason(text, avg_logprob=-0.2, speech_ratio=0.9) in (
        "repetition",
        "empty",
    )


@pytest.mark.parametrize(
    "text",
    [
        "no no no",
        "very very good",
        "Thank you, thank you, thank you.",
        "The quick brown fox jumps over the lazy dog.",
        "It is what it is.",
        "that that is is that that is not is not",
    ],
)
def test_ordinary_repetition_is_not_a_loop(text) -> None:
    assert not is_repetition_loop(text)


def _decode_sized_chunks(segments_json: Path) -> list[str]:
    """The reference text of a long-form file in pieces of about 25 s (what one decode sees)."""
    segments = json.loads(segments_json.read_text())["segments"]
    chunks, current, start = [], [], None
    for s in (s for s in segments if s["kind"] == "speech"):
        if start is not None and s["end"] - start > 25 and current:
            chunks.append(" ".join(current))
            current, start = [], None
        if start is None:
            start = s["start"]
        current.append(s["text"])
    chunks.append(" ".join(current))
    return chunks


def test_no_reference_transcript_is_a_loop() -> None:
    refs = _reference_texts()
    assert len(refs) >= 10
    assert [t for t in refs if is_repetition_loop(t)] == []
    # Nor is any 25 s worth of the long-form reference text (what one decode sees).
    chunks = _decode_sized_chunks(TEST_DATA / "longform" / "mixed_short.segments.json")
    assert len(chunks) >= 4
    assert max(compression_ratio(c) for c in chunks) < 2.4
    assert [c for c in chunks if is_repetition_loop(c)] == []


@needs_eval_set
def test_no_reference_transcript_of_the_larger_set_is_a_loop() -> None:
    base = require_eval_set()
    refs = _reference_texts(base)
    assert [t for t in refs if is_repetition_loop(t)] == []
    chunks = _decode_sized_chunks(base / "longform" / "mixed_en_e2e_dev_visible.segments.json")
    assert len(chunks) > 30
    assert max(compression_ratio(c) for c in chunks) < 2.4
    assert [c for c in chunks if is_repetition_loop(c)] == []


@pytest.mark.parametrize(
    "text,expected",
    [
        (
            "I said no. And then and then and then and then and then",
            "I said no. And then",
        ),
        (
            "Hello world. Hello world. Hello world. Hello world. Hello wor",
            "Hello world.",
        ),
        ("a b c a b c a b c a b c a", "a b c"),
        ("It was fine. . . . . . . .", "It was fine."),
        (". . . . . . . .", ""),
        ("We met at noon. " + "I'm sorry. " * 10, "We met at noon. I'm sorry."),
        ("hahahahahahahahahaha", "ha"),
        (
            "ありがとうございますありがとうございますありがとうございますありがとうございます",
            "ありがとうございます",
        ),
    ],
)
def test_strip_repetition_cuts_a_trailing_loop(text, expected) -> None:
    assert strip_repetition(text) == expected
    assert not is_repetition_loop(strip_repetition(text))


@pytest.mark.parametrize(
    "text",
    [
        "The quick brown fox jumps over the lazy dog.",
        "no no no",
        "",
        "Thank you, thank you, thank you.",
    ],
)
def test_strip_repetition_leaves_ordinary_text_alone(text) -> None:
    assert strip_repetition(text) == text


def test_strip_repetition_keeps_real_transcripts() -> None:
    refs = _reference_texts()
    assert [t for t in refs if strip_repetition(t) != t] == []


# --- the drop decision ---------------------------------------------------------------


def test_drop_reasons() -> None:
    assert drop_reason("") == "empty"
    assert drop_reason("  ...  ") == "empty"
    assert drop_reason("(silence)") == "non_speech_tag"
    assert drop_reason("Hello there.", compression_ratio=3.1) == "repetition"
    assert drop_reason("Hello there.", speech_ratio=0.05) == "no_speech"
    assert (
        drop_reason("Hello there.", avg_logprob=-1.2, no_speech_prob=0.8) == "no_speech"
    )
    assert drop_reason("Hello there.", avg_logprob=-1.2, no_speech_prob=0.1) is None
    assert drop_reason("Hello there.", avg_logprob=-2.5) == "low_confidence"
    assert (
        drop_reason("Hello there.", avg_logprob=-1.2, speech_ratio=0.3)
        == "low_confidence"
    )
    assert drop_reason("Hello there.", avg_logprob=-1.2, speech_ratio=0.9) is None
    assert drop_reason("Hello there.") is None  # no signals (remote engine): keep


def test_options_change_the_decision() -> None:
    strict = GuardOptions(loop=LoopRule(max_compression_ratio=1.2))
    text = "the plan is the plan and the plan is good"
    assert drop_reason(text) is None
    assert drop_reason(text, options=strict) == "repetition"
    relaxed = GuardOptions(phantom_keep_speech_ratio=0.2)
    assert drop_reason("Thank you.", avg_logprob=-0.2, speech_ratio=0.3) == "phantom"
    assert drop_reason("Thank you.", avg_logprob=-0.2, speech_ratio=0.3, options=relaxed) is None
