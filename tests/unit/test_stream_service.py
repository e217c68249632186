"""streaming.service: what the page and the realtime WebSocket share, on real speech
through the real VAD and segmenter with a scriptable fake engine."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from engine.base import EngineInfo, UnsupportedRequest
from streaming.events import TranscriptEvent
from streaming.service import AudioTooFast, StreamLimits, StreamService, StreamSlots, normalize_language
from streaming.session import SessionOptions
from tests.unit.test_session import FakeEngine, clip_audio, silence

SR = 16_000


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return clip_audio("cmu_arctic__awb_arctic_a0007")


def service(engine, *, slots: int = 4, multilingual: bool = False, **limits) -> StreamService:
    engine.info = EngineInfo(model="fake", engine="fake", device="cpu", multilingual=multilingual)
    return StreamService(engine, SessionOptions(), StreamSlots(slots), StreamLimits(**limits))


class Sink:
    """Collects a stream's events (what a transport's `on_event` sees)."""

    def __init__(self) -> None:
        self.events: list = []

    def __call__(self, ev) -> None:
        self.events.append(ev)

    def finals(self) -> list[TranscriptEvent]:
        return [e for e in self.events if isinstance(e, TranscriptEvent) and e.type == "final"]


async def feed(stream, audio: np.ndarray, *, step_s: float = 0.1) -> None:
    step = int(SR * step_s)
    for i in range(0, len(audio), step):
        stream.feed(audio[i : i + step], SR)
        await asyncio.sleep(0)


def test_slots_count_refuse_and_report() -> None:
    seen: list[int] = []
    slots = StreamSlots(2, on_change=seen.append)
    assert slots.try_acquire() and slots.try_acquire()
    assert not slots.try_acquire()
    slots.release()
    assert slots.active == 1 and seen == [1, 2, 1]
    assert StreamSlots(0).try_acquire()  # 0: no limit


def test_options_check_the_model_and_carry_the_prompt() -> None:
    english = service(FakeEngine())
    with pytest.raises(UnsupportedRequest):
        english.options(language="de")
    with pytest.raises(UnsupportedRequest):
        english.options(task="translate")
    assert english.options(language="auto").language is None
    assert english.options(language=" EN ", prompt="  Zyxt, Qorvane.  ").prompt == "Zyxt, Qorvane."
    with pytest.raises(UnsupportedRequest):
        english.options(prompt="x" * 5000)
    multi = service(FakeEngine(), multilingual=True)
    assert multi.options(language="de", task="translate").task == "translate"
    assert multi.options(language="haw").language == "haw"  # any Whisper language (no vocabulary at hand)
    with pytest.raises(UnsupportedRequest, match="'xx'"):
        multi.options(language="xx")  # refused up front, not failing every utterance later
    assert normalize_language("Detect") is None and normalize_language("FR") == "fr"


def test_a_multilingual_model_takes_only_the_languages_of_its_vocabulary() -> None:
    """The in-process engine knows its vocabulary's language tokens: the check uses them."""
    engine = FakeEngine()
    svc = service(engine, multilingual=True)
    engine.vocab = type("Vocab", (), {"language_ids": {"en": 1, "de": 2}})()
    assert svc.options(language="DE").language == "de"
    with pytest.raises(UnsupportedRequest, match="does not know the language 'fr'"):
        svc.options(language="fr")


async def test_open_takes_a_slot_and_finish_gives_it_back_once(speech) -> None:
    svc = service(FakeEngine(), slots=1)
    sink = Sink()
    stream = svc.open(svc.options(), sink)
    assert stream is not None and svc.slots.active == 1
    assert svc.open(svc.options(), Sink()) is None  # full
    await feed(stream, np.concatenate([silence(0.5), speech, silence(0.3)]))
    await asyncio.gather(stream.finish(), stream.finish())
    await stream.abort()
    assert svc.slots.active == 0
    assert sink.finals(), "the open utterance was not flushed into a final"


async def test_prompt_reaches_every_decode(speech) -> None:
    engine = FakeEngine()
    svc = service(engine)
    stream = svc.open(svc.options(prompt="Zyxt Qorvane"), Sink())
    engine.session = stream.session
    await feed(stream, np.concatenate([silence(0.5), speech, silence(1.2)]))
    await stream.finish()
    assert engine.calls and all(c["prompt"] == "Zyxt Qorvane" for c in engine.calls), engine.calls


async def test_commit_hands_over_the_final_before_it_returns(speech) -> None:
    svc = service(FakeEngine(delay=0.2))
    sink = Sink()
    stream = svc.open(svc.options(), sink)
    await feed(stream, np.concatenate([silence(0.5), speech[: len(speech) * 2 // 3]]))  # mid-speech
    assert not sink.finals()
    await stream.commit()
    assert len(sink.finals()) == 1, "commit returned before the final was handed over"
    # The stream goes on: more speech becomes another utterance.
    await feed(stream, np.concatenate([silence(0.6), speech, silence(1.2)]))
    await stream.finish()
    finals = sink.finals()
    assert len(finals) == 2 and finals[1].start_s >= finals[0].end_s


async def test_clear_drops_only_audio_that_has_not_ended_an_utterance(speech) -> None:
    """Issue 11 B: the final of an utterance that ended before the clear still arrives;
    the speech after it, still open at the clear, is dropped."""
    engine = FakeEngine(delay=0.5)
    svc = service(engine)
    sink = Sink()
    stream = svc.open(svc.options(), sink)
    await feed(stream, np.concatenate([silence(0.5), speech, silence(0.8)]))  # utterance 1 ended
    await feed(stream, speech[: len(speech) // 2])  # utterance 2 open
    assert stream.session.finals_in_flight == 1, "the first final should still be decoding"
    stream.clear()
    await feed(stream, silence(1.0))
    await stream.finish()
    finals = sink.finals()
    assert len(finals) == 1, finals
    assert finals[0].end_s < len(speech) / SR + 1.5


async def test_audio_past_the_backlog_is_refused(speech) -> None:
    now = [100.0]
    svc = service(FakeEngine(), max_backlog_s=5.0)
    stream = svc.open(svc.options(), Sink())
    stream._clock = lambda: now[0]
    chunk = silence(1.0)
    for _ in range(5):  # 5 s at once: within the backlog
        await stream.accept(chunk, SR)
    with pytest.raises(AudioTooFast) as info:
        await stream.accept(chunk, SR)
    assert "ahead of real time" in str(info.value)
    now[0] += 2.0  # two seconds later two more seconds fit
    await stream.accept(chunk, SR)
    await stream.accept(chunk, SR)
    assert stream.audio_s == pytest.approx(7.0)
    await stream.abort()


async def test_finals_in_flight_are_capped(speech) -> None:
    """Past `max_finals_in_flight`, accepting more audio waits for a final to finish."""
    engine = FakeEngine(delay=1.0)
    svc = service(engine, max_finals_in_flight=1, max_backlog_s=1e9)
    sink = Sink()
    stream = svc.open(svc.options(), sink)
    utterance = np.concatenate([silence(0.5), speech, silence(0.8)])
    step = SR // 10
    held = False
    for k in range(2):
        for i in range(0, len(utterance), step):
            done_before = stream.session.stats.finals
            pending = stream.session.finals_in_flight
            await stream.accept(utterance[i : i + step], SR)
            assert stream.session.finals_in_flight <= 1
            if pending >= 1:  # at the cap: accept() must have waited for that final
                held = held or stream.session.stats.finals > done_before
                assert stream.session.stats.finals > done_before
    assert held, "audio was accepted while a final was in flight at the cap"
    await stream.finish()
    assert len(sink.finals()) == 2
