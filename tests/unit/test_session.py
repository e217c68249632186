"""Session: frames in, partial/final/status/error events out.

The tests drive a real VAD and segmenter on real speech (tests/data) with a fake engine
(instant, scriptable: failures, phantoms, loops); the same session on the real vLLM engine:
tests/integration/test_session_engine.py.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import soxr

from evaluation import normalize, read_audio
from engine.base import Transcription
from streaming.events import ErrorEvent, StatusEvent, TranscriptEvent
from streaming.guards import is_repetition_loop
from streaming.harness import to_frames
from streaming.session import Session, SessionOptions, SessionStats
from streaming.stabilize import normalize_word
from streaming.turns import eagerness_of
from tests.datasets import TEST_DATA
from tests.fakes import FakeEngine

SR = 16_000
def clip_audio(name: str) -> np.ndarray:
    return read_audio(TEST_DATA / "clips" / f"{name}.flac")


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SR), dtype=np.float32)


@pytest.fixture(scope="module")
def one_utterance() -> np.ndarray:
    return np.concatenate([silence(0.8), clip_audio("cmu_arctic__awb_arctic_a0007"), silence(1.2)])


@pytest.fixture(scope="module")
def two_utterances() -> np.ndarray:
    return np.concatenate(
        [
            silence(0.5),
            clip_audio("cmu_arctic__cmu_arctic_us_aew_a0001"),
            silence(1.5),
            clip_audio("cmu_arctic__slt_arctic_a0009"),
            silence(1.2),
        ]
    )


async def run(session: Session, audio: np.ndarray, *, pace: float = 0.0, frames=None, rate: int = 48_000) -> list:
    events: list = []

    async def collect() -> None:
        async for ev in session.events():
            events.append(ev)

    consumer = asyncio.ensure_future(collect())
    for frame in frames if frames is not None else to_frames(audio):
        session.feed(frame, rate)
        await asyncio.sleep(pace)
    await session.finish()
    await asyncio.wait_for(consumer, 30)
    return events


def transcript_events(events: list, kind: str | None = None) -> list[TranscriptEvent]:
    return [e for e in events if isinstance(e, TranscriptEvent) and (kind is None or e.type == kind)]


def keys(text: str) -> list[str]:
    return [normalize_word(w) for w in text.split()]


# -- options ---------------------------------------------------------------------------


def test_options_from_settings() -> None:
    from settings import Settings

    s = Settings.from_env()
    s.min_silence_ms, s.partial_interval_s, s.vad_threshold, s.language = 300, 0.9, 0.6, "de"
    o = SessionOptions.from_settings(s)
    assert (o.min_silence_ms, o.partial_interval_s, o.vad_threshold, o.language) == (300, 0.9, 0.6, "de")
    s.language = ""
    assert SessionOptions.from_settings(s).language is None
    # Semantic turns (the default): MIN_SILENCE_MS gives way to the eagerness' fallback.
    assert o.turn_detection == "semantic"
    assert o.segmenter_options().min_silence_ms == eagerness_of("auto").max_silence_ms
    s.turn_detection = "silence"
    seg = SessionOptions.from_settings(s).segmenter_options()
    assert seg.min_silence_ms == 300 and seg.start_threshold == 0.6 and seg.end_threshold < 0.6


# -- events ----------------------------------------------------------------------------


async def test_partials_then_one_final(one_utterance) -> None:
    engine = FakeEngine()
    session = Session(engine)
    engine.session = session
    events = await run(session, one_utterance, pace=0.002)
    partials, finals = transcript_events(events, "partial"), transcript_events(events, "final")
    assert len(finals) == 1 and len(partials) >= 2
    assert all(p.utterance_id == finals[0].utterance_id for p in partials)
    # Committed text only ever grows; tentative text follows it.
    for a, b in zip(partials, partials[1:]):
        assert keys(b.committed)[: len(keys(a.committed))] == keys(a.committed)
    assert any(p.committed for p in partials)
    final = finals[0]
    assert final.tentative == "" and keys(final.text)[: len(keys(partials[-1].committed))] == keys(partials[-1].committed)
    assert 0.6 <= final.start_s <= 1.4 and 4.0 <= final.end_s <= 5.0  # the clip starts with a pause
    assert all(e.latency_s >= 0 for e in partials + finals)
    assert session.transcript.finals == [final]
    assert session.stats.finals == 1 and session.stats.partials == len(partials)
    assert session.stats.revisions == 0
    assert any(isinstance(e, StatusEvent) for e in events)
    assert events.index(final) > max(events.index(p) for p in partials)


async def test_at_most_one_partial_in_flight(one_utterance) -> None:
    engine = FakeEngine(delay=0.15)
    session = Session(engine, SessionOptions(partial_interval_s=0.2))
    engine.session = session
    events = await run(session, one_utterance, pace=0.004)
    # One partial plus, near the end, the speculative final: never more.
    assert engine.max_active <= 2
    assert len(transcript_events(events, "final")) == 1


async def test_two_utterances_in_order(two_utterances) -> None:
    engine = FakeEngine()
    session = Session(engine)
    engine.session = session
    events = await run(session, two_utterances, pace=0.002)
    finals = transcript_events(events, "final")
    assert [f.utterance_id for f in finals] == [0, 1]
    assert finals[0].end_s < finals[1].start_s
    # After a real pause, no prompt (it costs accuracy with small models).
    assert all(c["prompt"] is None for c in engine.calls)
    assert session.transcript.text == f"{finals[0].text} {finals[1].text}"


async def test_continuation_of_a_forced_cut_is_prompted(one_utterance) -> None:
    engine = FakeEngine()
    opts = SessionOptions(max_utterance_s=2.0, long_utterance_s=None)
    session = Session(engine, opts)
    engine.session = session
    events = await run(session, one_utterance, pace=0.002)
    finals = transcript_events(events, "final")
    assert len(finals) >= 2 and finals[0].end_s == finals[1].start_s  # cut inside speech
    prompted = [c for c in engine.calls if c["prompt"]]
    assert prompted and prompted[0]["prompt"] == finals[0].text


async def test_no_prompt_option(two_utterances) -> None:
    engine = FakeEngine()
    events = await run(Session(engine, SessionOptions(use_prompt=False)), two_utterances)
    assert len(transcript_events(events, "final")) == 2
    assert all(c["prompt"] is None for c in engine.calls)


async def test_speculative_final_starts_before_the_silence_is_over(one_utterance) -> None:
    engine = FakeEngine()
    opts = SessionOptions(max_partial_interval_s=0)  # no partials: only final decodes
    session = Session(engine, opts)
    engine.session = session
    events = await run(session, one_utterance, pace=0.001)
    (final,) = transcript_events(events, "final")
    assert len(engine.calls) == 1  # the speculative decode became the final
    # It started before min_silence of silence had been received.
    assert engine.calls[0]["received_s"] < final.end_s - 0.15 + opts.min_silence_ms / 1000
    assert engine.calls[0]["dur"] == pytest.approx(final.end_s - final.start_s, abs=1e-3)

    engine = FakeEngine()
    opts = SessionOptions(max_partial_interval_s=0, speculative_final=False)
    session = Session(engine, opts)
    engine.session = session
    events = await run(session, one_utterance, pace=0.001)
    assert len(transcript_events(events, "final")) == 1 and len(engine.calls) == 1
    assert engine.calls[0]["received_s"] >= final.end_s - 0.15 + opts.min_silence_ms / 1000 - 0.05


async def test_failed_final_is_retried_once(one_utterance) -> None:
    engine = FakeEngine(fail=1)
    session = Session(engine, SessionOptions(max_partial_interval_s=0, speculative_final=False))
    events = await run(session, one_utterance)
    assert len(engine.calls) == 2
    assert len(transcript_events(events, "final")) == 1
    assert not [e for e in events if isinstance(e, ErrorEvent)]


async def test_failed_final_becomes_an_error_and_the_session_goes_on(two_utterances) -> None:
    engine = FakeEngine(fail=2)
    session = Session(engine, SessionOptions(max_partial_interval_s=0, speculative_final=False))
    events = await run(session, two_utterances)
    errors = [e for e in events if isinstance(e, ErrorEvent)]
    assert len(errors) == 1 and errors[0].utterance_id == 0 and "engine down" in errors[0].message
    finals = transcript_events(events, "final")
    assert [f.utterance_id for f in finals] == [1]  # nothing was shown of utterance 0
    assert session.stats.errors == 1


async def test_failed_final_keeps_committed_partial_words(one_utterance) -> None:
    class FailFinals(FakeEngine):
        async def transcribe(self, request):
            if self.session.audio_s >= 4.4:  # speech is over (it ends near 4.35 s): finals fail
                self.fail = 1
            return await super().transcribe(request)

    engine = FailFinals()
    engine.session = session = Session(engine)
    events = await run(session, one_utterance, pace=0.002)
    partials = transcript_events(events, "partial")
    committed = [p.committed for p in partials if p.committed]
    assert committed
    (final,) = transcript_events(events, "final")
    assert keys(final.text)[: len(keys(committed[-1]))] == keys(committed[-1])
    assert [e for e in events if isinstance(e, ErrorEvent)]


async def test_phantom_text_gives_no_events(one_utterance) -> None:
    engine = FakeEngine(text="Thank you.", logprob=-1.2)
    events = await run(Session(engine), one_utterance, pace=0.002)
    assert engine.calls  # decoded, then dropped by the guards
    assert transcript_events(events) == []


async def test_silence_gives_no_events_and_no_decodes() -> None:
    engine = FakeEngine()
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal(SR * 3) * 1e-4).astype(np.float32)
    events = await run(Session(engine), audio)
    assert engine.calls == [] and transcript_events(events) == []


async def test_loops_are_cut_and_never_prompted(two_utterances) -> None:
    loop = "Hello there. " + "and then " * 12
    engine = FakeEngine(text=loop)
    session = Session(engine)
    events = await run(session, two_utterances, pace=0.002)
    finals = transcript_events(events, "final")
    assert finals and all(not is_repetition_loop(f.text) for f in finals)
    assert all(not is_repetition_loop(e.text) for e in transcript_events(events))
    assert all(c["prompt"] is None or not is_repetition_loop(c["prompt"]) for c in engine.calls)


async def test_close_cancels_decodes_and_ends_events(one_utterance) -> None:
    engine = FakeEngine(delay=60)
    session = Session(engine)
    events: list = []

    async def collect() -> None:
        async for ev in session.events():
            events.append(ev)

    consumer = asyncio.ensure_future(collect())
    for frame in to_frames(one_utterance):
        session.feed(frame, 48_000)
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)
    assert engine.active >= 1
    await asyncio.wait_for(session.close(), 10)
    await asyncio.wait_for(consumer, 10)
    assert engine.active == 0 and engine.cancelled >= 1
    assert transcript_events(events) == []
    session.feed(to_frames(one_utterance)[0], 48_000)  # ignored after close


async def test_any_frame_format(one_utterance) -> None:
    """Stereo float32 at 44.1 kHz in 10 ms frames gives the same utterance."""
    x = soxr.resample(one_utterance, SR, 44_100)
    stereo = np.stack([x, x], axis=1).astype(np.float32)  # (n, 2)
    frames = [stereo[i : i + 441] for i in range(0, len(stereo), 441)]
    engine = FakeEngine()
    events = await run(Session(engine), one_utterance, frames=frames, rate=44_100)
    (final,) = transcript_events(events, "final")
    reference = transcript_events(await run(Session(FakeEngine()), one_utterance), "final")[0]
    assert final.start_s == pytest.approx(reference.start_s, abs=0.07)
    assert final.end_s == pytest.approx(reference.end_s, abs=0.07)


def test_stats_defaults() -> None:
    s = SessionStats()
    assert s.to_dict()["max_lag_s"] == 0.0


async def test_partials_ask_for_background_priority(one_utterance) -> None:
    """Finals go first in the shared engine's queue; partials wait behind them."""
    from engine.base import PRIORITY_BACKGROUND, PRIORITY_DEFAULT

    class Recording(FakeEngine):
        async def transcribe(self, request):
            self.priorities.append((request.duration, request.priority))
            return await super().transcribe(request)

    engine = Recording()
    engine.priorities = []
    events = await run(Session(engine), one_utterance)
    (final,) = transcript_events(events, "final")
    assert transcript_events(events, "partial")
    partial_calls = [p for _, p in engine.priorities[:-1]]
    assert PRIORITY_BACKGROUND in partial_calls
    assert engine.priorities[-1][1] == PRIORITY_DEFAULT  # the final (longest audio, last)
    assert set(partial_calls) <= {PRIORITY_BACKGROUND, PRIORITY_DEFAULT}


