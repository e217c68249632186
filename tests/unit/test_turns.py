"""End of turn: the Smart Turn model on real speech, and the session's turn stage.

The model tests run the real ONNX file (`engine.turn`) on the repository's clips. The
session tests drive the real VAD and segmenter on real speech with a fake engine and
either a scripted turn scorer (exact timing: complete, incomplete, eagerness timeouts)
or the real model behind the real `TurnDetector`.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from evaluation import read_audio
from streaming.events import TranscriptEvent
from streaming.harness import to_frames
from streaming.session import Session, SessionOptions
from streaming.turns import EAGERNESS, TurnDetector, eagerness_of, ends_sentence
from tests.datasets import TEST_DATA
from tests.fakes import FakeEngine

SR = 16_000
PAD_AFTER_S = 0.15  # SegmenterOptions.pad_after_ms

#: Complete sentences (the text ends with a full stop) and their first 55 % (mid-word or
#: mid-phrase: an unfinished turn).
COMPLETE = [
    "ljspeech_coqui__LJ001-0002",  # "in being comparatively modern."
    "ljspeech_coqui__LJ001-0005",  # "... the invention of the art of printing."
    "ljspeech_coqui__LJ001-0008",  # "has never been surpassed."
    "cmu_arctic__cmu_arctic_us_aew_a0002",  # "Not at this particular case, Tom, apologized Whittemore."
]
#: A phrase that ends on a comma: the sentence goes on in the next clip (LJ001-0005).
TRAILING_COMMA = "ljspeech_coqui__LJ001-0004"  # "produced the block books, ... printed book,"


def clip(name: str) -> np.ndarray:
    return read_audio(TEST_DATA / "clips" / f"{name}.flac")


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SR), dtype=np.float32)


@pytest.fixture(scope="module")
def detector() -> TurnDetector:
    d = TurnDetector()
    d.load()
    return d


# -- the model -------------------------------------------------------------------------


def test_complete_sentence_scores_high_and_a_cut_one_lower(detector: TurnDetector) -> None:
    from engine.turn import shared_model

    model = shared_model()
    for name in COMPLETE:
        audio = clip(name)
        full = model.complete_probability(np.concatenate([audio, silence(0.2)]))
        cut = model.complete_probability(audio[: int(len(audio) * 0.55)])
        assert full >= 0.5, (name, full)
        assert cut < 0.5 and cut < full - 0.3, (name, full, cut)


def test_a_phrase_ending_on_a_comma_is_not_a_finished_turn() -> None:
    from engine.turn import shared_model

    assert shared_model().complete_probability(np.concatenate([clip(TRAILING_COMMA), silence(0.2)])) < 0.3


def test_batched_scores_equal_single_ones() -> None:
    from engine.turn import shared_model

    model = shared_model()
    audios = [clip(COMPLETE[0]), clip(TRAILING_COMMA)[: SR * 2], silence(0.5)]
    batched = model.complete_probabilities(audios)
    single = [model.complete_probability(a) for a in audios]
    assert np.allclose(batched, single, atol=1e-4)


def test_long_audio_keeps_its_last_eight_seconds() -> None:
    from engine.turn import features

    audio = np.concatenate([np.random.default_rng(0).normal(0, 0.1, SR * 3).astype(np.float32), clip(COMPLETE[1])])
    assert features(audio).shape == (80, 800)
    assert np.allclose(features(audio), features(audio[-8 * SR :]))


def test_eagerness_table() -> None:
    assert eagerness_of("auto") == eagerness_of(None) == EAGERNESS["medium"]
    assert EAGERNESS["high"].threshold < EAGERNESS["medium"].threshold < EAGERNESS["low"].threshold
    assert EAGERNESS["high"].max_silence_ms < EAGERNESS["medium"].max_silence_ms < EAGERNESS["low"].max_silence_ms
    with pytest.raises(ValueError):
        eagerness_of("eager")


async def test_detector_scores_off_the_loop_in_batches(detector: TurnDetector) -> None:
    audios = [np.concatenate([clip(n), silence(0.2)]) for n in COMPLETE] + [clip(TRAILING_COMMA)]
    calls0, rows0 = detector.stats.calls, detector.stats.rows
    probs = await asyncio.gather(*[detector.complete_probability(a) for a in audios])
    assert all(p >= 0.5 for p in probs[:-1]) and probs[-1] < 0.3
    assert detector.stats.rows - rows0 == len(audios)
    assert detector.stats.calls - calls0 < len(audios)  # those that waited went together


# -- the session's turn stage ---------------------------------------------------------


class ScriptedTurns:
    """A turn scorer that answers from a list (the last answer repeats), instantly."""

    def __init__(self, answers: list[float] | Exception) -> None:
        self.answers = answers
        self.asked: list[float] = []  # seconds of audio of each question
        self.in_flight = 0

    async def complete_probability(self, audio: np.ndarray) -> float:
        self.asked.append(len(audio) / SR)
        if isinstance(self.answers, Exception):
            raise self.answers
        i = min(len(self.asked) - 1, len(self.answers) - 1)
        return self.answers[i]


class Settled:
    """Wraps a scorer and counts its questions in flight, so the feeder can wait for the
    answer before the next frame: a model infinitely fast against the audio clock."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.in_flight = 0

    async def complete_probability(self, audio: np.ndarray) -> float:
        self.in_flight += 1
        try:
            return await self.inner.complete_probability(audio)
        finally:
            self.in_flight -= 1


