"""One live stream, whatever carries its audio.

The page's WebRTC handler (`web/live.py`) and the realtime WebSocket (`web/realtime.py`)
are thin adapters over this module; what both need is written here once:

- `StreamSlots`: the process-wide MAX_STREAMS limit, shared by every transport.
- `StreamService.options()`: a stream's `SessionOptions` from the settings' defaults and
  the client's language / task / prompt, refused up front when the model cannot do it
  (`engine.base.check_task`).
- `StreamService.open()`: takes a slot (None when the server is full) and starts a
  `LiveStream`.
- `LiveStream`: the session, the pump that hands its events to the transport, the
  bounds on what a client may push (audio ahead of real time, finals in flight) and
  the teardown: `finish()` (every final of an
  utterance that ended is delivered, however long it takes; only the engine's own retry
  deadline ends one, and then the words already committed stand as the final) or
  `abort()` (nobody is left to read the text). Either gives the slot back, once.
- Draining (a restart or deploy: SIGTERM): `drain_streams()` makes the slots refuse new
  streams (`ServerDraining`, with a message for the user), ends the open utterance of
  every running stream now, lets their finals finish for a bounded time, then tells each
  transport (`LiveStream.on_drained`: the realtime socket closes with 1012, the page
  shows why). Streams still decoding at the deadline are aborted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import numpy as np

from engine.base import Engine, UnsupportedRequest, check_task, checked_prompt
from engine.languages import supported_languages
from streaming.events import Event
from streaming.session import Session, SessionOptions

__all__ = ["DRAINING_MESSAGE", "AudioTooFast", "LiveStream", "ServerDraining", "drain_streams", "StreamLimits", "StreamService", "StreamSlots", "normalize_language"]

log = logging.getLogger(__name__)

EventSink = Callable[[Event], "Awaitable[None] | None"]

#: Teardowns running in the background (a strong reference: the loop keeps only weak ones).
_TEARDOWNS: set[asyncio.Future] = set()

#: What a client asking for a stream is told while the server drains (a restart or deploy).
DRAINING_MESSAGE = "The server is restarting: no new live streams now. Try again in a minute."


class ServerDraining(Exception):
    """The server is going away (SIGTERM): no new stream is started."""

    def __init__(self, message: str = DRAINING_MESSAGE) -> None:
        super().__init__(message)


class StreamSlots:
    """Counts live streams; `try_acquire()` refuses past the limit (0: no limit) instead
    of queueing, and refuses every stream once draining. `on_change(active)` is told every
    change (web/ feeds a metrics gauge). Knows its running `LiveStream`s, so that a drain
    reaches every transport's streams (the page's and the realtime socket's)."""

    def __init__(self, limit: int, on_change: Callable[[int], None] | None = None) -> None:
        self.limit = limit
        self._active = 0
        self._lock = threading.Lock()
        self._on_change = on_change
        self._draining = False
        self._streams: set[LiveStream] = set()  # touched on the event loop's thread only

    @property
    def active(self) -> int:
        return self._active

    @property
    def draining(self) -> bool:
        """The server is going away: no new stream."""
        return self._draining

    def start_draining(self) -> None:
        self._draining = True

    @property
    def streams(self) -> list["LiveStream"]:
        """The streams running now (those not yet torn down)."""
        return list(self._streams)

    def try_acquire(self) -> bool:
        with self._lock:
            if self._draining:
                return False
            if self.limit > 0 and self._active >= self.limit:
                return False
            self._active += 1
            active = self._active
        self._changed(active)
        return True

    def release(self) -> None:
        with self._lock:
            self._active = max(0, self._active - 1)
            active = self._active
        self._changed(active)

    def _changed(self, active: int) -> None:
        if self._on_change is not None:
            self._on_change(active)


@dataclass(frozen=True)
class StreamLimits:
    """What one client may push (the realtime WebSocket; the page's WebRTC audio arrives
    in real time by construction)."""

    #: Audio accepted ahead of real time (seconds received minus seconds since the first
    #: audio): enough to send a short recording at once, not an hour of it
    #: (REALTIME_BACKLOG_S).
    max_backlog_s: float = 30.0
    #: Finals being decoded at once per stream; past it, more audio waits (back-pressure;
    #: REALTIME_MAX_FINALS).
    max_finals_in_flight: int = 4

    @classmethod
    def from_settings(cls, settings: Any) -> "StreamLimits":  # settings.Settings
        return cls(max_backlog_s=float(settings.realtime_backlog_s), max_finals_in_flight=int(settings.realtime_max_finals))


