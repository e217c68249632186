"""The page's live stream: one FastRTC handler per WebRTC connection, all on the one engine.

    browser mic ──WebRTC──▶ LiveHandler.receive (int16 48 kHz frames) ──▶ streaming.Session
                                                                               │ events
    page ◀── AdditionalOutputs(TabState) ◀── LiveHandler.emit ◀── pump ◀───────┘

A `TabState` belongs to one browser tab (a `gr.State`), not to a connection: it keeps the
transcript across streams, so stopping and starting again, or a connection that dropped
and is restarted, continues the same transcript (times go on from where the previous
stream's audio ended). Several tabs each have their own `TabState` and their own
handler; they share the engine and the process-wide `StreamSlots` limit (MAX_STREAMS,
shared with the realtime WebSocket).

Lifecycle of a handler (FastRTC calls these; `copy()` makes one per connection):
- `start_up()`: wait for the page's inputs (tab state, language, task), take a stream
  slot (or end the stream with a "server is full" message), start a `Session`.
- `receive()`: feed frames to the session (frames that arrive before it exists are kept,
  up to a few seconds).
- `emit()`: awaits the next change (never busy-loops) and hands the page a snapshot.
- `shutdown()` (the connection closed: stop clicked, tab closed, network dropped): the
  open utterance is flushed into a final, the slot is released. Frames arriving after
  that are ignored.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastrtc import AdditionalOutputs, AsyncStreamHandler
from fastrtc.utils import create_message

from streaming.events import ErrorEvent, StatusEvent, TranscriptEvent
from streaming.transcript import Transcript
from web.sessions import StreamSlots

log = logging.getLogger(__name__)

#: Frames kept while the session starts (seconds of audio).
MAX_EARLY_AUDIO_S = 5.0
#: How long `emit()` waits for a change before returning None (it is called in a loop).
EMIT_WAIT_S = 0.25
#: How long shutdown waits for the last final before aborting the session.
FINISH_TIMEOUT_S = 60.0


DROPPED_MESSAGE = "The connection dropped. Press Record to continue: the transcript so far is kept."


def full_message(limit: int) -> str:
    return (
        f"The app is full: {limit} live stream{'s' if limit != 1 else ''} already running. "
        "Try again in a minute (your transcript so far is kept)."
    )


@dataclass
class LiveStats:
    """Process-wide counters of the page's streams (for the status line and tests)."""

    frames: int = 0  # audio frames received by any handler
    audio_s: float = 0.0  # seconds of audio received by any handler
    streams_started: int = 0
    streams_refused: int = 0
    active: int = 0
    last_frame_at: float | None = None  # time.time() of the last frame

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


STATS = LiveStats()


