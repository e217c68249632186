"""The page's live stream: one FastRTC handler per WebRTC connection, all on the one engine.

    browser mic ──WebRTC──▶ LiveHandler.receive (int16 48 kHz frames) ──▶ streaming.service.LiveStream
                                                                               │ events
    page ◀── AdditionalOutputs(TabState) ◀── LiveHandler.emit ◀── TabState.apply ◀──┘

The stream itself (options from settings, the language / task check, the MAX_STREAMS
slot, the session and its teardown) is `streaming.service`'s, shared with the realtime
WebSocket; this module is FastRTC's side of it and the tab's view.

A `TabState` belongs to one browser tab (a `gr.State`), not to a connection: it keeps the
transcript across streams, so stopping and starting again, or a connection that dropped
and is restarted, continues the same transcript (times go on from where the previous
stream's audio ended). Several tabs each have their own `TabState` and their own
handler; they share the engine and the process-wide `StreamSlots` limit (MAX_STREAMS,
shared with the realtime WebSocket).

Lifecycle of a handler (FastRTC calls these; `copy()` makes one per connection):
- `start_up()`: wait for the page's inputs (tab state, language, task), open a stream
  (or end the connection with a "server is full" message).
- `receive()`: feed frames to the stream (frames that arrive before it exists are kept,
  up to a few seconds).
- `emit()`: awaits the next change (never busy-loops) and hands the page a snapshot.
- `shutdown()` (the connection closed: stop clicked, tab closed, network dropped): the
  open utterance is flushed into a final and every final is completed, however long
  the page stays away (no timeout of our own: only the engine's retry deadline ends a
  final, and then the committed words stand); then the slot is released. Frames
  arriving after that are ignored.
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

from engine.public import public_message
from streaming.events import ErrorEvent, StatusEvent, TranscriptEvent
from streaming.service import LiveStream, ServerDraining, StreamService
from streaming.transcript import Transcript
from streaming.words import shifted

log = logging.getLogger(__name__)

#: Frames kept while the session starts (seconds of audio).
MAX_EARLY_AUDIO_S = 5.0
#: How long `emit()` waits for a change before returning None (it is called in a loop).
EMIT_WAIT_S = 0.25


RESTART_MESSAGE = "The server is restarting: your transcript so far is kept. Press Record again in a minute."
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


@dataclass
class RenderMarks:
    """What the page last sent for a tab (web/page.py), so unchanged parts are skipped."""

    signature: tuple | None = None  # the tab's visible state at the last render
    finals_version: int = -1  # TabState.version the transcript panel shows
    downloads_version: int = -1  # TabState.version the download files hold
    downloads_at: float = 0.0  # time.monotonic() the download files were written
    settled_at: float | None = None  # `ended_at` of the stream whose end got a full refresh
    downloads: Any = None  # the tab's download writer (web.page), made on first use
    speakers: tuple | None = None  # (labels, names) the speaker rename control shows


class TabState:
    """One browser tab's transcript and live view, across any number of streams.

    Held in a `gr.State`: Gradio deep-copies the default per tab, and `__deepcopy__`
    gives every tab a fresh one. Lives on the server's event loop thread only.
    """

    def __init__(self) -> None:
        self.transcript = Transcript()  # finals, times on the tab's timeline
        #: Names a person gave this transcript's speakers (label -> name; web/speaker_names.py).
        self.speaker_names: dict[str, str] = {}
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
        self.marks = RenderMarks()  # the page's render bookkeeping
        #: Where kept finals also go (web.recorder.LiveRecorder: the transcript database);
        #: None: this tab's transcript lives only in memory.
        self.sink: Any = None
        #: The same tab's reloaded page, which took this one's transcript over while this
        #: one's stream was still flushing (web.recorder.take_over): finals go there.
        self.successor: "TabState | None" = None

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
        if self.successor is not None:
            # This page is gone (reloaded); the tab's new page shows and keeps the final.
            if isinstance(ev, TranscriptEvent) and ev.type == "final":
                after = self.successor
                after.apply(ev, offset_s, current=False)
                if not after.live:  # its next stream starts after this final
                    after.offset_s = max(after.offset_s, offset_s + ev.end_s)
            return
        if isinstance(ev, TranscriptEvent):
            if ev.type == "final":
                shift = offset_s - self.base_s
                final = dataclasses.replace(
                    ev, start_s=max(0.0, ev.start_s + shift), end_s=max(0.0, ev.end_s + shift), words=shifted(ev.words, shift)
                )
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
        self.speaker_names = {}
        if self.sink is not None:
            self.sink.clear()  # gone for good, from the database too
        self.partial = None
        self.message = None
        now = self.offset_s + (self.handler.audio_s if self.live and self.handler else 0.0)
        self.base_s = now
        self.version += 1


class LiveHandler(AsyncStreamHandler):
    """One WebRTC connection's audio into one `streaming.service.LiveStream`: FastRTC's
    callbacks, the early frames and the page's snapshots; the stream itself (options,
    slot, language checks, teardown) is `StreamService`'s."""

    def __init__(self, service: StreamService, *, stats: LiveStats = STATS) -> None:
        super().__init__(expected_layout="mono", output_sample_rate=24_000, input_sample_rate=48_000)
        self.service = service
        self.stats = stats
        self.tab: TabState | None = None
        self.stream: LiveStream | None = None
        self.tab_offset_s = 0.0
        self.frames = 0
        self.audio_s = 0.0
        self._early: list[tuple[int, np.ndarray]] = []
        self._early_s = 0.0
        self._changed = asyncio.Event()
        self._close_message: str | None = None
        self._close_sent = False
        self._stopped = False
        self._shutdown_task: asyncio.Future | None = None
        #: Set when the page's Stop ended the stream (else the connection dropped).
        self.stop_requested = False
        #: The server's event loop (FastRTC makes handlers there, in `copy()` on each
        #: offer): where the page's input changes are applied (see `set_args`).
        self._home_loop = _running_loop()

    def copy(self) -> "LiveHandler":
        return LiveHandler(self.service, stats=self.stats)

    @property
    def session(self) -> Any:
        """The running `streaming.Session` (None before start and when refused)."""
        return self.stream.session if self.stream is not None else None

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
                language = rest[0]
            if len(rest) >= 2 and rest[1] in ("transcribe", "translate"):
                task = rest[1]
        return tab, language, task

    def _options(self, language: str | None, task: str) -> Any:
        if not self.service.multilingual:
            language, task = None, "transcribe"  # the page hides the selectors then
        return self.service.options(language=language, task=task)

    def set_args(self, args: list[Any]) -> None:
        """The page's inputs changed. FastRTC wires its plain-function setter to Gradio's
        `.change` / `.tick` events, which Gradio runs in worker threads: the change is
        handed to the event loop, where the stream, its options and FastRTC's own
        `args_set` event live, so a decode never sees half-old, half-new settings."""
        loop = self._home_loop
        if loop is not None and not loop.is_closed() and not _on_loop(loop):
            loop.call_soon_threadsafe(self._set_args_here, list(args))
        else:
            self._set_args_here(list(args))

    def _set_args_here(self, args: list[Any]) -> None:
        super().set_args(args)
        # Language / task changed while streaming: the next decode uses them.
        if self.stream is not None and not self._stopped:
            _, language, task = self._page_inputs()
            try:
                self.stream.use(self._options(language, task))
            except ValueError as exc:
                if self.tab is not None:
                    self.tab.message = str(exc)
                    self._changed.set()

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
        try:
            stream = self.service.open(self._options(language, task), self._on_event)
        except ServerDraining as exc:  # a restart: say so, nothing went wrong
            self._refuse(str(exc))
            return
        except Exception as exc:
            self._refuse(f"Could not start the stream: {public_message(exc)}")  # no raw error text on the page
            raise
        if stream is None:
            self.stats.streams_refused += 1
            slots = self.service.slots
            self._refuse(full_message(slots.limit))
            log.info("live stream refused: %d/%d streams running", slots.active, slots.limit)
            return
        stream.on_drained = self._on_drained
        self.stream = stream
        self.stats.streams_started += 1
        self.stats.active += 1
        self.tab.begin_stream(self)
        self.tab_offset_s = self.tab.offset_s
        for rate, array in self._early:
            stream.feed(array, rate)
        self._early.clear()
        self._changed.set()
        slots = self.service.slots
        log.info("live stream started (tab stream %d, %d/%s streams)", self.tab.streams, slots.active, slots.limit or "∞")

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
        if self.stream is None:
            if self._close_message is None and self._early_s < MAX_EARLY_AUDIO_S:
                self._early.append((rate, np.array(array, copy=True)))
                self._early_s += seconds
            return
        self.stream.feed(array, rate)

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
        """The connection is gone: every final of an utterance that ended is completed
        (however long the page stays away), the slot is given back. Idempotent."""
        if self._shutdown_task is None:
            self._shutdown_task = asyncio.ensure_future(self._shutdown())
            _SHUTDOWNS.add(self._shutdown_task)
            self._shutdown_task.add_done_callback(_SHUTDOWNS.discard)
        await asyncio.shield(self._shutdown_task)

    # -- internals ------------------------------------------------------------------

    def _refuse(self, message: str) -> None:
        self._close_message = message
        if self.tab is not None:
            self.tab.message = message
        self._changed.set()

    def _on_drained(self) -> None:
        """The server drains (a restart): every final is in the tab (and its store); the
        page says why the stream ends, then FastRTC's widget closes it (`emit`)."""
        self._refuse(RESTART_MESSAGE)

    def _on_event(self, ev: Any) -> None:
        tab = self.tab
        if tab is not None:
            current = tab.handler is self
            tab.apply(ev, self.tab_offset_s, current=current)
            if current:
                tab.stream_audio_s = self.audio_s
        self._changed.set()

    async def _shutdown(self) -> None:
        self._stopped = True
        self._early.clear()
        stream = self.stream
        try:
            if stream is not None:
                # No timeout: only the engine's own retry deadline ends a final, and then
                # the words already committed stand as the final (streaming.session).
                await stream.finish()
        finally:
            if stream is not None:
                self.stats.active = max(0, self.stats.active - 1)
            if self.tab is not None:
                if stream is not None and not self.stop_requested and self.tab.handler is self and not self.tab.message:
                    self.tab.message = DROPPED_MESSAGE
                self.tab.end_stream(self)
            self._changed.set()
            log.info("live stream ended: %.1f s of audio in %d frames", self.audio_s, self.frames)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    return _running_loop() is loop


#: Shutdowns running (a strong reference: FastRTC starts them as tasks it does not keep).
_SHUTDOWNS: set[asyncio.Future] = set()