class AudioTooFast(Exception):
    """Audio arrived further ahead of real time than `StreamLimits.max_backlog_s`."""

    def __init__(self, ahead_s: float, limit_s: float) -> None:
        super().__init__(
            f"Audio is arriving {ahead_s:.1f} s ahead of real time (at most {limit_s:.0f} s is accepted): "
            "this chunk was dropped; send audio at real-time pace."
        )
        self.ahead_s = ahead_s
        self.limit_s = limit_s


def normalize_language(language: str | None) -> str | None:
    """A client's language choice: a code, or None for "detect" (empty, auto, detect, none)."""
    if language is None:
        return None
    code = str(language).strip().lower()
    return None if code in ("", "auto", "detect", "none") else code


class StreamService:
    """Options, slots and limits for every live stream of the process, on the one engine."""

    def __init__(
        self,
        engine: Engine,
        defaults: SessionOptions,
        slots: StreamSlots,
        limits: StreamLimits | None = None,
    ) -> None:
        self.engine = engine
        self.defaults = defaults
        self.slots = slots
        self.limits = limits or StreamLimits()

    @classmethod
    def from_settings(cls, engine: Engine, settings: Any, slots: StreamSlots) -> "StreamService":
        return cls(engine, SessionOptions.from_settings(settings), slots, StreamLimits.from_settings(settings))

    @property
    def multilingual(self) -> bool:
        return bool(self.engine.info.multilingual)

    def options(
        self, *, language: str | None = None, task: str = "transcribe", prompt: str | None = None, **changes: Any
    ) -> SessionOptions:
        """A stream's options: the defaults with the client's choices. Raises
        `UnsupportedRequest` (a ValueError with a message for the user) for what the
        model cannot do (a language or translation on an English-only model)."""
        language = normalize_language(language) or self.defaults.language
        check_task(self.engine.info, language, task)
        if language is not None and self.engine.info.multilingual and language not in supported_languages(self.engine):
            # Refused here, once, instead of every utterance failing in the engine later.
            raise UnsupportedRequest(
                f"{self.engine.info.model} does not know the language {language!r}: use an ISO 639-1 code "
                "such as 'de', or none to detect it."
            )
        prompt = checked_prompt(prompt)
        return dataclasses.replace(self.defaults, language=language, task=task, prompt=prompt, **changes)  # type: ignore[arg-type]

    def open(self, options: SessionOptions, on_event: EventSink) -> "LiveStream | None":
        """Take a slot and start a stream whose events go to `on_event` (a function or a
        coroutine function, called in order); None when MAX_STREAMS are running.
        Raises `ServerDraining` while the server drains (a restart: tell the user so)."""
        if self.slots.draining:
            raise ServerDraining()
        if not self.slots.try_acquire():
            return None
        try:
            session = Session(self.engine, options)
        except BaseException:
            self.slots.release()
            raise
        return LiveStream(session, self.slots, on_event, self.limits)


