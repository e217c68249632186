"""Who is this browser, and what did it say: the glue between a tab and the transcript store.

- Identity: an unguessable random id (`secrets.token_urlsafe`, made on the server) kept in
  the browser's localStorage by Gradio's `gr.BrowserState`. Its storage key is fixed and its
  encryption secret is kept in the store, so the same browser finds its id again after a
  reload and after a server restart (same DATA_DIR). Other browsers never send that id, so
  they never see its transcripts. Tabs of one browser share its live transcript.
- `attach()` runs when the page loads: it gives the tab's `TabState` the browser's current
  live transcript back (times go on from its end, so Record continues it) and a
  `LiveRecorder` as its sink.
- `LiveRecorder` is that sink: the TabState hands it every final it keeps, and it submits
  one short write per final to the store's writer thread (never waiting on the disk from
  the event loop); `clear()` deletes the transcript for good, `archive()` starts a new one
  and leaves the old one in the history.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Future
from typing import Any

import gradio as gr

from streaming.events import TranscriptEvent
from web.store import (
    MAX_SEGMENTS_PER_TRANSCRIPT,
    StoredTranscript,
    StoreError,
    TranscriptStore,
    new_id,
    valid_id,
)

log = logging.getLogger(__name__)

#: localStorage key of the browser's id (fixed: a random key would change at every start).
STORAGE_KEY = "rt-whisper-browser"

SAVE_FAILED = "Your transcript could not be saved on the server ({error}); it is still shown here, download it to keep it."


def browser_state(store: TranscriptStore) -> gr.BrowserState:
    """The page's `gr.BrowserState` holding this browser's id (None until the page's first load)."""
    return gr.BrowserState(None, storage_key=STORAGE_KEY, secret=store.browser_secret())


def browser_id_of(value: Any) -> str | None:
    """The id a page event carried, if it is one we could have made."""
    return value if valid_id(value) else None


class LiveRecorder:
    """Writes one tab's finals to the store as they land (the TabState's `sink`).

    Lives on the event loop's thread like the TabState; only the futures' callbacks come
    from the store's thread, and they hop back with `call_soon_threadsafe`.
    """

    def __init__(
        self,
        store: TranscriptStore,
        browser_id: str,
        tab: Any,
        *,
        transcript_id: str | None = None,
        segment_count: int = 0,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.store = store
        self.browser_id = browser_id
        self.tab = tab
        self.transcript_id = transcript_id  # None: the next final starts a new transcript
        self.segment_count = segment_count
        self.loop = loop or asyncio.get_running_loop()
        self.failed: str | None = None

    def final(self, ev: TranscriptEvent) -> None:
        """A final the tab kept (times on the tab's timeline): write it now."""
        if self.transcript_id is None or self.segment_count >= MAX_SEGMENTS_PER_TRANSCRIPT:
            if self.transcript_id is not None:
                self._watch(self.store.archive(self.transcript_id, self.browser_id))
            self.transcript_id, self.segment_count = new_id(), 0
        self.segment_count += 1
        try:
            fut = self.store.append_final(
                self.transcript_id, self.browser_id, ev.start_s, ev.end_s, ev.text,
                utterance_id=ev.utterance_id, language=ev.language,
            )
        except StoreError as exc:
            self._failed(exc)
            return
        self._watch(fut)

    def clear(self) -> None:
        """The tab's transcript was cleared: delete it from the database for good."""
        if self.transcript_id is not None:
            try:
                self._watch(self.store.delete(self.transcript_id, self.browser_id))
            except StoreError as exc:
                self._failed(exc)
        self.transcript_id, self.segment_count = None, 0

    def archive(self) -> None:
        """Keep the current transcript in the history; the next final starts a new one."""
        if self.transcript_id is not None:
            try:
                self._watch(self.store.archive(self.transcript_id, self.browser_id))
            except StoreError as exc:
                self._failed(exc)
        self.transcript_id, self.segment_count = None, 0

    # -- errors ---------------------------------------------------------------------------

    def _watch(self, fut: Future) -> None:
        def done(f: Future) -> None:
            exc = f.exception()
            if exc is not None:
                try:
                    self.loop.call_soon_threadsafe(self._failed, exc)
                except RuntimeError:  # the loop is gone (server shutting down)
                    log.error("transcript store: %s", exc)

        fut.add_done_callback(done)

    def _failed(self, exc: BaseException) -> None:
        log.error("transcript store: a write failed: %s", exc)
        self.failed = str(exc)
        if self.tab is not None:
            self.tab.message = SAVE_FAILED.format(error=exc)


def restore(tab: Any, stored: StoredTranscript) -> None:
    """Put a stored live transcript back into a fresh TabState (before its first stream)."""
    finals = [
        TranscriptEvent(
            type="final",
            utterance_id=seg.utterance_id if seg.utterance_id is not None else i,
            committed=seg.text,
            tentative="",
            start_s=seg.start,
            end_s=seg.end,
            latency_s=0.0,
            language=stored.info.language,
        )
        for i, seg in enumerate(stored.segments)
    ]
    tab.transcript.finals[:] = finals
    tab.base_s = 0.0
    # The next stream's times go on from the end of what was said before.
    tab.offset_s = max(tab.offset_s, stored.info.duration, max((f.end_s for f in finals), default=0.0))
    tab.version += 1


async def attach(tab: Any, value: Any, store: TranscriptStore) -> str:
    """On page load: this browser's id (a new one if it has none) and its live transcript.

    Returns the id for the page's BrowserState. A store that fails leaves the page working
    without saving, and says so in the tab's message.
    """
    browser_id = browser_id_of(value) or new_id()
    if getattr(tab, "sink", None) is not None and getattr(tab.sink, "browser_id", None) == browser_id:
        return browser_id  # already attached (a second load event of the same tab)
    try:
        stored = await asyncio.to_thread(store.current_live, browser_id)
    except StoreError as exc:
        tab.message = SAVE_FAILED.format(error=exc)
        return browser_id
    recorder = LiveRecorder(store, browser_id, tab)
    if stored is not None and not tab.transcript.finals and not tab.live:
        restore(tab, stored)
        recorder.transcript_id, recorder.segment_count = stored.info.id, stored.info.segment_count
    tab.sink = recorder
    return browser_id


def start_new(tab: Any) -> None:
    """The "New transcript" button: the current one goes to the history, the view is emptied."""
    sink = getattr(tab, "sink", None)
    if isinstance(sink, LiveRecorder):
        sink.archive()
    tab.clear()


async def keep_upload(store: TranscriptStore | None, browser_value: Any, name: str, result: Any, duration: float) -> str | None:
    """Keep a transcribed recording in this browser's history; a failure only warns.

    `result` is the engine's `Transcription` (segments with times; its text when it has none).
    """
    browser_id = browser_id_of(browser_value)
    if store is None or browser_id is None:
        return None
    segments = list(result.segments or [])
    if not segments and (result.text or "").strip():
        from engine.base import Segment

        segments = [Segment(start=0.0, end=duration, text=result.text)]
    try:
        return await asyncio.to_thread(
            store.save_upload, browser_id, name, segments, duration=duration, language=getattr(result, "language", None)
        )
    except StoreError as exc:
        log.error("transcript store: the recording's transcript was not kept: %s", exc)
        gr.Warning(f"The transcript is shown here but could not be kept in your history ({exc}).")
        return None
