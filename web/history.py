"""The page's History tab: this browser's earlier transcripts, to open, download and delete.

It lists what the store keeps for the browser's id (see web/recorder.py): live transcripts
set aside with **New transcript** and transcribed recordings, newest first, each with its
date (UTC), duration and first words. Opening one shows its text with times and offers
txt, srt, vtt and json (the same writers as everywhere else: `streaming.transcript`).
Where its segments carry speaker labels, "Rename speaker" names one for this transcript:
the viewer and the downloads write the name, the store keeps it (web/speaker_names.py).
The live transcripts of open tabs are not listed (Clear transcript is their delete); a
closed tab's live transcript is, marked "live, tab closed", so what a closed tab said is
found here too (the next new tab of the browser also continues it, web/recorder.py).
The list is read again whenever the tab is opened.

The download files are the tab's one set in `web.exports` (opening another item replaces
them); Delete removes every copy of that transcript this app wrote, closing the tab removes
the set.
"""

from __future__ import annotations

import asyncio
import html
import os
import time
from typing import Any

import gradio as gr

from engine.speakers.parts import parts_of
from streaming.events import TranscriptEvent
from streaming.transcript import Transcript
from web.exports import EXPORTS, ExportFiles
from web.recorder import OPEN_TABS, OpenTabs, browser_id_of
from web.speaker_names import (
    control_updates,
    labels_of,
    named,
    rename_stored,
    shown_speaker,
    speaker_control,
    speakers_of,
)
from web.store import StoredTranscript, StoreError, TranscriptInfo, TranscriptStore
from web.word_spans import words_html

FORMATS = ("txt", "srt", "vtt", "json")
EMPTY = "Nothing here yet. Transcribed recordings, and live transcripts set aside with **New transcript**, appear here."


def _duration(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def label(info: TranscriptInfo) -> str:
    """`2026-12-02 18:51 UTC · 0:42 · recording talk.mp3 · And so my fellow …`"""
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(info.created))
    what = f"recording {info.title}" if info.kind == "upload" else ("live, tab closed" if info.current else "live")
    words = info.first_words or "(no words)"
    return f"{when} · {_duration(info.duration)} · {what} · {words}"


def listed(infos: list[TranscriptInfo], open_tabs: frozenset[str]) -> list[TranscriptInfo]:
    """What the History shows: everything but the live transcripts an open tab holds."""
    return [i for i in infos if not i.current or (i.tab_id is None or i.tab_id not in open_tabs)]


def as_transcript(stored: StoredTranscript) -> Transcript:
    """A stored transcript as `streaming.transcript.Transcript`, for its exports (speakers
    by the names a person gave them)."""
    return named(
        (
            TranscriptEvent(
                type="final", utterance_id=seg.utterance_id if seg.utterance_id is not None else i,
                committed=seg.text, tentative="", start_s=seg.start, end_s=seg.end, latency_s=0.0,
                language=stored.info.language, words=seg.words, speaker=seg.speaker,
            )
            for i, seg in enumerate(stored.segments)
        ),
        stored.info.speaker_names,
    )


def export_files(stored: StoredTranscript) -> list[tuple[str, str]]:
    """The transcript as txt, srt, vtt and json: (file name, text) in FORMATS order."""
    transcript = as_transcript(stored)
    info = stored.info
    stem = os.path.splitext(info.title)[0] if info.kind == "upload" and info.title else "transcript"
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem)[:60] or "transcript"
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(info.created))
    return [(f"{stem}-{stamp}.{fmt}", transcript.export(fmt)) for fmt in FORMATS]


def shown_text(stored: StoredTranscript) -> str:
    """One line per segment, `[m:ss] text` (`[m:ss] Speaker: text` where speakers were labelled)."""
    names = stored.info.speaker_names
    return "\n".join(
        f"[{_duration(part.start)}] {shown_speaker(part.speaker, names) + ': ' if part.speaker else ''}{part.text}"
        for seg in stored.segments
        for part in parts_of(seg)
    )


def words_view_html(stored: StoredTranscript) -> str:
    """The segments as HTML with a span per word (time and probability on hover, doubtful
    words underlined), or "" when no segment kept word times."""
    if not any(seg.words for seg in stored.segments):
        return ""
    names = stored.info.speaker_names
    lines = [
        f'<p class="rtw-final"><span class="rtw-time">[{_duration(part.start)}]</span> '
        f'{html.escape(shown_speaker(part.speaker, names) or "") + ": " if part.speaker else ""}{words_html(part.text, part.words)}</p>'
        for seg in stored.segments
        for part in parts_of(seg)
    ]
    return '<div class="rtw-history-words">' + "".join(lines) + "</div>"


