"""Transcript: keeps finals only, exports txt, srt, vtt and json."""

from __future__ import annotations

import json

import pytest

from streaming.events import TranscriptEvent
from streaming.transcript import Transcript


def final(i: int, text: str, start: float, end: float) -> TranscriptEvent:
    return TranscriptEvent("final", i, text, "", start, end, 0.5, "en")


@pytest.fixture
def transcript() -> Transcript:
    t = Transcript()
    assert t.add(final(0, "Hello there.", 0.25, 1.5))
    assert not t.add(TranscriptEvent("partial", 1, "ignored", "", 2.0, 2.5, 0.1))
    assert not t.add(final(1, "", 2.0, 2.5))  # an utterance the guards emptied
    assert t.add(final(2, "Second line --> with <tag> & more", 61.0, 3725.125))
    return t


def test_keeps_non_empty_finals_in_order(transcript: Transcript) -> None:
    assert [e.utterance_id for e in transcript.finals] == [0, 2]
    assert transcript.text == "Hello there. Second line --> with <tag> & more"


def test_txt(transcript: Transcript) -> None:
    assert transcript.to_txt() == "Hello there.\nSecond line --> with <tag> & more\n"


def test_srt(transcript: Transcript) -> None:
    assert transcript.to_srt() == (
        "1\n00:00:00,250 --> 00:00:01,500\nHello there.\n\n"
        "2\n00:01:01,000 --> 01:02:05,125\nSecond line -> with <tag> & more\n"
    )


def test_vtt(transcript: Transcript) -> None:
    vtt = transcript.to_vtt()
    assert vtt.startswith("WEBVTT\n\n00:00:00.250 --> 00:00:01.500\nHello there.\n")
    assert "01:02:05.125\nSecond line --&gt; with &lt;tag&gt; &amp; more" in vtt


def test_json(transcript: Transcript) -> None:
    d = json.loads(transcript.to_json())
    assert d["text"] == transcript.text
    assert d["language"] == "en"
    assert [s["utterance_id"] for s in d["segments"]] == [0, 2]
    assert d["segments"][0] == {"id": 0, "utterance_id": 0, "start": 0.25, "end": 1.5, "text": "Hello there."}
    assert transcript.export("json") == transcript.to_json()
    assert transcript.export("txt") == transcript.to_txt()
    with pytest.raises(ValueError):
        transcript.export("docx")


def test_empty() -> None:
    t = Transcript()
    assert t.text == "" and t.to_txt() == "" and t.to_srt() == ""
    assert t.to_vtt() == "WEBVTT\n"
    assert json.loads(t.to_json())["segments"] == []
