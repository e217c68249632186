"""Issue 17, case 3: an engine's raw error never reaches a live client.

A deliberately failing engine (its error carries what a remote endpoint's failure can
carry: the endpoint URL with credentials and an upstream body with secrets) behind the
real realtime WebSocket (the app's API on loopback) and behind the page's live handler.
Each user-facing text keeps the first clause of the failure with the URL cut to its host
(`engine.public`, the rule /v1 and the upload tab use) and nothing of the secrets.
No vLLM: the failure is the point, and the engine is the one part that is faked.
"""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
import pytest
from websockets.asyncio.client import connect

from engine.base import EngineInfo
from engine.remote.errors import RemoteError
from evaluation import clips, read_audio
from tests.datasets import TEST_DATA
from tests.integration.misbehaving_server import serve_app

CLIP = "ljspeech_coqui__LJ001-0001"
SECRETS = ("s3cretpass", "private-path", "hunter2", "internal-db.corp", "tok_9f8e")
UPSTREAM = (
    "the remote endpoint https://user:s3cretpass@10.0.0.7:8443/v1/private-path?api_key=tok_9f8e failed (500). "
    "Server said: {'detail': 'db password=hunter2 at internal-db.corp'}"
)


class FailingEngine:
    """Every decode fails the way a remote endpoint's outage does, secrets and all."""

    def __init__(self) -> None:
        self.info = EngineInfo(model="failing", engine="fake", device="cpu", multilingual=False)
        self.calls = 0

    async def transcribe(self, request):
        self.calls += 1
        await asyncio.sleep(0.01)
        raise RemoteError(UPSTREAM, status=500)

    async def close(self) -> None:
        pass


def _no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} reached the client: {text!r}"


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    found = [c for c in clips(kind="speech", lang="en", base=TEST_DATA) if c.name == CLIP]
    if not found:
        pytest.skip(f"{CLIP} is not in the test data")
    gap = np.zeros(16000, np.float32)
    return np.concatenate([gap, read_audio(found[0].path), gap, gap])


def _app(engine):
    from fastapi import FastAPI

    from settings import Settings
    from web.api import include_api
    from web.sessions import StreamSlots

    app = FastAPI()
    include_api(app, engine, Settings(), StreamSlots(2))
    return app


async def test_realtime_error_event_keeps_no_secret(speech):
    engine = FailingEngine()
    with serve_app(_app(engine)) as url:
        ws_url = url.replace("http://", "ws://") + "/v1/realtime?intent=transcription"
        async with connect(ws_url, max_size=2**22) as ws:
            assert json.loads(await ws.recv())["type"] == "transcription_session.created"
            await ws.send(json.dumps({"type": "transcription_session.update", "session": {"sample_rate": 16000}}))
            step = 1600
            for i in range(0, len(speech), step):
                pcm = (np.clip(speech[i : i + step], -1, 1) * 32767).astype("<i2").tobytes()
                await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()}))
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            errors = []
            async with asyncio.timeout(60):
                while not errors:
                    event = json.loads(await ws.recv())
                    _no_secret(json.dumps(event))
                    if event["type"] == "error":
                        errors.append(event)
    message = errors[0]["error"]["message"]
    assert errors[0]["error"]["code"] == "transcription_failed"
    assert message.startswith("transcription failed") and "https://10.0.0.7:8443" in message, message
    assert engine.calls >= 1


async def test_live_page_error_keeps_no_secret(speech):
    """The page's path: FastRTC's handler, the streaming service, the tab's status line."""
    from streaming.service import StreamService
    from streaming.session import SessionOptions
    from tests.unit.test_live_handler import Channel, frames_48k
    from web.live import LiveHandler, LiveStats, TabState
    from web.sessions import StreamSlots

    engine = FailingEngine()
    handler = LiveHandler(StreamService(engine, SessionOptions(), StreamSlots(2)), stats=LiveStats()).copy()
    tab = TabState()
    handler.set_channel(Channel())
    handler.set_args(["webrtc-id", tab, "auto", "transcribe"])
    await handler.start_up()
    for i, frame in enumerate(frames_48k(speech)):
        await handler.receive(frame)
        if i % 10 == 0:
            await asyncio.sleep(0)
    await handler.shutdown()
    assert tab.message is not None and tab.message.startswith("Transcription error:")
    _no_secret(tab.message)
    assert "https://10.0.0.7:8443" in tab.message, tab.message
