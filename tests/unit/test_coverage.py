"""Coverage check (engine/coverage.py) and the retry in engine/longform.py, with a decoder that ends early."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import numpy as np
import pytest

from engine.base import SAMPLE_RATE, DecodeRequest, EngineInfo, Segment, Transcription
from engine.coverage import (
    coverage,
    gap_segment,
    has_times,
    lost_speech,
    subtract,
    too_few_words,
    uncovered,
    word_count,
)

ROOT = Path(__file__).resolve().parents[2]
EVAL = ROOT.parent / "shared" / "eval"


def test_word_count_ignores_gap_markers_and_punctuation() -> None:
    assert word_count("Press 1 to mute , or 2 .") == 6
    assert word_count(gap_segment((1.0, 3.0)).text) == 0


def test_subtract_and_coverage() -> None:
    assert subtract([(0, 10)], [(2, 3), (5, 6)]) == [(0, 2), (3, 5), (6, 10)]
    speech = [(0.0, 4.0), (6.0, 10.0)]
    assert coverage(speech, [Segment(0, 4, "a b c")]) == pytest.approx(0.5)
    assert coverage(speech, [Segment(0, 10, "a b c")]) == 1.0
    assert coverage([], []) == 1.0
    # A gap segment covers nothing: its speech was not transcribed.
    assert coverage(speech, [Segment(0, 4, "a"), gap_segment((6, 10))]) == pytest.approx(0.5)


def test_uncovered_stretches_ignore_jitter() -> None:
    speech = [(0.0, 5.0), (5.3, 9.0), (20.0, 20.6)]
    segs = [Segment(0.0, 4.8, "one two three four")]
    # 5.3-9.0 lost (the collar absorbs 4.8-5.3); 0.6 s at 20 s is under the 1 s floor.
    assert uncovered(speech, segs) == [(5.3, 9.0)]


def test_too_few_words() -> None:
    assert too_few_words("Please press one", 20.0)
    assert not too_few_words(" ".join(["word"] * 40), 20.0)
    assert not too_few_words("", 2.0)  # too little speech to judge


def test_lost_speech_with_and_without_times() -> None:
    speech = [(0.0, 10.0), (10.2, 28.0)]
    # One segment over the whole window (no inner times): judged by the word count.
    assert lost_speech("Press one now.", [Segment(0, 28, "Press one now.")], speech, 0, 28) == [(0.0, 28.0)]
    many = " ".join(["word"] * 60)
    assert lost_speech(many, [Segment(0, 28, many)], speech, 0, 28) == []
    # With times: the stretch after the last timestamp.
    segs = [Segment(0, 5, many[:100]), Segment(5, 12, many[100:])]
    assert has_times(segs, 0, 28)
    assert lost_speech(many, segs, speech, 0, 28) == [(12.5, 28.0)]


# -- the retry, with a real VAD and a decoder that ends early ------------------------------


class EarlyEndDecoder:
    """Knows the sentences of the audio; a window longer than 20 s gives only its first phrase.

    That is the failure of issue 11: end-of-text after the first sentence of a long,
    list-like window, and one segment spanning the whole window.
    """

    info = EngineInfo("fake", "fake", "cpu", multilingual=False)

    def __init__(self, sentences: list[tuple[float, float, str]], early: bool = True) -> None:
        self.sentences = sentences
        self.early = early
        self.calls = 0

    async def transcribe_window(self, request: DecodeRequest, offset: float = 0.0) -> Transcription:
        self.calls += 1
        end = offset + request.duration
        said = [t for a, b, t in self.sentences if offset <= (a + b) / 2 < end]
        if self.early and request.duration > 20 and said:
            said = [re.split(r"(?<=[.,])\s", said[0])[0]]  # the first phrase, then end-of-text
        text = " ".join(said)
        return Transcription(text, "en", request.duration, [Segment(offset, end, text)] if text else [])

    async def detect_language(self, audio, priority=0):
        return "en"


@pytest.fixture(scope="module")
def case():
    if not (EVAL / "manifest.jsonl").is_file():
        pytest.skip(f"evaluation set not found at {EVAL} (../shared/eval beside the checkout)")
    from bench.coverage import list_case

    return list_case(EVAL)


def test_list_case_layout(case) -> None:
    duration = len(case.audio) / SAMPLE_RATE
    assert 50 < duration < 65
    starts = [a for a, _, _ in case.sentences]
    assert starts == sorted(starts) and len(case.sentences) == 7


def test_early_end_is_decoded_again_and_nothing_is_lost(case) -> None:
    from engine.longform import transcribe_any
    from engine.vad import speech_regions

    decoder = EarlyEndDecoder(case.sentences)
    result = asyncio.run(transcribe_any(decoder, DecodeRequest(case.audio, language="en")))
    for _, _, sentence in case.sentences:
        assert sentence in result.text
    assert not any(s.kind == "gap" for s in result.segments)
    assert coverage(speech_regions(case.audio), result.segments, collar=0.5) == 1.0


def test_a_complete_decode_costs_no_extra_decode(case) -> None:
    from engine.longform import split_audio, transcribe_any

    decoder = EarlyEndDecoder(case.sentences, early=False)
    result = asyncio.run(transcribe_any(decoder, DecodeRequest(case.audio, language="en")))
    assert decoder.calls == len(split_audio(case.audio))
    assert result.text == case.text


class SilentDecoder(EarlyEndDecoder):
    """Gives nothing for any window that holds the list: speech that cannot be decoded."""

    async def transcribe_window(self, request: DecodeRequest, offset: float = 0.0) -> Transcription:
        result = await super().transcribe_window(request, offset)
        if offset + request.duration > 18 and offset < 44:
            return Transcription("", "en", request.duration, [])
        return result


def test_speech_that_stays_lost_is_marked_as_a_gap(case) -> None:
    from engine.longform import transcribe_any

    decoder = SilentDecoder(case.sentences, early=False)
    result = asyncio.run(transcribe_any(decoder, DecodeRequest(case.audio, language="en")))
    gaps = [s for s in result.segments if s.kind == "gap"]
    assert gaps and "[inaudible" in result.text
    assert min(g.start for g in gaps) < 20 and max(g.end for g in gaps) > 40
    assert decoder.calls <= 3 + 6  # bounded: three pieces, the list piece halved twice