async def test_committed_words_kept_when_final_overrides_is_off(one_utterance) -> None:
    class Revising(FakeEngine):
        async def transcribe(self, request):
            result = await super().transcribe(request)
            if self.session.audio_s >= 4.4:  # the final: first word differs
                result = Transcription("uno " + " ".join(result.text.split()[1:]), "en", result.duration, avg_logprob=-0.2)
            return result

    for override in (True, False):
        engine = Revising()
        engine.session = session = Session(engine, SessionOptions(final_overrides_committed=override))
        events = await run(session, one_utterance, pace=0.002)
        committed = [p.committed for p in transcript_events(events, "partial") if p.committed][-1]
        (final,) = transcript_events(events, "final")
        if override:
            assert final.text.startswith("uno ") and session.stats.revisions == 1
        else:
            assert keys(final.text)[: len(keys(committed))] == keys(committed)
            assert session.stats.revisions == 0


def test_reference_normaliser_sanity() -> None:
    assert normalize("Hello, World!") == "hello world"


def test_decode_gate() -> None:
    from streaming.scheduler import DecodeGate, gate_for

    gate = DecodeGate(2)
    assert gate.try_start_partial() and gate.try_start_partial()
    assert not gate.try_start_partial()
    gate.end_partial()
    gate.start_final()
    assert not gate.try_start_partial()  # finals count: they come first
    gate.end_final()
    assert gate.try_start_partial()

    cpu = type("E", (), {"info": type("I", (), {"device": "cpu", "engine": "vllm"})()})()
    assert gate_for(cpu).max_in_flight == 2 and gate_for(cpu) is gate_for(cpu)
    assert gate_for(FakeEngine()).max_in_flight > 2


