"""The page: live transcription from the microphone, and a tab for recordings.

Layout of the live tab: the microphone widget (FastRTC `WebRTC`, audio, send-only; the
browser's echo cancellation, noise suppression and automatic gain are off, since they
change the audio the model hears), language and task selectors (multilingual models
only), clear and download buttons (txt, srt, vtt), a "Rename speaker" control (once
finals carry speaker labels: web/speaker_names.py), the transcript panel (settled
finals, then the open utterance: its committed words, then its tentative words in grey
italics), and a status line (model, engine, state, latency of the last final, lag,
audio received, streams in use, what ends a turn: silence or the turn model).

Each tab has its own `TabState` (a `gr.State`), so several tabs or people each see only
their own transcript; all streams share the one engine and the MAX_STREAMS limit.
"""

from __future__ import annotations

import asyncio
import html
import secrets
import time
import weakref
from typing import Any

import gradio as gr

from engine.base import Engine
from engine.languages import LANGUAGES, supported_languages
from settings import Settings
from streaming.options import SessionOptions
from web.exports import EXPORTS, ExportFiles
from web.health import public_device  # the endpoint's host only, never its credentials
from web.live import DROPPED_MESSAGE, LiveHandler, TabState
from web.recorder import SAVE_TAB_ID_JS, attach, detach, start_new, tab_id_js
from web.sessions import StreamSlots
from web.speaker_names import (
    control_updates,
    labels_of,
    named,
    rename_live,
    shown_speaker,
    speaker_control,
    speakers_of,
)
from web.store import TranscriptStore
from web.word_spans import WORD_CSS, piece_html

#: Finals shown in the panel; older ones stay in the downloads (keeps an hour-long page light).
MAX_SHOWN_FINALS = 400
#: A full refresh this long after a stream ended (see on_tick).
SETTLE_REFRESH_S = 2.0
#: How long "stop" waits for the last utterance's final.
STOP_WAIT_S = 30.0

TRACK_CONSTRAINTS: dict[str, Any] = {
    "echoCancellation": False,
    "noiseSuppression": False,
    "autoGainControl": False,
    "sampleRate": {"ideal": 48000},
    "sampleSize": {"ideal": 16},
    "channelCount": {"ideal": 1},
}

CSS = """
#rtw-panel { min-height: 14rem; }
#finals .rtw-transcript { max-height: 28rem; overflow-y: auto; display: flex; flex-direction: column-reverse; }
#finals p.rtw-final { margin: 0 0 0.35rem 0; line-height: 1.5; }
.rtw-speaker { font-weight: 600; margin-right: 0.3em; }
#finals .rtw-earlier { color: var(--body-text-color-subdued); font-size: 0.85em; }
#finals .rtw-empty, #partial .rtw-listening { color: var(--body-text-color-subdued); font-style: italic; }
#partial .rtw-partial { line-height: 1.5; min-height: 1.5em; }
#partial .rtw-committed { color: var(--body-text-color); opacity: 0.85; }
#partial .rtw-tentative { color: var(--body-text-color-subdued); font-style: italic; opacity: 0.7; }
#status .rtw-status { font-size: 0.85em; color: var(--body-text-color-subdued); }
#status .rtw-live { color: #d11; font-weight: 600; }
#status .rtw-message { color: #d11; font-weight: 600; }
/* Gradio greys a "pending" HTML output (opacity 0.2) while its event runs, and the stream's
   updates, the timer and the buttons keep these pending: the settled text would look like
   the tentative words. The page shows its own state (status line, grey tentative words). */
#finals .pending, #partial .pending, #status .pending { opacity: 1; }
""" + WORD_CSS

def language_choices(languages: dict[str, str] = LANGUAGES) -> list[tuple[str, str]]:
    """The language menu (page and upload tab): "detect" first, then by name
    (`engine.languages.supported_languages(engine)`: what the model can be asked for)."""
    return [("Detect automatically", "auto")] + sorted(((name, code) for code, name in languages.items()))


def task_radio(*, visible: bool, elem_id: str) -> gr.Radio:
    """Transcribe or translate to English (page and upload tab; multilingual models only)."""
    return gr.Radio(
        [("Transcribe", "transcribe"), ("Translate to English", "translate")],
        value="transcribe",
        label="Task",
        visible=visible,
        elem_id=elem_id,
    )


# -- rendering -------------------------------------------------------------------------


