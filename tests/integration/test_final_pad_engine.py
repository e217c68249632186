"""Issue 20, time to final: the speculative final starts once `SessionOptions.pad_after_ms`
of audio after the speech has arrived (150 ms), so a shorter pad is a floor off every
final's wait. What a shorter pad must not cost is words: the encoder window adds >= 1 s
of silence after the audio anyway. Short clips (1.5-4.5 s, where the pad is the largest
share of a final's wait) stream to the same words with a 50 ms pad as with the default."""

from __future__ import annotations

import numpy as np

from evaluation import clips, normalize, read_audio, wer
from streaming.events import ErrorEvent
from streaming.session import Session, SessionOptions
from tests.datasets import TEST_DATA
from tests.unit.test_session import run, silence, transcript_events


async def _finals(engine, audio: np.ndarray, pad_after_ms: int) -> list[str]:
    session = Session(engine, SessionOptions(language="en", pad_after_ms=pad_after_ms))
    events = await run(session, audio, pace=0.005)
    assert not [e for e in events if isinstance(e, ErrorEvent)]
    return [f.text for f in transcript_events(events, "final")]


async def test_short_pad_after_speech_loses_no_word(engine) -> None:
    short = [c for c in clips(kind="speech", lang="en", base=TEST_DATA) if 1.5 <= c.duration <= 4.5]
    assert len(short) >= 5
    parts = [silence(0.5)]
    for c in short:
        parts += [read_audio(c.path), silence(1.0)]
    audio = np.concatenate(parts)
    reference = " ".join(c.text for c in short)
    ours, before = await _finals(engine, audio, 50), await _finals(engine, audio, SessionOptions().pad_after_ms)
    assert len(ours) == len(short)  # one final per utterance, none dropped
    assert normalize(" ".join(ours)) == normalize(" ".join(before))
    assert wer([reference], [" ".join(ours)]) <= 0.1
