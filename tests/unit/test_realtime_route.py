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


# -- semantic_vad (issue 20) --------------------------------------------------------------


def _turn_update(ga: bool, turn: dict | None) -> str:
    if ga:
        session = {"type": "transcription", "audio": {"input": {"turn_detection": turn}}}
        return json.dumps({"type": "session.update", "session": session})
    return json.dumps({"type": "transcription_session.update", "session": {"turn_detection": turn}})


def _echoed_turn(updated: dict, ga: bool) -> dict | None:
    if ga:
        return updated["session"]["audio"]["input"]["turn_detection"]
    return updated["session"]["turn_detection"]


def test_semantic_vad_is_taken_and_echoed_in_both_session_shapes() -> None:
    for ga in (False, True):
        with _client() as client, client.websocket_connect("/v1/realtime?intent=transcription") as ws:
            assert ws.receive_json()["type"] == "transcription_session.created"
            ws.send_text(_turn_update(ga, {"type": "semantic_vad", "eagerness": "low"}))
            updated = ws.receive_json()
            assert updated["type"] == ("session.updated" if ga else "transcription_session.updated"), updated
            assert _echoed_turn(updated, ga) == {"type": "semantic_vad", "eagerness": "low"}
            # No eagerness: OpenAI's default, auto.
            ws.send_text(_turn_update(ga, {"type": "semantic_vad"}))
            assert _echoed_turn(ws.receive_json(), ga) == {"type": "semantic_vad", "eagerness": "low"}
            # Back to server_vad: the server's own settings again, with what the client gave.
            ws.send_text(_turn_update(ga, {"type": "server_vad", "silence_duration_ms": 700}))
            back = _echoed_turn(ws.receive_json(), ga)
            assert back["type"] == "server_vad" and back["silence_duration_ms"] == 700
            assert back["threshold"] == 0.5 and "eagerness" not in back


def test_a_fresh_semantic_vad_defaults_to_auto_and_an_unknown_eagerness_is_refused() -> None:
    with _client() as client, client.websocket_connect("/v1/realtime?intent=transcription") as ws:
        ws.receive_json()
        ws.send_text(_turn_update(False, {"type": "semantic_vad"}))
        assert _echoed_turn(ws.receive_json(), False) == {"type": "semantic_vad", "eagerness": "auto"}
        ws.send_text(_turn_update(False, {"type": "semantic_vad", "eagerness": "eager"}))
        error = ws.receive_json()
        assert error["type"] == "error" and error["error"]["code"] == "invalid_value", error


def test_semantic_vad_becomes_the_streams_turn_options() -> None:
    from streaming.service import StreamService

    from web.realtime import Connection, RealtimeConfig

    service = StreamService.from_settings(WordsEngine("hello", 1.0), Settings(api_key=""), StreamSlots(1))
    conn = Connection.__new__(Connection)
    conn.service = service
    semantic = conn.options(RealtimeConfig(turn_detection={"type": "semantic_vad", "eagerness": "high"}))
    assert (semantic.turn_detection, semantic.eagerness) == ("semantic", "high")
    server = conn.options(RealtimeConfig(turn_detection={"type": "server_vad", "silence_duration_ms": 300}))
    assert (server.turn_detection, server.min_silence_ms) == ("silence", 300)


def test_turn_detection_semantic_makes_semantic_vad_the_default() -> None:
    app = FastAPI()
    engine = WordsEngine("hello there", 1.0)
    app.include_router(realtime_router(engine, Settings(api_key="", turn_detection="semantic"), StreamSlots(1)))
    with TestClient(app) as client, client.websocket_connect("/v1/realtime?intent=transcription") as ws:
        created = ws.receive_json()
        assert created["session"]["turn_detection"] == {"type": "semantic_vad", "eagerness": "auto"}
