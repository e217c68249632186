"""Realtime transcription over a WebSocket, following OpenAI's realtime transcription events.

`GET /v1/realtime?intent=transcription` (WebSocket). One connection runs one
`streaming.Session`, the same pipeline as the page (VAD, partial decodes, stabiliser,
guards), and counts against MAX_STREAMS with the page's streams.

Client events:
- `transcription_session.update` (OpenAI's beta shape: `session.input_audio_format`,
  `session.input_audio_transcription {model, language, prompt}`, `session.turn_detection
  {type: server_vad, threshold, silence_duration_ms}`) or `session.update` (the GA shape:
  `session.audio.input.{format: {type: audio/pcm, rate}, transcription, turn_detection}`).
  Audio is PCM16 mono at 24 kHz as OpenAI's; `session.sample_rate` (or `format.rate`)
  picks another rate, e.g. 16000. Settings apply before the first audio.
- `input_audio_buffer.append {audio: base64 PCM16}`
- `input_audio_buffer.commit`: the utterance in progress ends now (its final follows).
- `input_audio_buffer.clear`: drop audio not yet transcribed.

Server events: `transcription_session.created` / `.updated` (or `session.*` for GA clients),
`input_audio_buffer.speech_started {item_id, audio_start_ms}`,
`conversation.item.input_audio_transcription.delta {item_id, delta}` (words the partials
have committed: never taken back; the `completed` transcript that follows is the final
decode and is authoritative: it may differ in punctuation or casing), `input_audio_buffer.speech_stopped {item_id, audio_end_ms}`,
`input_audio_buffer.committed`, `conversation.item.input_audio_transcription.completed
{item_id, transcript}`, `error {error: {type, code, message}}`. An extension,
`conversation.item.input_audio_transcription.partial {item_id, committed, tentative, text}`,
carries the whole current hypothesis for live display (OpenAI clients ignore it).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import uuid
from typing import Any

import numpy as np
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from engine.base import Engine
from settings import Settings
from web import metrics
from web.auth import websocket_key_ok
from web.sessions import StreamSlots

log = logging.getLogger(__name__)

DEFAULT_RATE = 24_000
ALLOWED_RATES = (8_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000)
#: Largest single append accepted (base64 characters): ~15 s of 24 kHz PCM16.
MAX_APPEND_CHARS = 1_000_000
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_POLICY = 1008
#: A connection that sends nothing for this long is closed (after its last final), so an
#: abandoned client cannot hold one of the MAX_STREAMS slots forever.
IDLE_TIMEOUT_S = 300.0


def _eid() -> str:
    return "event_" + uuid.uuid4().hex[:20]


class _Connection:
    """One realtime client: its settings, its Session, and the event translation."""

    def __init__(self, ws: WebSocket, engine: Engine, settings: Settings) -> None:
        self.ws = ws
        self.engine = engine
        self.settings = settings
        self.ga = False  # the client speaks the GA `session.*` names
        self.sample_rate = DEFAULT_RATE
        self.language: str | None = settings.language or None
        self.prompt: str | None = None
        self.turn_detection: dict[str, Any] | None = {
            "type": "server_vad",
            "threshold": settings.vad_threshold,
            "prefix_padding_ms": 300,
            "silence_duration_ms": settings.min_silence_ms,
        }
        self.session_id = "sess_" + uuid.uuid4().hex[:20]
        self.session: Any = None
        self.pump: asyncio.Task | None = None
        self.send_lock = asyncio.Lock()
        self.generation = 0  # a new Session after each commit/clear
        self.items: dict[tuple[int, int], str] = {}
        self.sent: dict[str, str] = {}  # committed text already sent as deltas, per item
        self.last_item: str | None = None
        self.audio_ms = 0.0
        self.generation_offset_ms = 0.0

    # -- sending --------------------------------------------------------------------

    async def send(self, event: dict[str, Any]) -> None:
        event = {"event_id": _eid(), **event}
        async with self.send_lock:
            await self.ws.send_text(json.dumps(event, ensure_ascii=False))

    async def send_error(self, message: str, *, code: str, type: str = "invalid_request_error", event_id: str | None = None, param: str | None = None) -> None:
        await self.send({"type": "error", "error": {"type": type, "code": code, "message": message, "param": param, "event_id": event_id}})

    def session_object(self) -> dict[str, Any]:
        transcription = {"model": self.engine.info.model, "language": self.language, "prompt": self.prompt or ""}
        if self.ga:
            return {
                "type": "transcription",
                "id": self.session_id,
                "object": "realtime.transcription_session",
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcm", "rate": self.sample_rate},
                        "transcription": transcription,
                        "turn_detection": self.turn_detection,
                        "noise_reduction": None,
                    }
                },
            }
        return {
            "id": self.session_id,
            "object": "realtime.transcription_session",
            "input_audio_format": "pcm16",
            "sample_rate": self.sample_rate,
            "input_audio_transcription": transcription,
            "turn_detection": self.turn_detection,
            "input_audio_noise_reduction": None,
        }

    def _name(self, suffix: str) -> str:
        return ("session." if self.ga else "transcription_session.") + suffix

    # -- client events --------------------------------------------------------------

    async def handle(self, raw: str) -> None:
        try:
            event = json.loads(raw)
        except ValueError:
            await self.send_error("Event is not valid JSON.", code="invalid_json")
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            await self.send_error("Event must be a JSON object with a 'type'.", code="invalid_event")
            return
        kind = event["type"]
        client_id = event.get("event_id") if isinstance(event.get("event_id"), str) else None
        if kind in ("transcription_session.update", "session.update"):
            await self.update(event, kind == "session.update", client_id)
        elif kind == "input_audio_buffer.append":
            await self.append(event, client_id)
        elif kind == "input_audio_buffer.commit":
            await self.commit()
        elif kind == "input_audio_buffer.clear":
            await self.clear()
        else:
            await self.send_error(f"Unsupported event type {kind!r}.", code="unknown_event", event_id=client_id, param="type")

    async def update(self, event: dict[str, Any], ga: bool, client_id: str | None) -> None:
        self.ga = ga
        session = event.get("session")
        if not isinstance(session, dict):
            await self.send_error("'session' must be an object.", code="invalid_value", event_id=client_id, param="session")
            return
        if self.session is not None:
            await self.send_error(
                "Session settings can change only before the first audio; send input_audio_buffer.commit "
                "and open a new connection to change them.",
                code="session_already_started",
                event_id=client_id,
            )
            return
        try:
            self._apply(session, ga)
        except ValueError as exc:
            await self.send_error(str(exc), code="invalid_value", event_id=client_id, param="session")
            return
        await self.send({"type": self._name("updated"), "session": self.session_object()})

    def _apply(self, session: dict[str, Any], ga: bool) -> None:
        rate = session.get("sample_rate")
        if ga:
            audio_in = ((session.get("audio") or {}).get("input")) or {}
            fmt = audio_in.get("format") or {}
            if isinstance(fmt, dict):
                if fmt.get("type") not in (None, "audio/pcm"):
                    raise ValueError(f"Unsupported audio format {fmt.get('type')!r}: use audio/pcm (PCM16 mono).")
                rate = fmt.get("rate", rate)
            transcription = audio_in.get("transcription")
            turn = audio_in.get("turn_detection", "unset")
        else:
            fmt_name = session.get("input_audio_format")
            if fmt_name not in (None, "pcm16"):
                raise ValueError(f"Unsupported input_audio_format {fmt_name!r}: use pcm16.")
            transcription = session.get("input_audio_transcription")
            turn = session.get("turn_detection", "unset")
        if rate is not None:
            if not isinstance(rate, int) or rate not in ALLOWED_RATES:
                raise ValueError(f"Unsupported sample rate {rate!r}: use one of {', '.join(map(str, ALLOWED_RATES))}.")
            self.sample_rate = rate
        if isinstance(transcription, dict):
            language = transcription.get("language")
            if language:
                language = str(language).strip().lower()
                if not self.engine.info.multilingual and language != "en":
                    raise ValueError(f"The model {self.engine.info.model} is English-only: language {language!r} is not supported.")
                self.language = language
            if "prompt" in transcription:
                self.prompt = transcription.get("prompt") or None
        if turn != "unset":
            if turn is None:
                # The pipeline always segments with its VAD; without server VAD the client
                # may still commit whenever it wants.
                self.turn_detection = None
            elif isinstance(turn, dict):
                if turn.get("type", "server_vad") not in ("server_vad", "semantic_vad"):
                    raise ValueError(f"Unsupported turn_detection type {turn.get('type')!r}: use server_vad.")
                current = dict(self.turn_detection or {"type": "server_vad", "threshold": self.settings.vad_threshold, "prefix_padding_ms": 300, "silence_duration_ms": self.settings.min_silence_ms})
                current["type"] = "server_vad"
                threshold = turn.get("threshold")
                if threshold is not None:
                    if not isinstance(threshold, (int, float)) or not 0.0 < threshold < 1.0:
                        raise ValueError(f"turn_detection.threshold must be between 0 and 1, got {threshold!r}.")
                    current["threshold"] = float(threshold)
                silence = turn.get("silence_duration_ms")
                if silence is not None:
                    if not isinstance(silence, int) or not 100 <= silence <= 10_000:
                        raise ValueError(f"turn_detection.silence_duration_ms must be 100 to 10000, got {silence!r}.")
                    current["silence_duration_ms"] = silence
                if isinstance(turn.get("prefix_padding_ms"), int):
                    current["prefix_padding_ms"] = turn["prefix_padding_ms"]
                self.turn_detection = current
            else:
                raise ValueError("turn_detection must be an object or null.")

    def _options(self) -> Any:
        from streaming.session import SessionOptions

        base = SessionOptions.from_settings(self.settings) if hasattr(SessionOptions, "from_settings") else SessionOptions()
        changes: dict[str, Any] = {"language": self.language}
        turn = self.turn_detection or {}
        if "threshold" in turn:
            changes["vad_threshold"] = turn["threshold"]
        if "silence_duration_ms" in turn:
            changes["min_silence_ms"] = turn["silence_duration_ms"]
        if self.prompt and hasattr(base, "prompt"):
            changes["prompt"] = self.prompt
        import dataclasses

        if dataclasses.is_dataclass(base):
            names = {f.name for f in dataclasses.fields(base)}
            return dataclasses.replace(base, **{k: v for k, v in changes.items() if k in names})
        for k, v in changes.items():
            setattr(base, k, v)
        return base

    def _ensure_session(self) -> Any:
        if self.session is None:
            from streaming.session import Session

            self.session = Session(self.engine, self._options())
            self.pump = asyncio.create_task(self._pump(self.session, self.generation, self.generation_offset_ms))
        return self.session

    async def append(self, event: dict[str, Any], client_id: str | None) -> None:
        audio = event.get("audio")
        if not isinstance(audio, str):
            await self.send_error("'audio' must be a base64 string of PCM16 samples.", code="invalid_value", event_id=client_id, param="audio")
            return
        if len(audio) > MAX_APPEND_CHARS:
            await self.send_error(f"An append may carry at most {MAX_APPEND_CHARS} base64 characters; send smaller chunks.", code="audio_too_large", event_id=client_id, param="audio")
            return
        try:
            data = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            await self.send_error("'audio' is not valid base64.", code="invalid_value", event_id=client_id, param="audio")
            return
        if len(data) % 2:
            await self.send_error("PCM16 audio must have an even number of bytes.", code="invalid_value", event_id=client_id, param="audio")
            return
        if not data:
            return
        samples = np.frombuffer(data, dtype="<i2").astype(np.int16)
        self.audio_ms += 1000.0 * len(samples) / self.sample_rate
        metrics.INPUT_AUDIO_SECONDS.labels("realtime").inc(len(samples) / self.sample_rate)
        try:
            self._ensure_session().feed(samples, self.sample_rate)
        except Exception as exc:  # noqa: BLE001 -- keep the connection; tell the client
            log.exception("realtime: feed failed")
            await self.send_error(f"The audio could not be processed: {exc}", code="invalid_audio", event_id=client_id, param="audio")

    async def commit(self) -> None:
        """End the current utterance now: flush the Session, then start a fresh one for later audio."""
        await self._finish_generation()

    async def clear(self) -> None:
        if self.session is not None:
            session, pump = self.session, self.pump
            self.session, self.pump = None, None
            await session.close()
            if pump is not None:
                pump.cancel()
                await asyncio.gather(pump, return_exceptions=True)
            self._next_generation()
        await self.send({"type": "input_audio_buffer.cleared"})

    async def _finish_generation(self) -> None:
        if self.session is None:
            return
        session, pump = self.session, self.pump
        self.session, self.pump = None, None
        await session.finish()
        if pump is not None:
            await asyncio.gather(pump, return_exceptions=True)
        self._next_generation()

    def _next_generation(self) -> None:
        self.generation += 1
        self.generation_offset_ms = self.audio_ms

    async def finish(self) -> None:
        """Client done (socket closing normally): flush what is left."""
        await self._finish_generation()

    async def abort(self) -> None:
        if self.session is not None:
            session, pump = self.session, self.pump
            self.session, self.pump = None, None
            try:
                await session.close()
            finally:
                if pump is not None:
                    pump.cancel()
                    await asyncio.gather(pump, return_exceptions=True)

    # -- session events -> OpenAI events ----------------------------------------------

    async def _pump(self, session: Any, generation: int, offset_ms: float) -> None:
        try:
            async for ev in session.events():
                kind = getattr(ev, "type", None)
                if kind in ("partial", "final"):
                    await self._transcript(ev, generation, offset_ms)
                elif kind == "error":
                    item = self.items.get((generation, ev.utterance_id)) if getattr(ev, "utterance_id", None) is not None else None
                    await self.send(
                        {
                            "type": "error",
                            "error": {
                                "type": "server_error",
                                "code": "transcription_failed",
                                "message": ev.message,
                                "param": None,
                                "event_id": None,
                                "item_id": item,
                            },
                        }
                    )
        except (WebSocketDisconnect, RuntimeError) as exc:
            log.debug("realtime: client went away while sending events: %s", exc)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001
            log.exception("realtime: session event pump failed")
            try:
                await self.send_error("The transcription session failed.", code="session_failed", type="server_error")
            except Exception:  # noqa: BLE001
                pass

    async def _transcript(self, ev: Any, generation: int, offset_ms: float) -> None:
        key = (generation, ev.utterance_id)
        item = self.items.get(key)
        if item is None:
            item = "item_" + uuid.uuid4().hex[:20]
            self.items[key] = item
            self.sent[item] = ""
            await self.send({"type": "input_audio_buffer.speech_started", "item_id": item, "audio_start_ms": int(offset_ms + 1000 * ev.start_s)})
        committed = ev.committed.strip() if ev.type == "partial" else ev.text.strip()
        already = self.sent[item]
        if committed.startswith(already) and len(committed) > len(already):
            delta = committed[len(already):]
            self.sent[item] = committed
            await self.send({"type": "conversation.item.input_audio_transcription.delta", "item_id": item, "content_index": 0, "delta": delta})
        if ev.type == "partial":
            await self.send(
                {
                    "type": "conversation.item.input_audio_transcription.partial",
                    "item_id": item,
                    "committed": ev.committed,
                    "tentative": ev.tentative,
                    "text": ev.text,
                }
            )
            return
        await self.send({"type": "input_audio_buffer.speech_stopped", "item_id": item, "audio_end_ms": int(offset_ms + 1000 * ev.end_s)})
        await self.send({"type": "input_audio_buffer.committed", "item_id": item, "previous_item_id": self.last_item})
        self.last_item = item
        await self.send(
            {
                "type": "conversation.item.input_audio_transcription.completed",
                "item_id": item,
                "content_index": 0,
                "transcript": ev.text.strip(),
                "usage": {"type": "duration", "seconds": round(max(0.0, ev.end_s - ev.start_s), 3)},
                "latency_s": round(ev.latency_s, 3),
                "language": ev.language,
            }
        )
        self.sent.pop(item, None)
        self.items.pop(key, None)


def realtime_router(engine: Engine, settings: Settings, slots: StreamSlots) -> APIRouter:
    router = APIRouter()

    @router.websocket("/v1/realtime")
    async def realtime(ws: WebSocket) -> None:
        ok, subprotocol = websocket_key_ok(ws, settings.api_key)
        await ws.accept(subprotocol=subprotocol)
        if not ok:
            metrics.REALTIME_CONNECTIONS.labels("unauthorized").inc()
            await _refuse(ws, "Incorrect or missing API key: send `Authorization: Bearer <API_KEY>`.", "invalid_api_key", CLOSE_POLICY)
            return
        intent = ws.query_params.get("intent")
        if intent not in (None, "transcription"):
            await _refuse(ws, f"Only intent=transcription is served here, not {intent!r}.", "unsupported_intent", CLOSE_POLICY)
            return
        if not slots.try_acquire():
            metrics.REALTIME_CONNECTIONS.labels("full").inc()
            await _refuse(
                ws, f"The server is full ({slots.limit} live streams). Try again in a minute.", "server_full", CLOSE_TRY_AGAIN_LATER, type="server_error"
            )
            return
        metrics.REALTIME_CONNECTIONS.labels("accepted").inc()
        conn = _Connection(ws, engine, settings)
        # OpenAI's SDK (GA interface) names a model in the URL and speaks `session.*`;
        # beta clients (`OpenAI-Beta: realtime=v1`) and plain ones get `transcription_session.*`.
        beta = "realtime=v1" in ws.headers.get("openai-beta", "")
        conn.ga = ws.query_params.get("model") is not None and not beta
        closed_by_client = False
        try:
            await conn.send({"type": conn._name("created"), "session": conn.session_object()})
            while True:
                try:
                    message = await asyncio.wait_for(ws.receive(), IDLE_TIMEOUT_S)
                except asyncio.TimeoutError:
                    await conn.finish()
                    await _refuse(ws, f"No events for {IDLE_TIMEOUT_S:.0f} s: closing the idle connection.", "idle_timeout", 1000)
                    break
                if message["type"] == "websocket.disconnect":
                    closed_by_client = True
                    break
                text = message.get("text")
                if text is None and message.get("bytes") is not None:
                    await conn.send_error("Send events as JSON text frames (audio base64-encoded in input_audio_buffer.append).", code="binary_not_supported")
                    continue
                await conn.handle(text or "")
        except WebSocketDisconnect:
            closed_by_client = True
        except Exception:  # noqa: BLE001
            log.exception("realtime connection failed")
        finally:
            try:
                if closed_by_client:
                    await conn.abort()
                else:
                    await conn.finish()
            finally:
                slots.release()

    return router


async def _refuse(ws: WebSocket, message: str, code: str, close_code: int, *, type: str = "invalid_request_error") -> None:
    try:
        await ws.send_text(json.dumps({"event_id": _eid(), "type": "error", "error": {"type": type, "code": code, "message": message, "param": None, "event_id": None}}))
        await ws.close(code=close_code, reason=message[:120])
    except (WebSocketDisconnect, RuntimeError):
        pass