class LiveStream:
    """One running stream: feed it audio, read its events through `on_event`, then
    `finish()` or `abort()` (both idempotent; the slot is given back once)."""

    def __init__(
        self,
        session: Session,
        slots: StreamSlots,
        on_event: EventSink,
        limits: StreamLimits,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session = session
        self.limits = limits
        self.audio_s = 0.0  # seconds of audio received
        self._slots: StreamSlots | None = slots
        self._on_event = on_event
        self._clock = clock
        self._first_audio_at: float | None = None
        self._teardown: asyncio.Future | None = None
        #: Called (function or coroutine function) after a drain delivered every final:
        #: the transport says goodbye (the realtime socket closes, the page shows why).
        self.on_drained: Callable[[], "Awaitable[None] | None"] | None = None
        self.draining = False
        slots._streams.add(self)
        self._pump = asyncio.ensure_future(self._run_pump())

    # -- audio in ---------------------------------------------------------------------

    def feed(self, frame: np.ndarray, sample_rate: int) -> None:
        """Audio that arrives in real time by construction (WebRTC): fed as it is."""
        seconds = frame.shape[-1] / float(sample_rate) if frame.size else 0.0
        if seconds <= 0:
            return
        if self._first_audio_at is None:
            self._first_audio_at = self._clock()
        self.audio_s += seconds
        self.session.feed(frame, sample_rate)

    def ahead_s(self, more_s: float = 0.0) -> float:
        """How far the audio received (plus `more_s`) runs ahead of the wall time since
        the first audio arrived."""
        if self._first_audio_at is None:
            return 0.0
        return self.audio_s + more_s - (self._clock() - self._first_audio_at)

    async def accept(self, samples: np.ndarray, sample_rate: int) -> float:
        """A client's audio (e.g. `engine.audio.decode_pcm16` of its bytes): refused past
        the backlog (`AudioTooFast`), held while `max_finals_in_flight` finals are being
        decoded (back-pressure: the client's next events wait), then fed. Returns its
        seconds."""
        if samples.size == 0:
            return 0.0
        seconds = samples.shape[-1] / float(sample_rate)
        ahead = self.ahead_s(seconds)
        if ahead > self.limits.max_backlog_s:
            raise AudioTooFast(ahead, self.limits.max_backlog_s)
        while self.session.finals_in_flight >= self.limits.max_finals_in_flight:
            await self.session.wait_final_done()
        self.feed(samples, sample_rate)
        return seconds

    def use(self, options: SessionOptions) -> None:
        """New language / task / prompt / logprobs for the decodes still to come (the page's
        selectors, a realtime `session.update`)."""
        # One assignment, not three: a decode reads either the old options or the new.
        self.session.options = dataclasses.replace(
            self.session.options, language=options.language, task=options.task, prompt=options.prompt,
            logprobs=options.logprobs,
        )

    # -- control ----------------------------------------------------------------------

    async def commit(self) -> None:
        """End the open utterance now and return once every final so far has been handed
        to `on_event` (a later answer to the client comes after them)."""
        self.session.commit()
        await self.session.wait_finals()
        await self.session.drained()

    def clear(self) -> None:
        """Drop audio that has not ended an utterance; finals of ended ones still come."""
        self.session.clear()

    @property
    def finished(self) -> bool:
        return self._teardown is not None

    async def finish(self) -> None:
        """End of input: the open utterance becomes a final; returns once every final is
        handed over. No timeout: see the module doc."""
        await self._tear_down(self._finish)

    async def abort(self) -> None:
        """Stop now: cancel every decode (nobody is left to read the text)."""
        await self.session.close()
        await self._tear_down(self._drain)

    async def drain(self) -> None:
        """The server is going away: the open utterance ends now, every final is handed
        over (`finish()`), then the transport is told (`on_drained`)."""
        self.draining = True
        try:
            await self.finish()
        finally:
            hook = self.on_drained
            if hook is not None:
                try:
                    result = hook()
                    if inspect.isawaitable(result):
                        await result
                except Exception:  # one transport's goodbye must not stop the others'
                    log.exception("live stream: the transport's drain hook failed")

    # -- internals --------------------------------------------------------------------

    async def _tear_down(self, how: Callable[[], Awaitable[None]]) -> None:
        if self._teardown is None:
            task = asyncio.ensure_future(how())
            _TEARDOWNS.add(task)
            task.add_done_callback(_TEARDOWNS.discard)
            self._teardown = task
        await asyncio.shield(self._teardown)

    async def _finish(self) -> None:
        try:
            await self.session.finish()
        finally:
            await self._drain()

    async def _drain(self) -> None:
        try:
            await self._pump  # the events end after finish() / close()
        finally:
            self._release()

    def _release(self) -> None:
        slots, self._slots = self._slots, None
        if slots is not None:
            slots._streams.discard(self)
            slots.release()

    async def _run_pump(self) -> None:
        async for ev in self.session.events():
            try:
                result = self._on_event(ev)
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception:  # a transport's failure must not stop the finals of others
                log.exception("live stream: the event handler failed on %s", getattr(ev, "type", ev))


async def drain_streams(slots: StreamSlots, timeout_s: float) -> int:
    """A restart or deploy: refuse new streams, end every running stream's input now and
    let its finals finish, for at most `timeout_s` seconds in all; streams still decoding
    then are aborted (their transports are still told). Returns how many were aborted."""
    slots.start_draining()
    streams = slots.streams
    if not streams:
        return 0
    log.info("draining %d live stream(s): their finals get up to %.0f s", len(streams), timeout_s)
    drains = [asyncio.ensure_future(stream.drain()) for stream in streams]
    _, late = await asyncio.wait(drains, timeout=max(0.0, timeout_s))
    late_streams = [stream for stream, task in zip(streams, drains) if task in late]
    for stream in late_streams:
        log.warning("live stream still decoding after %.0f s of draining: aborted", timeout_s)
        await stream.abort()  # cancels its decodes: the drain then reaches its goodbye
    if late:
        await asyncio.wait(late, timeout=5.0)
    return len(late_streams)