class TabState:
    """One browser tab's transcript and live view, across any number of streams.

    Held in a `gr.State`: Gradio deep-copies the default per tab, and `__deepcopy__`
    gives every tab a fresh one. Lives on the server's event loop thread only.
    """

    def __init__(self) -> None:
        self.transcript = Transcript()  # finals, times on the tab's timeline
        self.partial: TranscriptEvent | None = None  # the open utterance (session times)
        self.offset_s = 0.0  # tab time of the current stream's 0
        self.base_s = 0.0  # tab time shown as 0 (moved by clear)
        self.streams = 0
        self.live = False
        self.lag_s: float | None = None
        self.last_final_latency_s: float | None = None
        self.partial_interval_s: float | None = None
        self.stream_audio_s = 0.0  # audio received by the current / last stream
        self.message: str | None = None  # a problem to show (full, engine error)
        self.version = 0  # bumped when finals change (clear included)
        self.handler: "LiveHandler | None" = None
        self.ended_at: float | None = None  # time.monotonic() when the last stream ended
        self._stream_done: asyncio.Event | None = None
        #: Where kept finals also go (web.recorder.LiveRecorder: the transcript database);
        #: None: this tab's transcript lives only in memory.
        self.sink: Any = None

    def __deepcopy__(self, memo: dict) -> "TabState":
        return TabState()

    # -- streams ------------------------------------------------------------------

    def begin_stream(self, handler: "LiveHandler") -> None:
        previous = self.handler
        if previous is not None and previous is not handler:
            # Still flushing (or a dropped connection nobody shut down): its late finals
            # land at its own offset; the new stream starts after the audio it had.
            self.offset_s = max(self.offset_s, previous.tab_offset_s + previous.audio_s)
        self.handler = handler
        self.streams += 1
        self.live = True
        self.partial = None
        self.message = None
        self.stream_audio_s = 0.0
        self.ended_at = None
        self._stream_done = asyncio.Event()

    def end_stream(self, handler: "LiveHandler") -> None:
        if self.handler is handler:
            self.live = False
            self.partial = None
            self.offset_s = handler.tab_offset_s + handler.audio_s
            self.stream_audio_s = handler.audio_s
            self.ended_at = time.monotonic()
            if self._stream_done is not None:
                self._stream_done.set()

    async def wait_stream_done(self, timeout: float) -> bool:
        done = self._stream_done
        if done is None or not self.live and done.is_set():
            return True
        try:
            await asyncio.wait_for(done.wait(), timeout)
            return True
        except (asyncio.TimeoutError, TimeoutError):
            return False

    # -- events -------------------------------------------------------------------

    def apply(self, ev: Any, offset_s: float, current: bool = True) -> None:
        if isinstance(ev, TranscriptEvent):
            if ev.type == "final":
                shift = offset_s - self.base_s
                final = dataclasses.replace(ev, start_s=max(0.0, ev.start_s + shift), end_s=max(0.0, ev.end_s + shift))
                if self.transcript.add(final):
                    self.version += 1
                    if self.sink is not None:
                        self.sink.final(final)
                if current and self.partial is not None and self.partial.utterance_id <= ev.utterance_id:
                    self.partial = None
                self.last_final_latency_s = ev.latency_s
            elif current:
                self.partial = ev
        elif isinstance(ev, StatusEvent):
            if current:
                self.lag_s = ev.lag_s
                self.partial_interval_s = ev.partial_interval_s
                if ev.last_final_latency_s is not None:
                    self.last_final_latency_s = ev.last_final_latency_s
        elif isinstance(ev, ErrorEvent):
            self.message = f"Transcription error: {ev.message}"

    def clear(self) -> None:
        """Forget the transcript; a running stream goes on and its next text starts at 0."""
        self.transcript.clear()
        if self.sink is not None:
            self.sink.clear()  # gone for good, from the database too
        self.partial = None
        self.message = None
        now = self.offset_s + (self.handler.audio_s if self.live and self.handler else 0.0)
        self.base_s = now
        self.version += 1