async def stream(
    audio: np.ndarray, options: SessionOptions, scorer, engine=None
) -> tuple[list[tuple[float, TranscriptEvent]], Session]:
    """Feed `audio` frame by frame, each question answered before the next frame; the
    finals with the stream's audio clock when each arrived. A fake engine that writes a
    finished sentence unless given."""
    engine = engine or FakeEngine(text=FINISHED)
    settled = Settled(scorer)
    session = Session(engine, options, turns=settled)
    finals: list[tuple[float, TranscriptEvent]] = []

    async def collect() -> None:
        async for ev in session.events():
            if isinstance(ev, TranscriptEvent) and ev.type == "final":
                finals.append((session.audio_s, ev))

    consumer = asyncio.ensure_future(collect())
    for frame in to_frames(audio):
        session.feed(frame, 48_000)
        for _ in range(3):
            await asyncio.sleep(0)
        deadline = asyncio.get_running_loop().time() + 10
        while (settled.in_flight or session.deciding_turn) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.001)
    await session.finish()
    await asyncio.wait_for(consumer, 30)
    return finals, session


#: What the fake engine writes: a sentence that ends (`ends_sentence`), so the scripted
#: answers alone decide; the text check has its own tests below.
FINISHED = "In being comparatively modern."


def semantic(eagerness: str = "auto") -> SessionOptions:
    return SessionOptions(turn_detection="semantic", eagerness=eagerness, max_partial_interval_s=0)


async def test_a_complete_turn_ends_after_the_check_not_the_long_silence() -> None:
    speech = clip(COMPLETE[0])
    audio = np.concatenate([silence(0.5), speech, silence(3.0)])
    finals, session = await stream(audio, semantic(), ScriptedTurns([0.9]))
    assert len(finals) == 1
    heard_at, final = finals[0]
    assert session.stats.turn_ends == 1
    # Ended where the silence rule would end it (last speech + padding) ...
    speech_end = final.end_s - PAD_AFTER_S
    assert 0.5 + len(speech) / SR - 0.2 < speech_end < 0.5 + len(speech) / SR + 0.2
    # ... but heard about turn_check_ms into the pause, not after medium's fallback silence.
    assert heard_at - speech_end < 0.2 + 0.25, (heard_at, speech_end)


@pytest.mark.parametrize("eagerness", ["high", "medium", "low"])
async def test_an_incomplete_turn_waits_for_the_eagerness_silence(eagerness: str) -> None:
    speech = clip(COMPLETE[0])
    audio = np.concatenate([silence(0.5), speech, silence(3.6)])
    scorer = ScriptedTurns([0.1])
    finals, session = await stream(audio, semantic(eagerness), scorer)
    assert len(finals) == 1
    heard_at, final = finals[0]
    speech_end = final.end_s - PAD_AFTER_S
    wait = EAGERNESS[eagerness].max_silence_ms / 1000
    assert wait - 0.1 < heard_at - speech_end < wait + 0.25, (eagerness, heard_at - speech_end)
    assert session.stats.turn_ends == 0 and len(scorer.asked) == 1  # asked once per pause


async def test_the_threshold_follows_the_eagerness() -> None:
    # Between `high`'s threshold and `medium`'s: complete for the one, not the other.
    p = (EAGERNESS["high"].threshold + EAGERNESS["medium"].threshold) / 2
    speech = clip(COMPLETE[0])
    audio = np.concatenate([silence(0.5), speech, silence(2.0)])
    high, _ = await stream(audio, semantic("high"), ScriptedTurns([p]))
    medium, _ = await stream(audio, semantic("medium"), ScriptedTurns([p]))
    gap = lambda f: f[0][0] - (f[0][1].end_s - PAD_AFTER_S)
    assert gap(high) < 0.45 < EAGERNESS["medium"].max_silence_ms / 1000 - 0.1 < gap(medium)


async def test_a_pause_inside_a_sentence_keeps_one_utterance() -> None:
    # The speaker pauses 0.65 s mid-sentence: 500 ms of silence splits it, the turn stage
    # (incomplete at the pause, complete at the end) keeps one final.
    first, second = clip(TRAILING_COMMA), clip(COMPLETE[2])
    audio = np.concatenate([silence(0.5), first, silence(0.65), second, silence(2.0)])
    split, _ = await stream(audio, SessionOptions(max_partial_interval_s=0), ScriptedTurns([0.9]))
    assert len(split) == 2
    scorer = ScriptedTurns([0.1, 0.9])
    one, session = await stream(audio, semantic(), scorer)
    assert len(one) == 1 and session.stats.turn_ends == 1
    assert len(scorer.asked) >= 2


