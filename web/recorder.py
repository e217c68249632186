"""Who is this browser, and what did it say: the glue between a tab and the transcript store.

- Identity: an unguessable random id (`secrets.token_urlsafe`, made on the server) kept in
  the browser's localStorage by Gradio's `gr.BrowserState`. Its storage key is fixed and its
  encryption secret is kept in the store, so the same browser finds its id again after a
  reload and after a server restart (same DATA_DIR). Other browsers never send that id, so
  they never see its transcripts.
- Tabs: each tab of a browser has its own live transcript (one rule people understand:
  Clear, New and Record in one tab never touch what another tab is doing). The tab's id
  lives in the tab's sessionStorage (`TAB_ID_JS`), which a reload of the tab keeps and a
  new tab does not have; a duplicated tab (the browser copies sessionStorage) is told
  apart by a mark the page sets when it goes away (a reload), which the copy lacks.
- `attach()` runs when the page loads: it gives the tab's `TabState` the tab's live
  transcript back (times go on from its end, so Record continues it) and a
  `LiveRecorder` as its sink. A new tab takes over a transcript no open tab holds (a
  closed tab's), so nothing a closed tab said is lost; `OpenTabs` knows which tabs are
  open (Gradio's load and unload events).
- A reload while the old page's stream is still flushing its last final (its shutdown
  outlives the page): the new page takes the old one's transcript from memory and the
  old one hands it every final still to come (`TabState.successor`), so the final shows
  on the reloaded page when it lands and is kept once.
- `LiveRecorder` is that sink: the TabState hands it every final it keeps, and it submits
  one short write per final to the store's writer thread (never waiting on the disk from
  the event loop); `clear()` deletes the transcript for good, `archive()` starts a new one
  and leaves the old one in the history.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
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
#: sessionStorage key of the tab's id (a reload keeps it, a new tab has none).
TAB_KEY = "rt-whisper-tab"


def tab_id_js(n_inputs: int) -> str:
    """JavaScript the page's load event runs in the browser first: the tab's id from
    sessionStorage replaces the last of its `n_inputs` inputs (Gradio passes the outputs'
    values after the inputs; only the inputs go back).

    The "-left" mark is set when the page goes away (a reload or a navigation) and cleared
    when it is shown again: a tab the browser duplicated copies the id without the mark
    while the original is still open, so the copy gets an id of its own.
    """
    return _TAB_ID_JS.replace("N_INPUTS", str(int(n_inputs)))


_TAB_ID_JS = f"""(...args) => {{
  const key = "{TAB_KEY}", left = key + "-left";
  let id = sessionStorage.getItem(key);
  if (id && sessionStorage.getItem(left) !== "1") id = null;
  sessionStorage.removeItem(left);
  if (!window.__rtwTabMarks) {{
    window.__rtwTabMarks = true;
    window.addEventListener("pagehide", () => sessionStorage.setItem(left, "1"));
    window.addEventListener("pageshow", (e) => {{ if (e.persisted) sessionStorage.removeItem(left); }});
  }}
  args = args.slice(0, N_INPUTS);
  args[args.length - 1] = id;
  return args;
}}"""

#: After the load: keep the tab id the server settled on in the tab's sessionStorage.
SAVE_TAB_ID_JS = f"""(id) => {{ if (id) sessionStorage.setItem("{TAB_KEY}", id); return []; }}"""

SAVE_FAILED = "Your transcript could not be saved on the server ({error}); it is still shown here, download it to keep it."


def browser_state(store: TranscriptStore, secret: str = "") -> gr.BrowserState:
    """The page's `gr.BrowserState` holding this browser's id (None until the page's first load).

    Its key: `secret` (BROWSER_SECRET, the same on every replica, so a browser whose
    replica is replaced is still known on another), else the one kept in the store."""
    return gr.BrowserState(None, storage_key=STORAGE_KEY, secret=secret or store.browser_secret())


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
        tab_id: str | None = None,
        transcript_id: str | None = None,
        segment_count: int = 0,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.store = store
        self.browser_id = browser_id
        self.tab = tab
        self.tab_id = tab_id
        self.transcript_id = transcript_id  # None: the next final starts a new transcript
        self.segment_count = segment_count
        self.loop = loop or asyncio.get_running_loop()
        self.failed: str | None = None

    def final(self, ev: TranscriptEvent) -> None:
        """A final the tab kept (times on the tab's timeline): write it now."""
        started = self.transcript_id is None or self.segment_count >= MAX_SEGMENTS_PER_TRANSCRIPT
        if started:
            if self.transcript_id is not None:
                self._watch(self.store.archive(self.transcript_id, self.browser_id))
            self.transcript_id, self.segment_count = new_id(), 0
        self.segment_count += 1
        try:
            fut = self.store.append_final(
                self.transcript_id, self.browser_id, ev.start_s, ev.end_s, ev.text,
                utterance_id=ev.utterance_id, language=ev.language, tab_id=self.tab_id, words=ev.words, speaker=ev.speaker,
            )
        except StoreError as exc:
            self._failed(exc)
            return
        self._watch(fut)
        if started:  # a transcript continued in a new one (too long) keeps the tab's names
            for label, name in dict(getattr(self.tab, "speaker_names", None) or {}).items():
                self.name_speaker(label, name)

    def name_speaker(self, label: str, name: str) -> Future[bool] | None:
        """A person named a speaker of the tab's transcript ("" takes the name back): keep it
        with the transcript (after its finals so far: the store's one writer keeps order).
        None when nothing was written yet or the store refused."""
        if self.transcript_id is None:
            return None
        try:
            fut = self.store.name_speaker(self.transcript_id, self.browser_id, label, name)
        except StoreError as exc:
            self._failed(exc)
            return None
        self._watch(fut)
        return fut

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
    """Put a stored live transcript back into a fresh TabState (before its first stream),
    with the names a person gave its speakers."""
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
            words=seg.words,
            speaker=seg.speaker,
        )
        for i, seg in enumerate(stored.segments)
    ]
    tab.transcript.finals[:] = finals
    tab.speaker_names = dict(stored.info.speaker_names)
    tab.base_s = 0.0
    # The next stream's times go on from the end of what was said before.
    tab.offset_s = max(tab.offset_s, stored.info.duration, max((f.end_s for f in finals), default=0.0))
    tab.version += 1


