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


async def test_two_voices_in_one_utterance_are_cut_at_their_words(engine) -> None:
    """The reader, then a man's voice 0.05 s later (one utterance: no pause of 0.5 s), then
    the reader alone after a pause. With word times on, the first final's words carry
    both labels, cut where the voice changes; the page and the exports show two parts."""
    from bench.coverage import trimmed
    from engine.speakers.parts import speaker_parts

    reader = trimmed(_clip("ljspeech_coqui__LJ001-0004"))
    man = trimmed(_clip("cmu_arctic__awb_arctic_a0007"))
    change_s = 1.0 + len(reader) / 16000 + 0.025  # the middle of the 0.05 s gap
    audio = np.concatenate([silence(1.0), reader, silence(0.05), man, silence(1.5), trimmed(_clip("ljspeech_coqui__LJ001-0006")), silence(1.0)])
    session = Session(engine, SessionOptions(language="en", speakers=True, word_times=True))
    events = await run(session, audio, pace=0.005)
    finals = transcript_events(events, "final")
    assert not [e for e in events if isinstance(e, ErrorEvent)]
    first = finals[0]
    assert first.start_s < change_s < first.end_s, [(f.start_s, f.end_s, f.text) for f in finals]  # one utterance holds both
    who = [(w.word, w.start, w.speaker) for w in first.words]
    assert {w.speaker for w in first.words} == {"Speaker 1", "Speaker 2"}, (first.speaker, who)
    assert first.speaker == "Speaker 1"
    # Every word well before the change is the reader's, every word well after it the man's.
    assert all(w.speaker == "Speaker 1" for w in first.words if w.end < change_s - 0.5), who
    assert all(w.speaker == "Speaker 2" for w in first.words if w.start > change_s + 0.5), who
    parts = speaker_parts(first.start_s, first.end_s, first.text, first.speaker, first.words)
    assert [p.speaker for p in parts] == ["Speaker 1", "Speaker 2"], who
    # The reader heard again later keeps her label.
    later = [f for f in finals[1:] if f.start_s > change_s + 3]
    assert later and {f.speaker for f in later} == {"Speaker 1"}, [(f.speaker, f.text) for f in later]
