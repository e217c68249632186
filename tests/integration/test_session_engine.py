"""The streaming session on the real vLLM engine (tiny.en on CPU): a real clip streams to
good finals whose committed text only grows; non-speech gives nothing. The same session
with a fake engine: tests/unit/test_session.py.
"""

from __future__ import annotations

import numpy as np

from evaluation import clips, read_audio, wer
from streaming.events import ErrorEvent, TranscriptEvent
from streaming.session import Session, SessionOptions
from tests.datasets import TEST_DATA
from tests.unit.test_session import keys, run, silence, transcript_events


async def test_real_engine_speech_clip(engine) -> None:
    clip = next(c for c in clips(kind="speech", lang="en", base=TEST_DATA) if c.name == "openai_whisper__jfk")
    audio = np.concatenate([silence(0.5), read_audio(clip.path), silence(1.0)])
    session = Session(engine, SessionOptions(language="en"))
    events = await run(session, audio, pace=0.005)
    finals = transcript_events(events, "final")
    assert finals
    assert wer([clip.text], [session.transcript.text]) <= 0.15
    assert not [e for e in events if isinstance(e, ErrorEvent)]
    # Between partials of one utterance, committed text only grows. (The clip has a
    # pause after "Americans,": CI once compared the last partial of the first utterance
    # with the first of the second, whose committed text rightly starts empty.)
    partials = transcript_events(events, "partial")
    for a, b in zip(partials, partials[1:]):
        if a.utterance_id == b.utterance_id:
            assert keys(b.committed)[: len(keys(a.committed))] == keys(a.committed)


async def test_real_engine_no_events_on_nonspeech_clips(eval_set, engine) -> None:
    """The larger set's music, noise, hum and silence: no partial, no final, no error, on any of them."""
    nonspeech = clips(kind="nonspeech", base=eval_set)
    assert len(nonspeech) >= 20
    noisy = []
    for clip in nonspeech:
        session = Session(engine)
        events = await run(session, read_audio(clip.path))
        shown = [e for e in events if isinstance(e, (TranscriptEvent, ErrorEvent))]
        if shown:
            noisy.append((clip.name, [e.to_dict() for e in shown]))
    assert noisy == []


async def test_real_engine_finals_carry_word_times(engine) -> None:
    """LIVE_WORD_TIMES on the real engine and aligner: each final's words spell its text,
    in order, inside the final's audio and not in the silence before the speech (the
    clip starts 1.0 s into the session); partials carry none; logprobs spell it too."""
    clip = next(c for c in clips(kind="speech", lang="en", base=TEST_DATA) if 2 <= c.duration <= 5)
    audio = np.concatenate([silence(1.0), read_audio(clip.path), silence(1.0)])
    session = Session(engine, SessionOptions(language="en", word_times=True, logprobs=True))
    events = await run(session, audio, pace=0.005)
    finals = transcript_events(events, "final")
    assert finals and not [e for e in events if isinstance(e, ErrorEvent)]
    assert all(not p.words for p in transcript_events(events, "partial"))
    for final in finals:
        assert [w.word.strip() for w in final.words] == final.text.split(), final
        assert "".join(t.token for t in final.logprobs).strip() == final.text
        times = [t for w in final.words for t in (w.start, w.end)]
        assert times == sorted(times)
        assert final.start_s - 1e-3 <= times[0] and times[-1] <= final.end_s + 1e-3
        assert all(0.0 <= w.probability <= 1.0 for w in final.words)
    assert finals[0].words[0].start >= 0.9  # not in the leading second of silence
    assert wer([clip.text], [session.transcript.text]) <= 0.3