def build_history_tab(
    store: TranscriptStore, browser: gr.BrowserState, exports: ExportFiles = EXPORTS, pages: OpenTabs = OPEN_TABS
) -> None:
    """The History tab (call inside a `gr.Tabs` / `gr.Blocks`); `exports` holds its download
    files, `pages` says which tabs are open (their live transcripts are not listed)."""
    with gr.Tab("History", id="history", elem_id="history-tab") as tab:
        note = gr.Markdown(EMPTY, elem_id="history-note")
        items = gr.Radio([], value=None, label="Earlier transcripts", elem_id="history-list", visible=False)
        with gr.Group(visible=False) as viewer:
            text = gr.Textbox(label="Transcript", lines=10, max_lines=30, interactive=False, show_copy_button=True, elem_id="history-text")
            # The same segments with word times (hover a word), where they were kept.
            words_view = gr.HTML("", visible=False, elem_id="history-words")
            with gr.Row():
                buttons = [
                    gr.DownloadButton(f"⬇ {fmt}", value=None, interactive=False, size="sm", min_width=60, elem_id=f"history-download-{fmt}")
                    for fmt in FORMATS
                ]
                delete = gr.Button("Delete", variant="stop", size="sm", elem_id="history-delete")
            speakers = speaker_control("history")

    def closed() -> list[Any]:
        return [
            gr.update(visible=False), "", gr.update(value="", visible=False), *[gr.update(value=None, interactive=False) for _ in FORMATS],
            *control_updates([], {}),
        ]

    async def refresh(browser_value: Any) -> list[Any]:
        browser_id = browser_id_of(browser_value)
        try:
            stored = await asyncio.to_thread(store.list_transcripts, browser_id, include_current=True) if browser_id else []
        except StoreError as exc:
            raise gr.Error(str(exc), title="History unavailable") from exc
        infos = listed(stored, pages.held(browser_id) if browser_id else frozenset())
        if not infos:
            return [gr.update(visible=True), gr.update(choices=[], value=None, visible=False), *closed()]
        choices = [(label(i), i.id) for i in infos]
        return [gr.update(visible=False), gr.update(choices=choices, value=None, visible=True), *closed()]

    async def open_(transcript_id: str | None, browser_value: Any, request: gr.Request) -> list[Any]:
        browser_id = browser_id_of(browser_value)
        session = getattr(request, "session_hash", None)
        if not transcript_id or not browser_id:
            if session:
                exports.drop(session, "history")
            return closed()
        try:
            stored = await asyncio.to_thread(store.get, transcript_id, browser_id)
        except StoreError as exc:
            raise gr.Error(str(exc), title="History unavailable") from exc
        if stored is None:
            raise gr.Error("That transcript is gone (deleted, or kept by another browser).")
        return await shown(stored, session)

    async def shown(stored: StoredTranscript, session: str | None, *, keep_choice: bool = False) -> list[Any]:
        # The tab's one History set: the previous item's files go as this one's are written.
        tid = stored.info.id
        paths = await asyncio.to_thread(exports.write, session or tid, "history", export_files(stored), transcript_id=tid)
        timed = words_view_html(stored)
        labels = labels_of(speakers_of(stored.segments))
        return [
            gr.update(visible=True), shown_text(stored), gr.update(value=timed, visible=bool(timed)),
            *[gr.update(value=p, interactive=True) for p in paths],
            *control_updates(labels, stored.info.speaker_names, keep_choice=keep_choice),
        ]

    async def rename(transcript_id: str | None, browser_value: Any, label: str | None, name: str | None, request: gr.Request) -> list[Any]:
        stored = await rename_stored(store, transcript_id, browser_id_of(browser_value), label, name)
        return [*await shown(stored, getattr(request, "session_hash", None), keep_choice=True), ""]

    async def delete_(transcript_id: str | None, browser_value: Any) -> list[Any]:
        browser_id = browser_id_of(browser_value)
        if transcript_id and browser_id:
            try:
                deleted = await asyncio.wrap_future(store.delete(transcript_id, browser_id))
            except StoreError as exc:
                raise gr.Error(str(exc), title="Not deleted") from exc
            if deleted:  # this browser's: its download files (any tab's, the upload tab's) go too
                await asyncio.to_thread(exports.forget, transcript_id)
        return await refresh(browser_value)

    viewed = [viewer, text, words_view, *buttons, *speakers.outputs]
    listing = [note, items, *viewed]
    tab.select(refresh, inputs=[browser], outputs=listing, show_progress="hidden")
    items.input(open_, inputs=[items, browser], outputs=viewed, show_progress="hidden")
    for trigger in (speakers.button.click, speakers.name.submit):
        trigger(rename, inputs=[items, browser, speakers.pick, speakers.name], outputs=[*viewed, speakers.name], show_progress="hidden")
    delete.click(delete_, inputs=[items, browser], outputs=listing, show_progress="hidden")
    root = gr.context.Context.root_block
    if root is not None:

        async def on_close(request: gr.Request) -> None:
            session = getattr(request, "session_hash", None)
            if session:
                exports.drop(session, "history")

        root.unload(on_close)
