"""Issue 12, disk and threads on the page: downloads are not rewritten while live, and every
event handler of the live tab runs on the event loop (an `async def`), where finals land."""

from __future__ import annotations

import inspect
import os

from engine.base import EngineInfo
from web.live import TabState
from web.sessions import StreamSlots


class _Engine:
    info = EngineInfo(model="m", engine="fake", device="cpu", multilingual=False)


def _final(i: int):
    from streaming.events import TranscriptEvent

    return TranscriptEvent("final", i, f"sentence number {i}.", "", i * 3.0, i * 3.0 + 2.5, 0.5)


def test_downloads_are_written_once_when_the_stream_stops_not_every_few_seconds_while_live():
    from web.page import render

    tab, engine, slots = TabState(), _Engine(), StreamSlots(4)
    tab.live = True
    for i in range(200):  # an hour-long stream: before, a full rewrite every ~5 s (O(n^2) bytes)
        tab.apply(_final(i), 0.0)
        tab.marks.downloads_at = -1e9  # as if the refresh interval had passed every time
        render(tab, engine, slots)
    assert tab.marks.downloads is None or not os.listdir(tab.marks.downloads.dir), "files written while live"
    tab.live = False
    render(tab, engine, slots, force=True)
    files = os.listdir(tab.marks.downloads.dir)
    assert sorted(f.rsplit(".", 1)[1] for f in files) == ["srt", "txt", "vtt"]  # one set, the previous one removed
    tab.clear()
    render(tab, engine, slots, force=True)
    assert os.listdir(tab.marks.downloads.dir) == []  # a cleared transcript leaves nothing downloadable


def test_live_tab_handlers_run_on_the_event_loop():
    import gradio as gr

    from settings import Settings
    from web.page import build_live_tab

    with gr.Blocks() as page:
        build_live_tab(_Engine(), Settings(), StreamSlots(4))
    ours = [f.fn for f in page.fns.values() if f.fn is not None and getattr(f.fn, "__module__", "") == "web.page"]
    assert ours, "no handlers found"
    threaded = [f.__name__ for f in ours if not inspect.iscoroutinefunction(f)]
    assert not threaded, f"plain def handlers run in worker threads: {threaded}"


def test_fastrtc_output_callback_returns_values_not_coroutines():
    """FastRTC's on_additional_outputs calls our callback unawaited inside its own async
    generator (on the loop): an `async def` callback handed Gradio a coroutine and the
    page's transcript never updated (CI's browser tests timed out waiting for a final)."""
    import gradio as gr

    from settings import Settings
    from web.page import build_live_tab

    with gr.Blocks() as page:
        build_live_tab(_Engine(), Settings(), StreamSlots(4))
    wrapped = []
    for f in page.fns.values():
        for cell in getattr(f.fn, "__closure__", None) or ():
            try:
                inner = cell.cell_contents
            except ValueError:
                continue
            if callable(inner) and getattr(inner, "__module__", "") == "web.page":
                wrapped.append(inner)
    assert wrapped, "the additional-outputs callback was not found"
    assert not [w.__name__ for w in wrapped if inspect.iscoroutinefunction(w)]