class LiveHandler(AsyncStreamHandler):
    """One WebRTC connection's audio into one `streaming.Session`."""

    def __init__(
        self,
        engine: Any,
        options: Any,
        slots: StreamSlots,
        *,
        stats: LiveStats = STATS,
        multilingual: bool = True,
    ) -> None:
        super().__init__(expected_layout="mono", output_sample_rate=24_000, input_sample_rate=48_000)
        self.engine = engine
        self.options = options  # streaming.session.SessionOptions (defaults for every stream)
        self.slots = slots
        self.stats = stats
        self.multilingual = multilingual
        self.tab: TabState | None = None
        self.session: Any = None
        self.tab_offset_s = 0.0
        self.frames = 0
        self.audio_s = 0.0
        self._early: list[tuple[int, np.ndarray]] = []
        self._early_s = 0.0
        self._changed = asyncio.Event()
        self._ready = asyncio.Event()
        self._close_message: str | None = None
        self._close_sent = False
        self._slot = False
        self._stopped = False
        self._pump: asyncio.Task | None = None
        self._shutdown_task: asyncio.Task | None = None
        #: Set when the page's Stop ended the stream (else the connection dropped).
        self.stop_requested = False

    def copy(self) -> "LiveHandler":
        return LiveHandler(self.engine, self.options, self.slots, stats=self.stats, multilingual=self.multilingual)

    # -- inputs from the page -------------------------------------------------------

    def _page_inputs(self) -> tuple[TabState | None, str | None, str]:
        """(tab state, language, task) from the latest page inputs."""
        args = list(self.latest_args or [])
        tab = next((a for a in args if isinstance(a, TabState)), None)
        language: str | None = None
        task = "transcribe"
        if tab is not None:
            rest = args[args.index(tab) + 1 :]
            if len(rest) >= 1 and isinstance(rest[0], str):
                language = rest[0].strip().lower() or None
            if len(rest) >= 2 and rest[1] in ("transcribe", "translate"):
                task = rest[1]
        if language in ("auto", "detect", "none"):
            language = None
        if not self.multilingual:
            language, task = None, "transcribe"
        return tab, language, task

    def set_args(self, args: list[Any]) -> None:
        super().set_args(args)
        # Language / task changed while streaming: the next decode uses them.
        if self.session is not None and not self._stopped:
            _, language, task = self._page_inputs()
            self.session.options.language = language or self.options.language
            self.session.options.task = task

    # -- FastRTC callbacks ----------------------------------------------------------

    async def start_up(self) -> None:
        try:
            await asyncio.wait_for(self.wait_for_args(), 30)
        except (asyncio.TimeoutError, TimeoutError):
            log.warning("live stream: the page sent no inputs; using defaults")
        tab, language, task = self._page_inputs()
        self.tab = tab if tab is not None else TabState()
        if self._stopped:
            return
        if not self.slots.try_acquire():
            self.stats.streams_refused += 1
            self._close_message = full_message(self.slots.limit)
            self.tab.message = self._close_message
            log.info("live stream refused: %d/%d streams running", self.slots.active, self.slots.limit)
            self._changed.set()
            return
        self._slot = True
        from streaming.session import Session

        options = dataclasses.replace(self.options, language=language or self.options.language, task=task)
        try:
            self.session = Session(self.engine, options)
        except Exception as exc:
            self._release()
            self._close_message = f"Could not start the stream: {exc}"
            self.tab.message = self._close_message
            self._changed.set()
            raise
        self.stats.streams_started += 1
        self.stats.active += 1
        self.tab.begin_stream(self)
        self.tab_offset_s = self.tab.offset_s
        self._pump = asyncio.create_task(self._run_pump())
        for rate, array in self._early:
            self.session.feed(array, rate)
        self._early.clear()
        self._ready.set()
        self._changed.set()
        log.info("live stream started (tab stream %d, %d/%s streams)", self.tab.streams, self.slots.active, self.slots.limit or "∞")

    async def receive(self, frame: tuple[int, np.ndarray]) -> None:
        if self._stopped:
            return
        rate, array = frame
        seconds = array.shape[-1] / float(rate)
        self.frames += 1
        self.audio_s += seconds
        self.stats.frames += 1
        self.stats.audio_s += seconds
        self.stats.last_frame_at = time.time()
        if self.session is None:
            if self._close_message is None and self._early_s < MAX_EARLY_AUDIO_S:
                self._early.append((rate, np.array(array, copy=True)))
                self._early_s += seconds
            return
        self.session.feed(array, rate)

    async def emit(self) -> Any:
        if self._close_message is not None:
            if not self._close_sent:
                self._close_sent = True
                # The page first shows why, then the stream ends (FastRTC shows the text too).
                return AdditionalOutputs(self.tab)
            # In "send" mode FastRTC never plays a CloseStream back, so end the stream
            # the way the page's widget understands: an `end_stream` message (it closes
            # the connection and shows the text as a warning).
            await asyncio.sleep(0.2)
            if self.channel is not None and not self._stopped:
                self.channel.send(create_message("end_stream", self._close_message))
                self._stopped = True
            await asyncio.sleep(EMIT_WAIT_S)
            return None
        try:
            await asyncio.wait_for(self._changed.wait(), EMIT_WAIT_S)
        except (asyncio.TimeoutError, TimeoutError):
            return None
        self._changed.clear()
        if self.tab is None:
            return None
        return AdditionalOutputs(self.tab)

    async def shutdown(self) -> None:  # type: ignore[override]
        """The connection is gone: flush the last utterance, release the slot. Idempotent."""
        if self._shutdown_task is None:
            self._shutdown_task = asyncio.ensure_future(self._shutdown())
        await asyncio.shield(self._shutdown_task)

    # -- internals ------------------------------------------------------------------

    async def _run_pump(self) -> None:
        session = self.session
        try:
            async for ev in session.events():
                if self.tab is not None:
                    self.tab.apply(ev, self.tab_offset_s, current=self.tab.handler is self)
                    self.tab.stream_audio_s = self.audio_s if self.tab.handler is self else self.tab.stream_audio_s
                self._changed.set()
        except Exception:
            log.exception("live stream: event pump failed")

    async def _shutdown(self) -> None:
        self._stopped = True
        self._early.clear()
        session = self.session
        try:
            if session is not None:
                try:
                    await asyncio.wait_for(session.finish(), FINISH_TIMEOUT_S)
                except Exception as exc:  # timeout or engine failure: stop decoding
                    log.warning("live stream: flush failed (%s); aborting the session", exc)
                    await session.close()
                if self._pump is not None:
                    try:
                        await asyncio.wait_for(self._pump, 5)
                    except Exception:
                        self._pump.cancel()
        finally:
            if session is not None:
                self.stats.active = max(0, self.stats.active - 1)
            self._release()
            if self.tab is not None:
                if session is not None and not self.stop_requested and self.tab.handler is self and not self.tab.message:
                    self.tab.message = DROPPED_MESSAGE
                self.tab.end_stream(self)
            self._changed.set()
            log.info("live stream ended: %.1f s of audio in %d frames", self.audio_s, self.frames)

    def _release(self) -> None:
        if self._slot:
            self._slot = False
            self.slots.release()
