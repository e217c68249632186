"""Issue 19, live: finals carry "Speaker 1", "Speaker 2"... (LIVE_SPEAKERS), on the real
engine and voice encoder: a one-voice stream never becomes two speakers, and a second
voice gets the second label while the first voice keeps the first."""

from __future__ import annotations

import numpy as np

from evaluation import clips, read_audio
from streaming.events import ErrorEvent
from streaming.session import Session, SessionOptions
from tests.datasets import TEST_DATA
from tests.unit.test_session import run, silence, transcript_events


def _clip(name: str) -> np.ndarray:
    return read_audio(next(c.path for c in clips(kind="speech", lang="en", base=TEST_DATA) if c.name == name))


async def test_one_voice_stream_stays_one_speaker(engine) -> None:
    """Eight LJ Speech clips, 1 s apart: eight finals or so, every one 'Speaker 1'."""
    lj = [c for c in clips(kind="speech", lang="en", base=TEST_DATA) if c.name.startswith("ljspeech")]
    audio = np.concatenate([part for c in lj for part in (read_audio(c.path), silence(1.0))])
    session = Session(engine, SessionOptions(language="en", speakers=True))
    events = await run(session, audio, pace=0.005)
    finals = transcript_events(events, "final")
    assert len(finals) >= 4 and not [e for e in events if isinstance(e, ErrorEvent)]
    assert {f.speaker for f in finals} == {"Speaker 1"}, [(f.speaker, f.text) for f in finals]


async def test_second_voice_gets_the_second_label(engine) -> None:
    """The reader, JFK, the reader again: the reader's finals 'Speaker 1', JFK's 'Speaker 2'."""
    parts = [("lj", _clip("ljspeech_coqui__LJ001-0001")), ("jfk", _clip("openai_whisper__jfk")), ("lj", _clip("ljspeech_coqui__LJ001-0003"))]
    audio, spans, t = [], [], 0.0
    for voice, clip in parts:
        audio += [clip, silence(1.0)]
        spans.append((t, t + len(clip) / 16000, voice))
        t += len(clip) / 16000 + 1.0
    session = Session(engine, SessionOptions(language="en", speakers=True))
    events = await run(session, np.concatenate(audio), pace=0.005)
    finals = transcript_events(events, "final")
    voices = {}
    for f in finals:
        middle = (f.start_s + f.end_s) / 2
        voice = min(spans, key=lambda s: 0 if s[0] <= middle <= s[1] else min(abs(middle - s[0]), abs(middle - s[1])))[2]
        voices.setdefault(voice, set()).add(f.speaker)
    assert voices == {"lj": {"Speaker 1"}, "jfk": {"Speaker 2"}}, [(f.start_s, f.speaker, f.text) for f in finals]