def _fmt_time(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def render_finals(tab: TabState) -> str:
    finals = tab.transcript.finals
    if not finals:
        return '<div class="rtw-transcript"><div><p class="rtw-empty">The transcript appears here. Press Record and speak.</p></div></div>'
    shown = finals[-MAX_SHOWN_FINALS:]
    lines = []
    hidden = len(finals) - len(shown)
    if hidden:
        lines.append(f'<p class="rtw-earlier">… {hidden} earlier lines are in the downloads.</p>')
    for ev in shown:
        lines.append(
            f'<p class="rtw-final" title="{_fmt_time(ev.start_s)}–{_fmt_time(ev.end_s)}">'
            f"{piece_html(ev.start_s, ev.end_s, ev.text, ev.speaker, ev.words, lambda label: shown_speaker(label, tab.speaker_names))}</p>"
        )
    # column-reverse keeps the newest line in view; the inner div keeps reading order.
    return '<div class="rtw-transcript"><div>' + "".join(lines) + "</div></div>"


def render_partial(tab: TabState) -> str:
    p = tab.partial
    if p is not None and (p.committed or p.tentative):
        parts = []
        if p.committed:
            parts.append(f'<span class="rtw-committed">{html.escape(p.committed)}</span>')
        if p.tentative:
            parts.append(f'<span class="rtw-tentative">{html.escape(p.tentative)}</span>')
        return '<div class="rtw-partial">' + " ".join(parts) + "</div>"
    if tab.live:
        return '<div class="rtw-partial"><span class="rtw-listening">Listening…</span></div>'
    return '<div class="rtw-partial"></div>'


def turn_label(options: SessionOptions) -> str:
    """What ends an utterance on this page (TURN_DETECTION, MIN_SILENCE_MS), for the status
    line: a person comparing the modes must see which one their words went through."""
    if options.turn_detection == "semantic":
        return f"semantic turns ({options.eagerness})"
    return f"silence {options.min_silence_ms} ms"


def render_status(tab: TabState, engine: Engine, slots: StreamSlots, *, turns: str | None = None) -> str:
    """The status line; `turns` is `turn_label(...)` of the page's streams (None: not shown)."""
    info = engine.info
    parts = [f"Model <b>{html.escape(str(info.model))}</b>", f"{html.escape(str(info.engine))} on {html.escape(public_device(info))}"]
    if tab.live:
        parts.append('<span class="rtw-live">● live</span>')
    elif tab.streams:
        parts.append("stopped")
    else:
        parts.append("ready")
    latency = "–" if tab.last_final_latency_s is None else f"{tab.last_final_latency_s:.2f} s"
    lag = "–" if tab.lag_s is None or not tab.live else f"{tab.lag_s:.1f} s"
    parts.append(f'last final <span class="rtw-latency">{latency}</span>')
    parts.append(f'lag <span class="rtw-lag">{lag}</span>')
    audio = tab.handler.audio_s if tab.handler is not None and tab.live else tab.stream_audio_s
    parts.append(f'audio <span class="rtw-audio">{audio:.1f} s</span>')
    parts.append(f"streams {slots.active}/{slots.limit if slots.limit > 0 else '∞'}")
    if turns:
        parts.append(f'turns end by <span class="rtw-turns">{html.escape(turns)}</span>')
    out = " · ".join(parts)
    if tab.message:
        out += f'<div class="rtw-message">{html.escape(tab.message)}</div>'
    return f'<div class="rtw-status">{out}</div>'


class _Downloads:
    """Writes a tab's transcript as txt / srt / vtt files for the download buttons.

    One set per tab in `web.exports` (Gradio serves it in place): each write replaces the
    previous set, an empty transcript (Clear, New) leaves none, and the set goes when
    Gradio drops the closed tab's state (this object with it) or its cache age passes."""

    def __init__(self, exports: ExportFiles = EXPORTS) -> None:
        self.exports = exports
        self.owner = ("live", secrets.token_hex(8))
        weakref.finalize(self, exports.drop, self.owner)

    @property
    def dir(self) -> str:
        """The folder of the tab's set."""
        return self.exports.folder(self.owner, "live")

    def write(self, tab: TabState) -> tuple[str | None, str | None, str | None]:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        transcript = named(tab.transcript.finals, tab.speaker_names)  # the speakers' names, where given
        files = [(f"transcript-{stamp}.{fmt}", transcript.export(fmt)) for fmt in ("txt", "srt", "vtt")]
        paths = self.exports.write(self.owner, "live", files if tab.transcript.finals else [])
        if not paths:
            return None, None, None
        return paths[0], paths[1], paths[2]


def _downloads_for(tab: TabState) -> _Downloads:
    if tab.marks.downloads is None:
        tab.marks.downloads = _Downloads()
    return tab.marks.downloads


def _signature(tab: TabState) -> tuple:
    p = tab.partial
    return (tab.version, tab.live, tab.streams, tab.message, p.text if p else None, tab.last_final_latency_s, round(tab.stream_audio_s, 1))


def render(tab: TabState, engine: Engine, slots: StreamSlots, *, force: bool = False, turns: str | None = None) -> list[Any]:
    """Updates for [finals, partial, status, txt, srt, vtt, speaker row, speaker dropdown];
    unchanged parts are skipped."""
    marks = tab.marks
    marks.signature = _signature(tab)
    finals: Any = gr.skip()
    speakers: list[Any] = [gr.skip()] * 2
    if force or marks.finals_version != tab.version:
        finals = render_finals(tab)
        marks.finals_version = tab.version
        labels = labels_of(speakers_of(tab.transcript.finals))
        shown = (tuple(labels), tuple(sorted(tab.speaker_names.items())))
        if force or shown != marks.speakers:
            speakers = control_updates(labels, tab.speaker_names, keep_choice=bool(marks.speakers and marks.speakers[0]))
            marks.speakers = shown
    downloads: list[Any] = [gr.skip()] * 3
    now = time.monotonic()
    stale = marks.downloads_version != tab.version
    # Not while live: rewriting the whole transcript every few seconds costs O(n^2) bytes
    # over a long session. Once it stops (Stop, a dropped connection, Clear) it is written once.
    if (force or stale) and (not tab.live or not tab.transcript.finals):
        paths = _downloads_for(tab).write(tab)
        downloads = [gr.DownloadButton(value=p, interactive=p is not None) for p in paths]
        marks.downloads_version = tab.version
        marks.downloads_at = now
    return [finals, render_partial(tab), render_status(tab, engine, slots, turns=turns), *downloads, *speakers]


def _session(request: gr.Request | None) -> str | None:
    """Gradio's id of one page load (its session hash)."""
    return getattr(request, "session_hash", None) if request is not None else None


# -- the live tab ------------------------------------------------------------------------


def build_live_tab(
    engine: Engine,
    settings: Settings,
    slots: StreamSlots,
    *,
    rtc_configuration: Any = None,
    server_rtc_configuration: dict[str, Any] | None = None,
    store: TranscriptStore | None = None,
    browser: gr.BrowserState | None = None,
) -> None:
    """The live tab's components and events (call inside a `gr.Blocks`).

    With a `store` (and the page's `browser` id), the tab's transcript is kept in the
    database: a reload or a restart shows it again (see web/recorder.py)."""
    from fastrtc import WebRTC

    from streaming.service import StreamService

    multilingual = bool(engine.info.multilingual)
    handler = LiveHandler(StreamService.from_settings(engine, settings, slots))
    turns = turn_label(handler.service.defaults)
    default_language = (settings.language or "auto") if multilingual else "en"
    if default_language not in LANGUAGES:
        default_language = "auto"

    tab = gr.State(TabState())
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=280):
            mic = WebRTC(
                label="Microphone",
                modality="audio",
                mode="send",
                track_constraints=TRACK_CONSTRAINTS,
                rtc_configuration=rtc_configuration,
                server_rtc_configuration=server_rtc_configuration,
                full_screen=False,
                elem_id="mic",
            )
            language = gr.Dropdown(
                language_choices(supported_languages(engine)),
                value=default_language,
                label="Language",
                info="Spoken language (changes apply to the next utterance)",
                visible=multilingual,
                elem_id="language",
            )
            task = task_radio(visible=multilingual, elem_id="task")
            with gr.Row():
                clear = gr.Button("Clear transcript", elem_id="clear", size="sm")
                new = gr.Button("New transcript", elem_id="new-transcript", size="sm", visible=store is not None)
            with gr.Row():
                dl_txt = gr.DownloadButton("⬇ txt", value=None, interactive=False, size="sm", min_width=60, elem_id="download-txt")
                dl_srt = gr.DownloadButton("⬇ srt", value=None, interactive=False, size="sm", min_width=60, elem_id="download-srt")
                dl_vtt = gr.DownloadButton("⬇ vtt", value=None, interactive=False, size="sm", min_width=60, elem_id="download-vtt")
            speakers = speaker_control("live")
        with gr.Column(scale=2):
            with gr.Group(elem_id="rtw-panel"):
                finals = gr.HTML(render_finals(TabState()), elem_id="finals", label="Transcript")
                partial = gr.HTML(render_partial(TabState()), elem_id="partial")
    status = gr.HTML(render_status(TabState(), engine, slots, turns=turns), elem_id="status")
    outputs = [finals, partial, status, dl_txt, dl_srt, dl_vtt, *speakers.outputs]

    mic.stream(
        handler,
        inputs=[mic, tab, language, task],
        outputs=[mic],
        # MAX_STREAMS is enforced by the handler with the shared StreamSlots (and a clear
        # message); FastRTC's own cap only guards against runaway connection counts.
        concurrency_limit=max(64, 4 * settings.max_streams) if settings.max_streams > 0 else 100_000,
        time_limit=None,
    )

    # The tab's state must change on the event loop only, where finals land. Gradio runs
    # plain `def` event handlers in worker threads, so the handlers below are `async def`;
    # this one is the exception on purpose: FastRTC calls it, unawaited, from its own async
    # generator (on the loop already), and an `async def` here hands Gradio a coroutine.
    def on_outputs(state: TabState, *_: Any) -> list[Any]:
        return render(state, engine, slots, turns=turns)

    dep = mic.on_additional_outputs(on_outputs, inputs=[tab], outputs=outputs, concurrency_limit=None, queue=True)
    # FastRTC fixes "minimal" progress (a running timer over the transcript); hide it.
    root = gr.context.Context.root_block
    block_fn = root.fns.get(dep.get("id")) if root is not None and isinstance(dep, dict) else None
    if block_fn is not None:
        block_fn.show_progress = "hidden"

    async def on_stop(state: TabState) -> list[Any]:
        h = state.handler
        if h is not None:
            h.stop_requested = True
        if state.message == DROPPED_MESSAGE:
            state.message = None
        if h is not None and state.live:
            # Stop taking audio now and flush the last utterance (the connection's own
            # shutdown, when it closes, finds this already done).
            task_ = asyncio.ensure_future(h.shutdown())
            try:
                await asyncio.wait_for(asyncio.shield(task_), STOP_WAIT_S)
            except (asyncio.TimeoutError, TimeoutError):
                pass
        return render(state, engine, slots, force=True, turns=turns)

    mic.stop_recording(on_stop, inputs=[tab], outputs=outputs, concurrency_limit=None, show_progress="hidden")

    # After a dropped connection (or anything that ends a stream without the Stop
    # button) the stream of updates is gone: a light poll shows the last final and the
    # state. While live, or when nothing changed, it sends nothing.
    timer = gr.Timer(1.0)

    async def on_tick(state: TabState) -> list[Any]:
        if state.live:
            return [gr.skip()] * len(outputs)
        ended = state.ended_at
        if ended is not None and time.monotonic() - ended > SETTLE_REFRESH_S and state.marks.settled_at != ended:
            # Once, a moment after a stream ended: everything again, whatever updates
            # raced with the end of the stream.
            state.marks.settled_at = ended
            return render(state, engine, slots, force=True, turns=turns)
        if state.marks.signature == _signature(state):
            return [gr.skip()] * len(outputs)
        return render(state, engine, slots, turns=turns)

    timer.tick(on_tick, inputs=[tab], outputs=outputs, concurrency_limit=None, show_progress="hidden")

    async def on_clear(state: TabState) -> list[Any]:
        state.clear()
        return render(state, engine, slots, force=True, turns=turns)

    clear.click(on_clear, inputs=[tab], outputs=outputs, concurrency_limit=None, show_progress="hidden")

    async def on_rename(state: TabState, label: str | None, name: str | None) -> list[Any]:
        rename_live(state, label, name)  # kept by the tab's recorder; its failure shows in the status
        return [*render(state, engine, slots, force=True, turns=turns), ""]

    for trigger in (speakers.button.click, speakers.name.submit):
        trigger(
            on_rename, inputs=[tab, speakers.pick, speakers.name], outputs=[*outputs, speakers.name],
            concurrency_limit=None, show_progress="hidden",
        )

    if store is not None and browser is not None and root is not None:
        # The tab's id: read from the tab's sessionStorage by `tab_id_js` before the load
        # runs, settled by the server (a new one for a new tab), written back after it.
        tab_id = gr.Textbox(visible=False, elem_id="tab-id")

        async def on_load(state: TabState, browser_value: Any, tab_value: Any, request: gr.Request) -> list[Any]:
            # This browser's and this tab's ids (made now on a first visit) and the tab's
            # transcript so far (see web/recorder.py for what tabs of one browser share).
            browser_id, tab_id_ = await attach(state, browser_value, store, tab_value, session=_session(request))
            return [browser_id, tab_id_, *render(state, engine, slots, force=True, turns=turns)]

        root.load(
            on_load, inputs=[tab, browser, tab_id], outputs=[browser, tab_id, *outputs], show_progress="hidden", js=tab_id_js(3)
        ).then(None, inputs=[tab_id], outputs=None, js=SAVE_TAB_ID_JS, show_progress="hidden")

        async def on_unload(request: gr.Request) -> None:
            detach(_session(request))

        root.unload(on_unload)

        async def on_new(state: TabState) -> list[Any]:
            start_new(state)  # the transcript so far stays in the History tab
            return render(state, engine, slots, force=True, turns=turns)

        new.click(on_new, inputs=[tab], outputs=outputs, concurrency_limit=None, show_progress="hidden")
