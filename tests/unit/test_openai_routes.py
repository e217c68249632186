"""The /v1 handlers on a fake engine: module-level functions with their dependencies
injected (no closure), and the form's checks that run before any audio is read. The real
engine behind the same routes is tests/integration/test_openai_api.py."""

from __future__ import annotations

import io

import numpy as np
import soundfile
from fastapi import FastAPI
from fastapi.testclient import TestClient

from settings import Settings
from tests.fakes import WordsEngine
from web.api import include_api
from web.jobs import JobQueue
from web.openai_api import OpenAIContext, get_model, list_models
from web.sessions import StreamSlots


def _wav(seconds: float = 1.0) -> bytes:
    buf = io.BytesIO()
    t = np.arange(int(16_000 * seconds)) / 16_000
    soundfile.write(buf, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16_000, format="WAV")
    return buf.getvalue()


def _client(engine) -> TestClient:
    app = FastAPI()
    include_api(app, engine, Settings(api_key=""), StreamSlots(2))
    return TestClient(app)


async def test_a_handler_runs_alone_with_its_context() -> None:
    ctx = OpenAIContext(WordsEngine("hello", 1.0), Settings(api_key=""), JobQueue(1, 1))
    listed = await list_models(ctx)
    assert [m["id"] for m in listed["data"]] == ["words", "whisper-1"]
    assert (await get_model("whisper-1", ctx))["object"] == "model"


def test_a_long_prompt_is_refused_before_the_audio_is_read() -> None:
    """Issue 17, case 7: /v1 took any prompt and tokenized it on the event loop."""
    engine = WordsEngine("hello there", 1.0)
    with _client(engine) as client:
        r = client.post(
            "/v1/audio/transcriptions",
            data={"model": "whisper-1", "prompt": "names " * 20_000},
            files={"file": ("a.wav", _wav(), "audio/wav")},
        )
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == "prompt" and "2000 characters" in r.json()["error"]["message"]
        assert not engine.calls
        ok = client.post(
            "/v1/audio/transcriptions",
            data={"model": "whisper-1", "prompt": "Zyxt, Qorvane."},
            files={"file": ("a.wav", _wav(), "audio/wav")},
        )
        assert ok.status_code == 200, ok.text
        assert ok.json()["text"] == "hello there"
