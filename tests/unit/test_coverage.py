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
    redo_from,
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


def test_redo_starts_in_the_pause_before_speech_lost_after_the_last_segment() -> None:
    """Issue 21: only the stretch after the pause is decoded again, not both halves."""
    speech = [(10.0, 14.0), (14.3, 17.0), (18.0, 28.0)]
    segs = [Segment(10.0, 14.1, "One two three."), Segment(14.1, 16.9, "Four five six.")]
    lost = lost_speech("One two three. Four five six.", segs, speech, 10.0, 28.5)
    assert lost == [(18.0, 28.0)]
    assert redo_from(segs, speech, lost, 10.0) == pytest.approx(17.5)  # the middle of 17.0-18.0
    # A segment end a little late (into the next speech's first 0.3 s) still cuts in the pause.
    late = [segs[0], Segment(14.1, 18.2, "Four five six.")]
    assert redo_from(late, speech, [(18.7, 28.0)], 10.0) == pytest.approx(17.5)
    # Speech lost between two segments: no tail to decode alone (the halves do it).
    inner = [segs[0], Segment(25.0, 28.0, "Nine ten.")]
    assert redo_from(inner, speech, [(14.6, 17.0), (18.0, 24.5)], 10.0) is None
    # The lost speech runs on from the last segment's without a pause to cut in.
    assert redo_from([Segment(10.0, 15.0, "One two three.")], speech, [(15.5, 28.0)], 10.0) is None
    # Nothing before the cut would be kept.
    assert redo_from([Segment(10.0, 10.4, "Oh.")], [(10.0, 10.3), (10.8, 20.0)], [(10.9, 20.0)], 10.0) is None
    # No segment with words: nothing to keep.
    assert redo_from([], speech, [(10.0, 28.0)], 10.0) is None


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
    # Bounded: each piece that holds the list is halved twice (1 + 2 + 4 decodes), the others once.
    from engine.longform import split_audio

    pieces = split_audio(case.audio)
    holding = sum(1 for start, piece in pieces if start / SAMPLE_RATE < 44 and (start + len(piece)) / SAMPLE_RATE > 18)
    assert decoder.calls <= len(pieces) + 6 * holding


def test_a_quiet_speaker_is_not_cut_away_as_silence() -> None:
    """Issue 21: a quiet speaker (FLEURS clips peak at -49 dBFS) beside a loud one was
    trimmed off its piece (sound was 'within 40 dB of the piece's peak') or its piece
    skipped (mean below -55 dBFS): 3 runs of words lost on the untuned file. Sound is now
    any frame above -55 dBFS, the rule `is_silent` already applied to short requests."""
    from engine.longform import SplitOptions, split_audio

    rng = np.random.default_rng(0)

    def burst(seconds: float, dbfs: float) -> np.ndarray:
        return (rng.standard_normal(int(seconds * SAMPLE_RATE)) * 10 ** (dbfs / 20)).astype(np.float32)

    def pause(seconds: float) -> np.ndarray:
        return burst(seconds, -75.0)

    loud, quiet = (-10.0, -53.0)
    layout = [pause(1), burst(8, loud), pause(1), burst(8, quiet), pause(1), burst(8, loud), pause(1.2),
              burst(9, quiet), pause(1.0), burst(3, quiet), pause(1.2), burst(10, loud), pause(1)]
    audio = np.concatenate(layout)
    quiet_spans, t = [], 0.0
    for part, dbfs in zip(layout, [None, loud, None, quiet, None, loud, None, quiet, None, quiet, None, loud, None]):
        if dbfs == quiet:
            quiet_spans.append((t, t + len(part) / SAMPLE_RATE))
        t += len(part) / SAMPLE_RATE

    def kept(options: SplitOptions) -> float:
        pieces = [(s / SAMPLE_RATE, (s + len(p)) / SAMPLE_RATE) for s, p in split_audio(audio, options)]
        inside = sum(max(0.0, min(b, d) - max(a, c)) for a, b in quiet_spans for c, d in pieces)
        return inside / sum(b - a for a, b in quiet_spans)

    options = SplitOptions(max_chunk_s=19.0, min_chunk_s=8.0)
    assert kept(options) == pytest.approx(1.0)
    assert kept(SplitOptions(max_chunk_s=19.0, min_chunk_s=8.0, peak_relative_db=40.0)) < 0.9  # the old rule
