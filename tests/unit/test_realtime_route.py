"""The realtime route on a fake engine. It refuses a language the model does not know in `session.update`
(issue 17, case 9): before, a multilingual model accepted any code and then failed every
utterance. Through the real route (FastAPI's test client) on a fake multilingual engine."""

from __future__ import annotations

import json

from fastapi import FastAPI
from fastapi.testclient import TestClient

from settings import Settings
from tests.fakes import WordsEngine
from web.realtime import realtime_router
from web.sessions import StreamSlots


def _client() -> TestClient:
    app = FastAPI()
    engine = WordsEngine("hello there", 1.0, multilingual=True)
    app.include_router(realtime_router(engine, Settings(api_key=""), StreamSlots(2)))
    return TestClient(app)


def _update(language: str) -> str:
    return json.dumps(
        {"type": "transcription_session.update", "event_id": "ev1", "session": {"input_audio_transcription": {"language": language}}}
    )


def test_an_unknown_language_is_refused_and_the_session_keeps_its_own() -> None:
    with _client() as client, client.websocket_connect("/v1/realtime?intent=transcription") as ws:
        assert ws.receive_json()["type"] == "transcription_session.created"
        ws.send_text(_update("xx"))
        error = ws.receive_json()
        assert error["type"] == "error", error
        assert error["error"]["code"] == "invalid_value" and "'xx'" in error["error"]["message"]
        assert error["error"]["event_id"] == "ev1"
        ws.send_text(_update("de"))  # the connection lives on; a known language is taken
        updated = ws.receive_json()
        assert updated["type"] == "transcription_session.updated", updated
        assert updated["session"]["input_audio_transcription"]["language"] == "de"


def test_a_second_handler_for_one_event_type_is_refused() -> None:
    """The event router kept the last handler registered for a type, silently dropping the first."""
    import pytest

    from web.realtime import HANDLERS, handles
    from web.realtime_events import AudioClear

    first = HANDLERS[AudioClear]

    async def another(conn, event) -> None:  # pragma: no cover - never registered
        pass

    with pytest.raises(TypeError, match="already handled"):
        handles(AudioClear)(another)
    assert HANDLERS[AudioClear] is first
    assert handles(AudioClear)(first) is first  # the same function again is harmless
