"""The page's FastRTC handler without a browser: frames in, page snapshots out.

A fake engine (it "hears" the reference words in proportion to the audio it gets) keeps
these fast and exact; the real engine and real WebRTC are in test_page_e2e.py.
"""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from web.live import LiveHandler, LiveStats, TabState
from tests.fakes import WordsEngine
from web.sessions import StreamSlots

CLIP = "ljspeech_coqui__LJ001-0001"


class Channel:
    def __init__(self) -> None:
        self.messages: list[dict] = []

    def send(self, message: str) -> None:
        self.messages.append(json.loads(message))


@pytest.fixture(scope="module")
def clip():
    from evaluation import clips, read_audio
    from tests.datasets import TEST_DATA

    found = [c for c in clips(kind="speech", lang="en", base=TEST_DATA) if c.name == CLIP]
    if not found:
        pytest.skip(f"{CLIP} is not in the eval set")
    c = found[0]
    return c, read_audio(c.path)


def frames_48k(audio_16k: np.ndarray, lead_s: float = 0.5, tail_s: float = 1.5) -> list[tuple[int, np.ndarray]]:
    """What FastRTC hands `receive`: (48000, int16 array of shape (1, 960)), 20 ms each."""
    audio = np.concatenate([np.zeros(int(lead_s * 16000), np.float32), audio_16k, np.zeros(int(tail_s * 16000), np.float32)])
    up = np.repeat(audio, 3)
    pcm = (np.clip(up, -1, 1) * 32767).astype(np.int16)
    return [(48000, pcm[i : i + 960].reshape(1, -1)) for i in range(0, len(pcm) - 959, 960)]


def options(**changes):
    from streaming.session import SessionOptions

    return SessionOptions(**changes)


def handler_for(engine, slots: StreamSlots, stats: LiveStats | None = None) -> LiveHandler:
    """The page's handler over the one streaming service, as web/page.py builds it."""
    from streaming.service import StreamService

    return LiveHandler(StreamService(engine, options(), slots), stats=stats or LiveStats())


async def run_stream(handler: LiveHandler, tab: TabState, frames, *, language="auto", task="transcribe"):
    """start_up, receive every frame (letting decodes run), emit snapshots, shutdown."""
    from fastrtc import AdditionalOutputs

    handler.set_channel(Channel())
    handler.set_args(["webrtc-id", tab, language, task])
    await handler.start_up()
    outputs = []
    seen_partial_before_final = False

    async def drain():
        while True:
            out = await handler.emit()
            if isinstance(out, AdditionalOutputs):
                outputs.append(out)

    drainer = asyncio.create_task(drain())
    for i, frame in enumerate(frames):
        await handler.receive(frame)
        if i % 5 == 0:
            await asyncio.sleep(0.01)
        if tab.partial is not None and tab.partial.text and not tab.transcript.finals:
            seen_partial_before_final = True
    await handler.shutdown()
    await asyncio.sleep(0.3)
    drainer.cancel()
    return outputs, seen_partial_before_final


async def test_frames_become_partials_then_finals(clip):
    c, audio = clip
    engine = WordsEngine(c.text, c.duration)
    slots = StreamSlots(4)
    stats = LiveStats()
    handler = handler_for(engine, slots, stats).copy()
    tab = TabState()
    outputs, partial_first = await run_stream(handler, tab, frames_48k(audio))
    assert partial_first, "no partial text before the first final"
    assert outputs and all(o.args[0] is tab for o in outputs)
    assert tab.transcript.finals, "no final"
    from evaluation import wer

    assert wer([c.text], [tab.transcript.text]) <= 0.1
    assert not tab.live and tab.partial is None
    assert slots.active == 0 and stats.active == 0 and stats.streams_started == 1
    assert stats.frames == len(frames_48k(audio))
    # Frames after the stream ended are not taken.
    await handler.receive(frames_48k(audio)[0])
    assert stats.frames == len(frames_48k(audio))
    # Exports carry the finals.
    assert tab.transcript.to_srt().startswith("1\n") and "WEBVTT" in tab.transcript.to_vtt()


async def test_restart_continues_the_same_transcript(clip):
    c, audio = clip
    engine = WordsEngine(c.text, c.duration)
    slots = StreamSlots(4)
    tab = TabState()
    proto = handler_for(engine, slots)
    await run_stream(proto.copy(), tab, frames_48k(audio))
    first = list(tab.transcript.finals)
    assert first
    end_first = max(e.end_s for e in first)
    # A second connection of the same tab (after a stop or a dropped connection).
    await run_stream(proto.copy(), tab, frames_48k(audio))
    finals = tab.transcript.finals
    assert finals[: len(first)] == first, "the transcript so far was lost"
    assert len(finals) > len(first)
    assert min(e.start_s for e in finals[len(first) :]) >= end_first, "the second stream's times overlap the first's"
    assert tab.streams == 2 and slots.active == 0


async def test_tabs_are_independent(clip):
    c, audio = clip
    engine = WordsEngine(c.text, c.duration)
    slots = StreamSlots(4)
    proto = handler_for(engine, slots)
    tab_a, tab_b = TabState(), TabState()
    await asyncio.gather(run_stream(proto.copy(), tab_a, frames_48k(audio)), run_stream(proto.copy(), tab_b, frames_48k(audio)))
    assert tab_a.transcript.text and tab_a.transcript.text == tab_b.transcript.text
    assert len(tab_a.transcript.finals) == len(tab_b.transcript.finals)
    tab_b.clear()
    assert tab_a.transcript.finals and not tab_b.transcript.finals