@pytest.mark.parametrize(
    ("text", "ends"),
    [
        ("In being comparatively modern.", True),
        ("Is it finished?", True),
        ('He said "stop!"', True),
        ("これはペンです。", True),
        ("", True),
        ("to decrease your", False),
        ("produced the block books,", False),
        ("Basil", False),
    ],
)
def test_ends_sentence(text: str, ends: bool) -> None:
    assert ends_sentence(text) is ends


async def test_a_finished_voice_with_unfinished_words_waits_for_the_eagerness_silence() -> None:
    # The model says "finished" but the speculative final ends mid-phrase: held open
    # until the fallback silence, once; without the text check it ends at the check.
    speech = clip(COMPLETE[0])
    audio = np.concatenate([silence(0.5), speech, silence(2.0)])
    held, session = await stream(audio, semantic(), ScriptedTurns([0.9]), FakeEngine(text="to decrease your"))
    assert len(held) == 1 and session.stats.turn_ends == 0 and session.stats.turn_text_holds == 1
    gap = lambda f: f[0][0] - (f[0][1].end_s - PAD_AFTER_S)
    assert gap(held) > EAGERNESS["medium"].max_silence_ms / 1000 - 0.1
    options = semantic()
    options.turn_text_check = False
    ended, session = await stream(audio, options, ScriptedTurns([0.9]), FakeEngine(text="to decrease your"))
    assert len(ended) == 1 and session.stats.turn_ends == 1 and gap(ended) < 0.45


async def test_a_slow_decode_does_not_hold_a_finished_turn_open() -> None:
    # Under load the pause's decode comes late: past turn_text_wait_s the model's answer
    # alone ends the turn (else the next turn could begin inside the held utterance).
    # Fed on a real clock (the wait is wall time), the decode takes 1 s.
    speech = clip(COMPLETE[0])
    audio = np.concatenate([silence(0.3), speech, silence(1.5)])
    session = Session(FakeEngine(text="to decrease your", delay=1.0), semantic(), turns=ScriptedTurns([0.9]))
    loop = asyncio.get_running_loop()
    start = loop.time()
    for k, frame in enumerate(to_frames(audio)):
        session.feed(frame, 48_000)
        await asyncio.sleep(max(0.0, start + (k + 1) * 0.02 - loop.time()))
    await session.finish()
    assert session.stats.turn_ends == 1 and session.stats.turn_text_holds == 0


async def test_a_failing_turn_model_falls_back_to_the_silence_rule() -> None:
    speech = clip(COMPLETE[0])
    audio = np.concatenate([silence(0.5), speech, silence(2.0)])
    finals, session = await stream(audio, semantic(), ScriptedTurns(RuntimeError("model gone")))
    assert len(finals) == 1 and session.stats.turn_ends == 0
    assert finals[0][0] - (finals[0][1].end_s - PAD_AFTER_S) > EAGERNESS["medium"].max_silence_ms / 1000 - 0.1


async def test_real_model_keeps_a_mid_sentence_pause_and_ends_the_sentence(detector: TurnDetector) -> None:
    first, second = clip(TRAILING_COMMA), clip(COMPLETE[2])
    audio = np.concatenate([silence(0.5), first, silence(0.65), second, silence(2.0)])
    finals, session = await stream(audio, semantic(), detector)
    assert len(finals) == 1, [f[1].text for f in finals]
    heard_at, final = finals[0]
    assert session.stats.turn_ends == 1
    assert heard_at - (final.end_s - PAD_AFTER_S) < 0.5


class _Constant:
    def complete_probabilities(self, audios):
        return [0.7 for _ in audios]


async def test_a_question_from_a_closed_event_loop_does_not_stop_the_detector() -> None:
    # With semantic turns the default, a test's (or a server's) loop closed while its
    # question waited made resolving it raise in the worker thread: the worker died with
    # its "draining" flag set and every later question hung (seen in a full CI run).
    d = TurnDetector(_Constant)
    dead = asyncio.new_event_loop()
    orphan = dead.create_future()
    dead.close()
    d._waiting.append((silence(0.5), orphan, dead))
    assert await asyncio.wait_for(d.complete_probability(silence(0.5)), 10) == 0.7
    assert await asyncio.wait_for(d.complete_probability(silence(0.5)), 10) == 0.7


async def test_the_shared_detector_starts_loading_its_model_when_made() -> None:
    # It once called a preload the class did not have: the first semantic stream failed.
    from streaming.turns import shared_detector

    d = shared_detector()
    assert d is shared_detector()
    assert 0.0 <= await asyncio.wait_for(d.complete_probability(silence(0.5)), 60) <= 1.0
    assert d.loaded
