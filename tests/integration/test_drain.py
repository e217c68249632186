"""Issue 17, case 5: a restart or deploy (SIGTERM) mid-sentence loses no final.

- The real app (`python app.py`, real vLLM, ENFORCE_EAGER) on loopback with a temp
  DATA_DIR: SIGTERM while a realtime client is in the middle of an utterance; the client
  gets that utterance's `completed`, then a close with 1012; the process exits within 30 s.
- The same app on a slow fake endpoint (ENGINE=remote: the final is still decoding for
  seconds after the SIGTERM): meanwhile /health answers 503 "draining" with its other
  fields, a new realtime stream and a new /v1 job are refused with the restart named.
- The page's path (FastRTC's handler, the streaming service, the tab and its recorder
  into a real SQLite store) driven in-process on the real engine, drained by the same
  `web.shutdown.drain_app` the server runs on SIGTERM: the open utterance's final is in
  the store after the store's close (what the server's shutdown hook does). Not a
  browser: the drain does not depend on how the frames arrived.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import time

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from evaluation import clips, read_audio
from tests.datasets import TEST_DATA
from tests.integration.closed_app import remote_env, running_app
from tests.integration.misbehaving_server import MisbehavingServer

CLIP = "ljspeech_coqui__LJ001-0001"
EXIT_WITHIN_S = 30.0


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    found = [c for c in clips(kind="speech", lang="en", base=TEST_DATA) if c.name == CLIP]
    if not found:
        pytest.skip(f"{CLIP} is not in the test data")
    return read_audio(found[0].path)


def _append(audio: np.ndarray) -> str:
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    return json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()})


async def _open(url: str):
    ws = await connect(url.replace("http://", "ws://") + "/v1/realtime?intent=transcription", max_size=2**22)
    assert json.loads(await ws.recv())["type"] == "transcription_session.created"
    await ws.send(json.dumps({"type": "transcription_session.update", "session": {"sample_rate": 16000}}))
    return ws


async def _speak_until_heard(ws, speech: np.ndarray, timeout_s: float = 120.0) -> list[dict]:
    """Half a second of silence, then speech at real-time pace until the server shows it
    heard the utterance (speech_started); the utterance stays open (no pause, no commit)."""
    await ws.send(_append(np.zeros(8000, np.float32)))
    events: list[dict] = []
    step = 1600  # 0.1 s
    deadline = time.monotonic() + timeout_s
    i = 0
    while not any(e["type"] == "input_audio_buffer.speech_started" for e in events):
        assert time.monotonic() < deadline, f"no speech_started: {events}"
        assert i < len(speech) * 9 // 10, "the utterance was nearly over before the server showed it"
        await ws.send(_append(speech[i : i + step]))
        i += step
        try:
            async with asyncio.timeout(0.1):
                while True:
                    events.append(json.loads(await ws.recv()))
        except TimeoutError:
            pass
    return events


async def _until_closed(ws, events: list[dict], timeout_s: float) -> int:
    """Read every event until the server closes; returns the close code."""
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                events.append(json.loads(await ws.recv()))
    except ConnectionClosed as closed:
        assert closed.rcvd is not None, "closed without a close frame"
        return closed.rcvd.code
    raise AssertionError("unreachable")


def _wait_exit(process, since: float) -> float:
    process.wait(timeout=EXIT_WITHIN_S + 5)
    return time.monotonic() - since


def _completed(events: list[dict]) -> list[dict]:
    return [e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed"]


def test_sigterm_mid_utterance_delivers_the_final_then_closes(tmp_path, speech):
    env = {
        "ENGINE": "vllm",
        "MODEL": os.environ.get("TEST_MODEL", "embedded:tiny.en"),
        "ENFORCE_EAGER": "true",
        "DATA_DIR": str(tmp_path / "data"),
        "DRAIN_TIMEOUT_S": "20",
    }
    with running_app(env) as app:

        async def scenario() -> tuple[list[dict], int, float]:
            ws = await _open(app.url)
            events = await _speak_until_heard(ws, speech)
            assert not _completed(events), "the utterance ended before the SIGTERM"
            await ws.send(_append(speech[len(speech) // 2 : len(speech) // 2 + 3200]))
            sent_at = time.monotonic()
            os.kill(app.pid, signal.SIGTERM)
            code = await _until_closed(ws, events, EXIT_WITHIN_S)
            return events, code, sent_at

        events, code, sent_at = asyncio.run(scenario())
        took = _wait_exit(app.process, sent_at)
        log = app.log()
    completed = _completed(events)
    assert completed and completed[-1]["transcript"].strip(), f"no final after SIGTERM: {[e['type'] for e in events]}\n{log[-3000:]}"
    last_types = [e["type"] for e in events]
    assert last_types.index("conversation.item.input_audio_transcription.completed") < len(last_types) - 1
    assert events[-1]["type"] == "error" and events[-1]["error"]["code"] == "server_restarting"
    assert code in (1001, 1012), code
    assert took < EXIT_WITHIN_S, f"exited {took:.1f} s after SIGTERM"
    assert "drained in" in log


def test_while_draining_new_work_is_refused_and_health_says_so(tmp_path, speech):
    with MisbehavingServer(default="slow", slow_s=4.0) as fake:
        env = remote_env(f"http://127.0.0.1:{fake.port}/v1", DATA_DIR=str(tmp_path / "data"), DRAIN_TIMEOUT_S="20")
        with running_app(env) as app:

            async def scenario() -> tuple[list[dict], int, float, dict]:
                ws = await _open(app.url)
                events = await _speak_until_heard(ws, speech)
                sent_at = time.monotonic()
                os.kill(app.pid, signal.SIGTERM)
                seen: dict = {}
                async with httpx.AsyncClient(base_url=app.url, timeout=10) as client:
                    async with asyncio.timeout(10):  # the final takes >= 4 s at the fake: still draining
                        while True:
                            health = await client.get("/health")
                            if health.status_code == 503:
                                break
                            await asyncio.sleep(0.05)
                    seen["health"] = health.json()
                    wav = _wav_bytes(speech[:16000])
                    job = await client.post("/v1/audio/transcriptions", files={"file": ("a.wav", wav, "audio/wav")}, data={"model": "whisper-1"})
                    seen["job"] = (job.status_code, job.json(), job.headers.get("retry-after"))
                late = await _open(app.url)
                await late.send(_append(speech[:3200]))
                late_events: list[dict] = []
                seen["late_code"] = await _until_closed(late, late_events, 10)
                seen["late_events"] = late_events
                code = await _until_closed(ws, events, EXIT_WITHIN_S)
                return events, code, sent_at, seen

            events, code, sent_at, seen = asyncio.run(scenario())
            took = _wait_exit(app.process, sent_at)
    health = seen["health"]
    assert health["status"] == "draining" and "engine" in health and health["jobs"]["draining"] is True
    status, body, retry_after = seen["job"]
    assert status == 503 and body["error"]["code"] == "server_restarting" and "restarting" in body["error"]["message"] and retry_after
    assert seen["late_code"] == 1012
    assert any(e["type"] == "error" and e["error"]["code"] == "server_restarting" for e in seen["late_events"])
    assert _completed(events), [e["type"] for e in events]
    assert code == 1012
    assert took < EXIT_WITHIN_S


def _wav_bytes(audio: np.ndarray) -> bytes:
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, audio, 16000, format="WAV")
    return buf.getvalue()


async def test_page_stream_final_reaches_the_store_on_drain(engine, tmp_path, speech):
    from streaming.service import ServerDraining, StreamService
    from streaming.session import SessionOptions
    from tests.unit.test_live_handler import Channel, frames_48k
    from web.jobs import JobQueue
    from web.live import RESTART_MESSAGE, LiveHandler, LiveStats, TabState
    from web.recorder import LiveRecorder
    from web.sessions import StreamSlots
    from web.shutdown import drain_app
    from web.store import TranscriptStore, new_id

    store = TranscriptStore.open_dir(str(tmp_path / "data"))
    browser = new_id()
    slots = StreamSlots(2)
    handler = LiveHandler(StreamService(engine, SessionOptions(), slots), stats=LiveStats()).copy()
    tab = TabState()
    tab.sink = LiveRecorder(store, browser, tab)
    handler.set_channel(Channel())
    handler.set_args(["webrtc-id", tab, "en", "transcribe"])
    await handler.start_up()
    frames = frames_48k(speech, lead_s=0.5, tail_s=0.0)
    deadline = time.monotonic() + 120
    for frame in frames[: len(frames) * 2 // 3]:
        await handler.receive(frame)
        await asyncio.sleep(0.02)  # real-time pace: the partials keep up as with a browser
    while tab.partial is None or not tab.partial.text:  # the utterance is open and shown
        assert time.monotonic() < deadline, "no partial"
        await asyncio.sleep(0.05)
    assert not tab.transcript.finals, "the utterance ended before the drain"
    await drain_app(slots, JobQueue(1, 0), timeout_s=20)
    assert tab.transcript.finals and tab.message == RESTART_MESSAGE
    assert slots.active == 0 and slots.draining
    with pytest.raises(ServerDraining):
        handler.service.open(handler.service.options(), lambda ev: None)
    await handler.shutdown()  # FastRTC's own end of the connection, as the widget closes it
    store.close()  # the server's shutdown hook: pending writes first
    again = TranscriptStore.open_dir(str(tmp_path / "data"))
    try:
        infos = again.list_transcripts(browser, include_current=True)
        assert infos, "no transcript in the store"
        stored = again.get(infos[0].id, browser)
        text = " ".join(seg.text for seg in stored.segments)
    finally:
        again.close()
    assert text.strip() and text.strip() == tab.transcript.text.strip()
