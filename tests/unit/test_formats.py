"""engine.formats: exact output for small inputs; engine.progress: the CLI's bar."""

from __future__ import annotations

import io
import json

import pytest

from engine.base import Segment, Transcription
from engine.formats import (
    format_timestamp,
    srt_timestamp,
    to_json,
    to_srt,
    to_text,
    to_vtt,
    vtt_timestamp,
)
from engine.progress import ProgressCallback, TqdmProgress, make_progress

SEGMENTS = [
    Segment(0.0, 2.5, " Hello there."),
    Segment(2.5, 62.345, "General Kenobi!"),
]


@pytest.mark.parametrize(
    "seconds,srt,vtt",
    [
        (0, "00:00:00,000", "00:00:00.000"),
        (62.345, "00:01:02,345", "00:01:02.345"),
        (59.9996, "00:01:00,000", "00:01:00.000"),  # rounding carries into the minutes
        (3599.9994, "00:59:59,999", "00:59:59.999"),
        (
            6000.0,
            "01:40:00,000",
            "01:40:00.000",
        ),  # 100 minutes are 1 h 40 min, not "100:00"
        (7384.5, "02:03:04,500", "02:03:04.500"),
        (100 * 3600 + 1.25, "100:00:01,250", "100:00:01.250"),  # hours widen past 99
        (-1.0, "00:00:00,000", "00:00:00.000"),
        (float("nan"), "00:00:00,000", "00:00:00.000"),
    ],
)
def test_timestamps(seconds, srt, vtt):
    assert srt_timestamp(seconds) == srt
    assert vtt_timestamp(seconds) == vtt
    assert format_timestamp(seconds) == vtt


def test_text():
    assert to_text(SEGMENTS) == "Hello there.\nGeneral Kenobi!\n"
    assert to_text([]) == ""


def test_srt():
    assert to_srt(SEGMENTS) == (
        "1\n00:00:00,000 --> 00:00:02,500\nHello there.\n\n2\n00:00:02,500 --> 00:01:02,345\nGeneral Kenobi!\n"
    )
    assert to_srt([]) == ""


def test_vtt():
    assert to_vtt(SEGMENTS) == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nHello there.\n\n00:00:02.500 --> 00:01:02.345\nGeneral Kenobi!\n"
    )
    assert to_vtt([]) == "WEBVTT\n"


def test_empty_segments_are_skipped_and_numbering_stays_consecutive():
    segments = [
        Segment(0, 1, "One."),
        Segment(1, 2, "   "),
        Segment(2, 3, ""),
        Segment(3, 4, "Two."),
    ]
    assert to_text(segments) == "One.\nTwo.\n"
    assert to_srt(segments) == "1\n00:00:00,000 --> 00:00:01,000\nOne.\n\n2\n00:00:03,000 --> 00:00:04,000\nTwo.\n"
    assert to_vtt(segments) == "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nOne.\n\n00:00:03.000 --> 00:00:04.000\nTwo.\n"
    assert to_text([Segment(0, 1, " ")]) == "" and to_srt([Segment(0, 1, " ")]) == ""


def test_text_cleanup_and_escaping():
    segments = [
        Segment(0, 1, "  a  line\n\n  and   another \n"),
        Segment(1, 2, "x < y & y --> z"),
    ]
    assert to_text(segments) == "a line\nand another\nx < y & y --> z\n"
    assert to_srt(segments) == (
        "1\n00:00:00,000 --> 00:00:01,000\na line\nand another\n\n2\n00:00:01,000 --> 00:00:02,000\nx < y & y -> z\n"
    )
    assert to_vtt(segments) == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\na line\nand another\n\n"
        "00:00:01.000 --> 00:00:02.000\nx &lt; y &amp; y --&gt; z\n"
    )


def test_bad_times():
    segments = [Segment(-0.5, 1.0, "early"), Segment(5.0, 4.0, "backwards")]
    assert to_srt(segments) == (
        "1\n00:00:00,000 --> 00:00:01,000\nearly\n\n2\n00:00:05,000 --> 00:00:05,000\nbackwards\n"
    )


def test_long_recording():
    segments = [
        Segment(5999.5, 6001.0, "a hundred minutes in"),
        Segment(360000.0, 360002.0, "a hundred hours in"),
    ]
    assert to_srt(segments) == (
        "1\n01:39:59,500 --> 01:40:01,000\na hundred minutes in\n\n"
        "2\n100:00:00,000 --> 100:00:02,000\na hundred hours in\n"
    )


def test_json():
    result = Transcription(
        text=" Hello there. General Kenobi!",
        language="en",
        duration=62.3456789,
        segments=[*SEGMENTS, Segment(62.345, 62.4, " ")],
        avg_logprob=-0.2,
    )
    data = to_json(result)
    assert data == {
        "text": "Hello there. General Kenobi!",
        "language": "en",
        "duration": 62.346,
        "segments": [
            {"id": 0, "start": 0.0, "end": 2.5, "text": "Hello there."},
            {"id": 1, "start": 2.5, "end": 62.345, "text": "General Kenobi!"},
        ],
    }
    assert json.loads(json.dumps(data)) == data
    assert to_json(Transcription("", None, 0.0)) == {
        "text": "",
        "language": None,
        "duration": 0.0,
        "segments": [],
    }


# -- progress ----------------------------------------------------------------------------


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_make_progress_modes():
    assert make_progress("never", file=FakeTty()) is None
    assert make_progress("auto", file=io.StringIO()) is None  # not a terminal: no bar
    assert isinstance(make_progress("auto", file=FakeTty()), TqdmProgress)
    assert isinstance(make_progress("always", file=io.StringIO()), TqdmProgress)
    with pytest.raises(ValueError):
        make_progress("sometimes")


def test_tqdm_progress_draws_and_closes():
    out = io.StringIO()
    progress = make_progress("always", file=out)
    assert isinstance(progress, ProgressCallback)
    for done in (0.0, 30.0, 61.25, 120.0):
        progress(done, 120.0)
    text = out.getvalue()
    assert "120.0/120.0 s of audio" in text and "100%" in text
    assert text.endswith("\n")  # closed once done
    progress(120.0, 120.0)  # the engine may report "done" twice: no second bar
    assert out.getvalue() == text
    empty = make_progress("always", file=io.StringIO())
    empty(0, 0)  # a zero-length job does not divide by zero
    empty.close()