def test_decode_gate_serves_the_longest_waiting_session_first() -> None:
    """Regression: at 8 streams one stream got no partial through a 10 s utterance
    (max lag 10.4 s in the benchmark) because whoever asked first took each free slot."""
    from streaming.scheduler import STALE_S, DecodeGate

    gate = DecodeGate(1)
    a, b, c = object(), object(), object()
    assert gate.try_start_partial(a, now=0.0)
    assert not gate.try_start_partial(b, now=0.1)  # full: b waits from 0.1
    assert not gate.try_start_partial(c, now=0.2)  # c waits from 0.2
    gate.end_partial()
    assert not gate.try_start_partial(c, now=0.21)  # a slot is free, but b has waited longer
    assert gate.try_start_partial(b, now=0.22)
    gate.end_partial()
    assert gate.try_start_partial(c, now=0.23)  # now c's turn
    gate.end_partial()
    # A waiter that stops asking (its utterance ended) does not hold the slot back.
    assert gate.try_start_partial(a, now=0.3)  # a free slot and nobody waiting
    assert not gate.try_start_partial(b, now=0.31)
    assert not gate.try_start_partial(c, now=0.32)
    gate.end_partial()
    assert gate.try_start_partial(c, now=0.32 + STALE_S + 0.01)  # b went quiet: stale
    gate.end_partial()
    gate.forget(c)
    assert gate.waiting == {}


async def test_gate_counts_return_to_zero(two_utterances) -> None:
    from streaming.scheduler import gate_for

    engine = FakeEngine(delay=0.05)
    session = Session(engine, SessionOptions(partial_interval_s=0.2, max_decodes_in_flight=1))
    engine.session = session
    events = await run(session, two_utterances, pace=0.003)
    gate = gate_for(engine)
    assert gate.partials == 0 and gate.finals == 0
    assert engine.max_active <= 2  # one partial, or finals only
    assert len(transcript_events(events, "final")) == 2
