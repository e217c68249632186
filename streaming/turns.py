"""End of turn as a stage of the live pipeline: after a short pause, ask the turn model
whether the speaker has finished; if so the utterance ends now, else it stays open.

    Segmenter (silence >= turn_check_ms) ─▶ TurnDetector (worker thread, batched) ─▶ end now | wait

Why: with the silence rule alone a final can never arrive sooner than `MIN_SILENCE_MS`
after the last word, and a shorter silence splits sentences at every breath. The turn
model (`engine.turn`, Smart Turn v3.2) hears whether a pause ends a sentence or sits
inside one; the pause's speculative decode must end a sentence too (`ends_sentence`):
the model hears many phrase ends of read speech as finished, and the decode's missing
full stop catches some of them (on bench.turns' conversation: splits 20 -> 10 per 100
turns at the same latency, BENCHMARKS.md). The speculative final decode already starts
at the first silence (`streaming.session`), so a "complete" answer turns that decode
into the final at once.

Eagerness (OpenAI's `semantic_vad` vocabulary, `auto` = `medium`) sets two things: the
probability above which a pause ends the turn, and the longer silence that ends it
anyway when the model keeps saying "not yet" (OpenAI documents 8/4/2 s for a voice
agent's reply; a transcript's final is shown text, and the next sentence often starts
within a second, so the fallbacks here are 1.5/0.8/0.6 s).

The model runs off the event loop on one worker thread shared by every stream. Requests
that arrive while it is busy are scored together in one batch on its next turn, so the
model never runs more than one call at a time however many streams pause at once (it
takes one core's share, never two), and a stream never has more than one check in
flight (the session asks once per pause).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from engine.formats import ends_sentence  # the one rule (subtitle cues use it too)

log = logging.getLogger(__name__)

__all__ = [
    "EAGERNESS",
    "Eagerness",
    "TurnDetection",
    "TurnDetector",
    "TurnScorer",
    "eagerness_of",
    "ends_sentence",
    "shared_detector",
]

TurnDetection = Literal["silence", "semantic"]
EagernessName = Literal["low", "medium", "high", "auto"]


@dataclass(frozen=True)
class Eagerness:
    """How ready the stream is to end a turn."""

    #: P(complete) from which a pause ends the turn.
    threshold: float
    #: Silence that ends the turn whatever the model says (the segmenter's min silence).
    max_silence_ms: int


#: Measured on `python -m bench.turns` (BENCHMARKS.md, issue 20): (0.5, 1.5 s) merged 15
#: turns in 100 (the model called 12 % of real sentence ends unfinished, and the next turn
#: began within 1.5 s); (0.3, 0.8 s) merged none and split fewer sentences than 500 ms of
#: silence, so it is `medium` (and `auto`); `low` is the patient (0.5, 1.5 s), `high`
#: the quickest.
EAGERNESS: dict[str, Eagerness] = {
    "high": Eagerness(threshold=0.2, max_silence_ms=600),
    "medium": Eagerness(threshold=0.3, max_silence_ms=800),
    "low": Eagerness(threshold=0.5, max_silence_ms=1500),
}


def eagerness_of(name: str | None) -> Eagerness:
    """The table row of an eagerness name; `auto` (and none) is `medium`, as OpenAI's."""
    key = (name or "auto").lower()
    if key == "auto":
        key = "medium"
    if key not in EAGERNESS:
        raise ValueError(f"unknown eagerness {name!r}: use low, medium, high or auto")
    return EAGERNESS[key]


class TurnScorer(Protocol):
    """What the session needs of a turn detector (a scripted one in tests)."""

    async def complete_probability(self, audio: np.ndarray) -> float: ...


class _Model(Protocol):
    def complete_probabilities(self, audios: Sequence[np.ndarray]) -> list[float]: ...


@dataclass
class TurnStats:
    calls: int = 0  # model runs (batches)
    rows: int = 0  # utterances scored
    busy_s: float = 0.0  # wall time of the model runs, features included


class TurnDetector:
    """Scores utterances with the turn model on one worker thread, batching the requests
    that wait. Safe to share between sessions on one event loop or several."""

    def __init__(self, model_factory: Callable[[], _Model] | None = None, *, max_batch: int = 8) -> None:
        if model_factory is None:
            from engine.turn import shared_model

            model_factory = shared_model
        self._factory = model_factory
        self._model: _Model | None = None
        self.max_batch = max_batch
        self.stats = TurnStats()
        self._lock = threading.Lock()
        self._waiting: list[tuple[np.ndarray, asyncio.Future, asyncio.AbstractEventLoop]] = []
        self._draining = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="turn-model")

    def load(self) -> None:
        """Load the model now (on the caller's thread), e.g. at start instead of on the
        first pause of the first stream."""
        if self._model is None:
            self._model = self._factory()

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def preload(self) -> None:
        """Load the model on the worker thread now, so the first pause of the first
        stream does not wait ~1-2 s for it (the questions queue behind the load)."""
        self._executor.submit(self.load)

    async def complete_probability(self, audio: np.ndarray) -> float:
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()
        with self._lock:
            self._waiting.append((np.asarray(audio, dtype=np.float32), future, loop))
            start = not self._draining
            self._draining = True
        if start:
            self._executor.submit(self._drain)
        return await future

    def _drain(self) -> None:
        """Worker thread: score what waits, in batches, until nothing does. If this ever
        dies the flag is cleared, so the next question starts a new drain instead of
        waiting forever (a closed caller loop once killed it and hung every stream after)."""
        try:
            self._drain_batches()
        except BaseException:
            with self._lock:
                self._draining = False
            log.exception("turn model worker stopped")
            raise

    def _drain_batches(self) -> None:
        while True:
            with self._lock:
                batch = [w for w in self._waiting[: self.max_batch] if not w[1].cancelled()]
                del self._waiting[: self.max_batch]
                if not batch and not self._waiting:
                    self._draining = False
                    return
            if not batch:
                continue
            t0 = time.perf_counter()
            try:
                self.load()
                probs: list[float] | BaseException = self._model.complete_probabilities([w[0] for w in batch])  # type: ignore[union-attr]
            except Exception as exc:  # noqa: BLE001 -- reported to every waiting stream, which falls back to silence
                probs = exc
            self.stats.calls += 1
            self.stats.rows += len(batch)
            self.stats.busy_s += time.perf_counter() - t0
            for i, (_, future, loop) in enumerate(batch):
                try:
                    loop.call_soon_threadsafe(_resolve, future, probs if isinstance(probs, BaseException) else probs[i])
                except RuntimeError:  # that caller's event loop is closed: nobody waits for this answer
                    pass


def _resolve(future: asyncio.Future, value: float | BaseException) -> None:
    if future.done():
        return
    if isinstance(value, BaseException):
        future.set_exception(value)
    else:
        future.set_result(value)


_shared: TurnDetector | None = None
_shared_lock = threading.Lock()


def shared_detector() -> TurnDetector:
    """The process-wide detector (one worker thread, one model) every stream shares."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = TurnDetector()
            _shared.preload()
        return _shared