@dataclass
class _Page:
    browser_id: str
    tab_id: str
    state: weakref.ref
    closed: bool = False


class OpenTabs:
    """The pages open in this process, by Gradio session: which tab ids of a browser are
    held by an open page, and which earlier page of the same tab is still flushing.

    Lives on the event loop's thread (the page's load and unload handlers are async).
    Forgets a page once it is closed and its stream is over; after a restart it is empty,
    so every stored transcript is free until its tab loads again (and finds its own first).
    """

    def __init__(self) -> None:
        self._pages: dict[str, _Page] = {}

    def opened(self, session: str, browser_id: str, tab_id: str, state: Any) -> None:
        self._prune()
        self._pages[session] = _Page(browser_id, tab_id, weakref.ref(state))

    def closed(self, session: str) -> None:
        page = self._pages.get(session)
        if page is not None:
            page.closed = True
        self._prune()

    def held(self, browser_id: str) -> frozenset[str]:
        """The tab ids of this browser with a page open now."""
        return frozenset(p.tab_id for p in self._pages.values() if p.browser_id == browser_id and not p.closed)

    def flushing(self, browser_id: str, tab_id: str, state: Any) -> Any | None:
        """An earlier page of the same tab whose stream is still running (a reload while it
        flushes its last final), or None."""
        for page in self._states(browser_id, tab_id):
            if page is not state and getattr(page, "live", False) and getattr(page, "successor", None) is None:
                return page
        return None

    def _states(self, browser_id: str, tab_id: str) -> Iterator[Any]:
        for page in list(self._pages.values()):
            state = page.state()
            if state is not None and page.browser_id == browser_id and page.tab_id == tab_id:
                yield state

    def _prune(self) -> None:
        for session, page in list(self._pages.items()):
            state = page.state()
            if state is None or (page.closed and not getattr(state, "live", False)):
                del self._pages[session]


#: The process's open pages (the page's load and unload handlers keep it).
OPEN_TABS = OpenTabs()


def take_over(tab: Any, earlier: Any) -> None:
    """A reloaded page (`tab`, fresh) goes on from the same tab's earlier page, whose stream
    is still flushing: its transcript and timeline now, its finals still to come later
    (`earlier.successor`), written by the same recorder to the same stored transcript."""
    tab.transcript.finals[:] = list(earlier.transcript.finals)
    tab.speaker_names = dict(earlier.speaker_names)
    tab.base_s = earlier.base_s
    handler = earlier.handler
    end = handler.tab_offset_s + handler.audio_s if handler is not None else earlier.offset_s
    tab.offset_s = max(tab.offset_s, earlier.offset_s, end)
    tab.version += 1
    sink = earlier.sink
    if isinstance(sink, LiveRecorder):
        sink.tab = tab
    tab.sink, earlier.sink = sink, None
    earlier.successor = tab


async def attach(
    tab: Any, value: Any, store: TranscriptStore, tab_value: Any = None, *, session: str | None = None, pages: OpenTabs = OPEN_TABS
) -> tuple[str, str]:
    """On page load: this browser's id and this tab's id (new ones if it has none) and the
    tab's live transcript.

    Returns (browser id, tab id) for the page to keep. A store that fails leaves the page
    working without saving, and says so in the tab's message.
    """
    browser_id = browser_id_of(value) or new_id()
    tab_id = tab_value if valid_id(tab_value) else new_id()
    sink = getattr(tab, "sink", None)
    if sink is not None and getattr(sink, "browser_id", None) == browser_id:
        return browser_id, getattr(sink, "tab_id", None) or tab_id  # already attached (a second load event)
    earlier = pages.flushing(browser_id, tab_id, tab)
    if session is not None:
        pages.opened(session, browser_id, tab_id, tab)
    if earlier is not None and not tab.transcript.finals and not tab.live:
        take_over(tab, earlier)
        if tab.sink is not None:
            return browser_id, tab_id
    try:
        held = pages.held(browser_id) - {tab_id}
        stored = await asyncio.to_thread(store.current_live, browser_id, tab_id, held_tabs=held)
    except StoreError as exc:
        tab.message = SAVE_FAILED.format(error=exc)
        return browser_id, tab_id
    recorder = LiveRecorder(store, browser_id, tab, tab_id=tab_id)
    if stored is not None and not tab.transcript.finals and not tab.live:
        restore(tab, stored)
        recorder.transcript_id, recorder.segment_count = stored.info.id, stored.info.segment_count
    tab.sink = recorder
    return browser_id, tab_id


def detach(session: str | None, pages: OpenTabs = OPEN_TABS) -> None:
    """On page unload (closed or reloaded): its tab no longer holds its transcript."""
    if session is not None:
        pages.closed(session)


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
