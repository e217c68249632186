"""The page's live handler over a real WebRTC connection, without a browser.

An aiortc peer in the test plays a clip into the page's own FastRTC `WebRTC` component
(the offer goes to the component's `handle_offer`, as the page's widget posts it), the
page's inputs arrive the way Gradio delivers them (FastRTC's plain `set_input` from a
worker thread), and the transcript must appear in the tab's state. This is where
threading mistakes show (issue 17, case 4: settings written off the event loop) without
the cost of Chromium; the real engine and the real page are tests/e2e.
"""

from __future__ import annotations

import asyncio
import fractions
import threading
import time

import av
import gradio as gr
import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

from settings import Settings
from tests.fakes import WordsEngine
from web.live import TabState
from web.page import build_live_tab
from web.sessions import StreamSlots

FRAME_S = 0.02
RATE = 48_000


class ClipTrack(MediaStreamTrack):
    """A microphone that says `audio` (16 kHz float32) in real time, then stays silent."""

    kind = "audio"

    def __init__(self, audio_16k: np.ndarray) -> None:
        super().__init__()
        up = np.repeat(np.clip(audio_16k, -1, 1), 3)  # 48 kHz
        self._pcm = (up * 32767).astype(np.int16)
        self._pos = 0
        self._start: float | None = None
        self.sent_s = 0.0

    async def recv(self) -> av.AudioFrame:
        n = int(RATE * FRAME_S)
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + self._pos / RATE
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        chunk = self._pcm[self._pos : self._pos + n]
        if len(chunk) < n:
            chunk = np.concatenate([chunk, np.zeros(n - len(chunk), np.int16)])
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._pos
        frame.time_base = fractions.Fraction(1, RATE)
        self._pos += n
        self.sent_s = self._pos / RATE
        return frame


@pytest.fixture(scope="module")
def clip():
    from evaluation import clips, read_audio
    from tests.datasets import TEST_DATA

    c = next(c for c in clips(kind="speech", lang="en", base=TEST_DATA) if c.name == "cmu_arctic__awb_arctic_a0007")
    return c, read_audio(c.path)


async def _wait(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


async def test_a_webrtc_peer_streams_into_the_page_handler(clip) -> None:
    c, audio = clip
    engine = WordsEngine(c.text, c.duration, multilingual=True)
    with gr.Blocks():
        build_live_tab(engine, Settings(api_key=""), StreamSlots(2))
        from fastrtc import WebRTC

        mic = next(b for b in gr.context.Context.root_block.blocks.values() if isinstance(b, WebRTC))

    pc = RTCPeerConnection()
    pc.createDataChannel("text")
    silence = np.zeros(int(16_000 * 1.5), np.float32)
    track = ClipTrack(np.concatenate([silence, audio, silence, silence]))
    pc.addTrack(track)
    await pc.setLocalDescription(await pc.createOffer())
    webrtc_id = "in-process-peer"
    answer = await mic.handle_offer(
        {"sdp": pc.localDescription.sdp, "type": "offer", "webrtc_id": webrtc_id}, mic.set_additional_outputs(webrtc_id)
    )
    assert "sdp" in answer, answer
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
    try:
        await _wait(lambda: mic.connections.get(webrtc_id), 30, "the server to take the audio track")
        handler = mic.handlers[webrtc_id]
        tab = TabState()
        # Gradio runs FastRTC's setter in a worker thread, on .change and every .tick.
        set_in = await asyncio.to_thread(lambda: (mic.set_input(webrtc_id, webrtc_id, tab, "en", "transcribe"), threading.get_ident())[1])
        assert set_in != threading.get_ident()
        await _wait(lambda: handler.stream is not None, 30, "the stream to start")
        await _wait(lambda: tab.transcript.finals, 60, "a final")
        # A change from the worker thread mid-stream is applied on the event loop, whole.
        applied_in: list[int] = []
        use = handler.stream.use
        handler.stream.use = lambda opts: (applied_in.append(threading.get_ident()), use(opts))
        await asyncio.to_thread(mic.set_input, webrtc_id, webrtc_id, tab, "de", "translate")
        await _wait(lambda: handler.stream.session.options.language == "de", 10, "the new language")
        assert handler.stream.session.options.task == "translate"
        assert applied_in and set(applied_in) == {threading.get_ident()}, "options changed off the event loop"
    finally:
        await pc.close()
    handler.stop_requested = True
    await _wait(lambda: not tab.live, 30, "the stream to end after the peer closed")
    text = " ".join(f.text for f in tab.transcript.finals)
    assert text.split()[:3] == c.text.split()[:3], text
    assert track.sent_s > c.duration
    assert any(call["language"] == "en" for call in engine.calls)