async def test_full_app_refuses_with_a_clear_message(clip):
    from fastrtc import AdditionalOutputs

    c, audio = clip
    engine = WordsEngine(c.text, c.duration)
    slots = StreamSlots(1)
    stats = LiveStats()
    proto = handler_for(engine, slots, stats)
    running = proto.copy()
    running.set_channel(Channel())
    running.set_args(["a", TabState(), "auto", "transcribe"])
    await running.start_up()
    assert slots.active == 1

    refused, tab = proto.copy(), TabState()
    channel = Channel()
    refused.set_channel(channel)
    refused.set_args(["b", tab, "auto", "transcribe"])
    await refused.start_up()
    assert "full" in (tab.message or "")
    first = await refused.emit()
    assert isinstance(first, AdditionalOutputs) and first.args[0] is tab
    await refused.emit()
    assert {"type": "end_stream", "data": tab.message} in channel.messages
    await refused.receive(frames_48k(audio)[0])
    assert refused.session is None and stats.streams_refused == 1
    await refused.shutdown()
    assert slots.active == 1  # the refused one never held a slot
    await running.shutdown()
    assert slots.active == 0


async def test_language_and_task_reach_the_engine(clip):
    c, audio = clip
    engine = WordsEngine(c.text, c.duration, multilingual=True)
    handler = handler_for(engine, StreamSlots(2))
    await run_stream(handler, TabState(), frames_48k(audio)[:300], language="de", task="translate")
    assert engine.calls
    assert all(k.get("language") == "de" and k.get("task") == "translate" for k in engine.calls)


async def test_english_only_model_ignores_language_and_task(clip):
    c, audio = clip
    engine = WordsEngine(c.text, c.duration, multilingual=False)
    handler = handler_for(engine, StreamSlots(2))
    await run_stream(handler, TabState(), frames_48k(audio)[:300], language="de", task="translate")
    assert engine.calls and all(k.get("task") == "transcribe" and k.get("language") in (None, "en") for k in engine.calls)


def _final(i: int, start: float):
    from streaming.events import TranscriptEvent

    return TranscriptEvent("final", i, f"sentence number {i} of a long talk.", "", start, start + 3.0, 0.5)


def test_hour_long_transcript_keeps_the_page_light():
    """An hour of finals: the panel shows the newest lines only; unchanged parts are not re-sent."""
    import gradio as gr

    from web.page import MAX_SHOWN_FINALS, render, render_finals

    tab = TabState()
    for i in range(1200):  # one final every 3 s for an hour
        tab.apply(_final(i, i * 3.0), 0.0)
    html = render_finals(tab)
    assert html.count('class="rtw-final"') == MAX_SHOWN_FINALS
    assert "1199 of a long talk" in html and f"{1200 - MAX_SHOWN_FINALS} earlier lines" in html
    assert len(html) < 100_000
    assert len(tab.transcript.to_txt().splitlines()) == 1200  # downloads keep everything

    class Info:
        model, engine, device = "m", "e", "cpu"

    class Eng:
        info = Info()

    first = render(tab, Eng(), StreamSlots(2))
    again = render(tab, Eng(), StreamSlots(2))
    assert isinstance(first[0], str)
    assert isinstance(again[0], type(gr.skip())), "the unchanged transcript was sent again"


def test_clear_restarts_times_at_zero():
    tab = TabState()
    tab.apply(_final(0, 10.0), 0.0)
    tab.offset_s = 20.0
    tab.clear()
    assert not tab.transcript.finals
    tab.apply(_final(1, 5.0), tab.offset_s)
    assert tab.transcript.finals[0].start_s == pytest.approx(5.0)


def test_tab_state_is_fresh_per_browser_tab():
    import copy

    tab = TabState()
    tab.apply(_final(0, 0.0), 0.0)
    fresh = copy.deepcopy(tab)  # what gr.State does for every new tab
    assert fresh is not tab and not fresh.transcript.finals


def test_browser_audio_processing_is_off():
    from web.page import TRACK_CONSTRAINTS

    assert TRACK_CONSTRAINTS["echoCancellation"] is False
    assert TRACK_CONSTRAINTS["noiseSuppression"] is False
    assert TRACK_CONSTRAINTS["autoGainControl"] is False


async def test_a_settings_change_from_a_gradio_worker_thread_lands_on_the_event_loop():
    """Issue 17, case 4: Gradio runs FastRTC's input setter (wired to `.change`/`.tick`) in a
    worker thread; before, it wrote the running stream's language, task and prompt one by
    one from that thread, and set asyncio events there."""
    import threading

    engine = WordsEngine("a b c", 1.0, multilingual=True)
    handler = handler_for(engine, StreamSlots(2))
    tab = TabState()
    handler.set_channel(Channel())
    handler.set_args(["webrtc-id", tab, "en", "transcribe"])
    await handler.start_up()
    assert handler.stream is not None
    loop_thread = threading.get_ident()
    applied_in: list[int] = []
    use = handler.stream.use

    def recording_use(opts):
        applied_in.append(threading.get_ident())
        use(opts)

    handler.stream.use = recording_use
    # As Gradio does it: the plain setter called from a worker thread.
    await asyncio.to_thread(handler.set_args, ["webrtc-id", tab, "de", "translate"])
    deadline = asyncio.get_running_loop().time() + 5
    while not applied_in and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    assert applied_in == [loop_thread], "the options were changed off the event loop"
    current = handler.stream.session.options
    assert (current.language, current.task) == ("de", "translate")
    handler.stop_requested = True
    await handler.shutdown()
