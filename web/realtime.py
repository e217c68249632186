"""Realtime transcription over a WebSocket, following OpenAI's realtime transcription events.

`GET /v1/realtime?intent=transcription` (WebSocket). One connection runs one live stream
(`streaming.service`: the same pipeline, slots and limits as the page) once its first
audio arrives; until then it holds no slot. Events are pydantic models
(`web.realtime_events`), each client event type handled by one function (`HANDLERS`).

Client events:
- `session.update` (the GA shape the official SDK sends: `session.audio.input.{format:
  {type: audio/pcm, rate}, transcription {model, language, prompt}, turn_detection}`) or
  `transcription_session.update` (the beta shape: `input_audio_format`, `sample_rate`,
  `input_audio_transcription`, `turn_detection {type: server_vad, threshold,
  silence_duration_ms}` or `{type: semantic_vad, eagerness: low|medium|high|auto}`: the
  turn model ends an utterance when its sentence ends, `streaming.turns`). Audio is PCM16
  mono at 24 kHz as OpenAI's, or another rate.
  `prompt` is the decoder prompt of every utterance that follows (names, spelling).
  Language, prompt and rate may change at any time; turn detection only before the
  first audio.
- `input_audio_buffer.append {audio: base64 PCM16}`
- `input_audio_buffer.commit`: the utterance in progress ends now; the next server event
  comes after every final so far.
- `input_audio_buffer.clear`: drop the audio that has not ended an utterance yet; the
  finals of utterances that had already ended still arrive.

Server events: `session.created` / `.updated` (GA clients: a `model` in the URL and no
`OpenAI-Beta: realtime=v1`) or `transcription_session.*`,
`input_audio_buffer.speech_started {item_id, audio_start_ms}`,
`conversation.item.input_audio_transcription.delta {item_id, delta}` (words the partials
have committed: never taken back; the `completed` transcript that follows is the final
decode and is authoritative: it may differ in punctuation or casing),
`input_audio_buffer.speech_stopped {item_id, audio_end_ms}`, `input_audio_buffer.committed`,
`conversation.item.input_audio_transcription.completed {item_id, transcript}` (with
`words` [{word, start, end, probability}, session seconds] when `LIVE_WORD_TIMES` is on,
an extension; `logprobs` [{token, logprob, bytes}] when the session's `include` asks
`item.input_audio_transcription.logprobs`, as OpenAI's),
`error {error: {type, code, message}}`. An extension,
`conversation.item.input_audio_transcription.partial {item_id, committed, tentative, text}`,
carries the whole current hypothesis for live display (OpenAI clients ignore it), with its
`words` too when `LIVE_PARTIAL_WORD_TIMES` is on (and its words spell what it shows).

Bounds (issue: no client can exhaust the server): frames larger than `WS_MAX_SIZE` are
refused by the server itself (`app.py`), events larger than `MAX_EVENT_CHARS` get an
error before they are parsed; audio more than `REALTIME_BACKLOG_S` ahead of real time
gets a `rate_limited` error; past `REALTIME_MAX_FINALS` finals in flight, reading waits;
a connection that sends no audio for `REALTIME_IDLE_S` is closed (other events do not
count), after its last final.

A restart or deploy (SIGTERM, web/shutdown.py): the open utterance ends at once, its
`completed` (and every other pending final's) is sent, then an `error` event with code
`server_restarting` and a close with 1012 (service restart): reconnect in a moment. A
connection whose first audio arrives while the server drains gets the same close.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from engine.base import AudioError, Engine, Word
from engine.audio import decode_pcm16
from settings import Settings
from streaming.events import ErrorEvent, Event, TranscriptEvent
from streaming.service import AudioTooFast, LiveStream, ServerDraining, StreamService
from streaming.session import SessionOptions
from web import metrics
from web.auth import websocket_key_ok
from web.realtime_events import (
    DEFAULT_RATE,
    LOGPROBS_ITEM,
    AudioAppend,
    AudioClear,
    AudioCommit,
    ClientEvent,
    Cleared,
    Committed,
    EventError,
    LogProb,
    ServerEvent,
    SessionConfig,
    SessionEvent,
    SessionUpdate,
    SpeechStarted,
    SpeechStopped,
    TranscriptCompleted,
    TranscriptDelta,
    TranscriptionSessionUpdate,
    TranscriptPartial,
    Usage,
    WordTime,
    error_event,
    parse_client_event,
)
from web.sessions import StreamSlots

log = logging.getLogger(__name__)

#: Largest WebSocket frame the server reads at all (uvicorn's `ws_max_size`, set in app.py);
#: a larger one closes the connection (1009) before it is buffered.
WS_MAX_SIZE = 2 * 1024 * 1024
CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008
CLOSE_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013
#: The server restarts (a deploy): the client may reconnect in a moment (RFC 6455 registry).
CLOSE_SERVICE_RESTART = 1012
RESTART_MESSAGE = "The server is restarting: every final so far was sent. Reconnect in a moment."


def word_times(words: Sequence[Word]) -> list[WordTime]:
    """A final's or partial's words as the realtime events carry them."""
    return [WordTime(word=w.word, start=w.start, end=w.end, probability=w.probability, speaker=w.speaker) for w in words]


@dataclass(frozen=True)
class RealtimeConfig:
    """One connection's settings as the client sees them (echoed in `session.*` events)."""

    sample_rate: int = DEFAULT_RATE
    language: str | None = None
    prompt: str | None = None
    turn_detection: dict[str, Any] | None = None
    #: `include: ["item.input_audio_transcription.logprobs"]`: completed events carry them.
    logprobs: bool = False

    def updated(self, change: SessionConfig, server_vad: dict[str, Any] | None = None) -> "RealtimeConfig":
        """This config with the client's `change`; `server_vad` is the server's own
        `server_vad` settings, the start of a switch from `semantic_vad` back to it."""
        new: dict[str, Any] = {}
        if change.sample_rate is not None:
            new["sample_rate"] = change.sample_rate
        if change.include is not None:
            new["logprobs"] = LOGPROBS_ITEM in change.include
        t = change.transcription
        if t is not None:
            if t.language:
                new["language"] = t.language.strip().lower()
            if "prompt" in t.model_fields_set:
                new["prompt"] = (t.prompt or "").strip() or None
        if change.turn_detection_given:
            turn = change.turn_detection
            if turn is None:
                # The pipeline always segments with its VAD; without server VAD the
                # client may still commit whenever it wants.
                new["turn_detection"] = None
            elif turn.type == "semantic_vad":
                # OpenAI's semantic turns: the turn model ends the utterance
                # (streaming.turns); its only knob is the eagerness.
                before = self.turn_detection or {}
                kept = before.get("eagerness") if before.get("type") == "semantic_vad" else None
                new["turn_detection"] = {"type": "semantic_vad", "eagerness": turn.eagerness or kept or "auto"}
            else:
                before = self.turn_detection or {}
                current = dict(before if before.get("type") == "server_vad" else (server_vad or {}))
                current["type"] = "server_vad"
                for key in ("threshold", "silence_duration_ms", "prefix_padding_ms"):
                    value = getattr(turn, key)
                    if value is not None:
                        current[key] = value
                new["turn_detection"] = current
        return dataclasses.replace(self, **new)


class Connection:
    """One realtime client: its settings, its stream (from the first audio on), and the
    translation of stream events into OpenAI's."""

    def __init__(self, ws: WebSocket, service: StreamService, *, ga: bool, idle_timeout_s: float) -> None:
        self.ws = ws
        self.service = service
        self.ga = ga  # the client speaks the GA `session.*` names
        self.idle_timeout_s = idle_timeout_s
        defaults = service.defaults
        self.server_vad: dict[str, Any] = {
            "type": "server_vad",
            "threshold": defaults.vad_threshold,
            "prefix_padding_ms": 300,
            "silence_duration_ms": defaults.min_silence_ms,
        }
        self.config = RealtimeConfig(
            language=defaults.language,
            turn_detection=(
                {"type": "semantic_vad", "eagerness": "auto"}
                if defaults.turn_detection == "semantic"  # TURN_DETECTION=semantic
                else dict(self.server_vad)
            ),
        )
        self.session_id = "sess_" + uuid.uuid4().hex[:20]
        self.stream: LiveStream | None = None
        self.refused = False  # the server was full at the first audio: closing
        self.last_audio_at = time.monotonic()
        self._send_lock = asyncio.Lock()
        self._items: dict[int, str] = {}  # utterance id -> item id
        self._sent: dict[str, str] = {}  # committed text already sent as deltas, per item
        self._last_item: str | None = None

    # -- sending --------------------------------------------------------------------

    async def send(self, event: ServerEvent) -> None:
        async with self._send_lock:
            await self.ws.send_text(event.model_dump_json())

    async def send_error(self, message: str, code: str, **kw: Any) -> None:
        await self.send(error_event(message, code, **kw))

    def name(self, suffix: str) -> str:
        return ("session." if self.ga else "transcription_session.") + suffix

    def session_object(self) -> dict[str, Any]:
        c = self.config
        transcription = {"model": self.service.engine.info.model, "language": c.language, "prompt": c.prompt or ""}
        include = [LOGPROBS_ITEM] if c.logprobs else []
        if self.ga:
            return {
                "type": "transcription",
                "id": self.session_id,
                "object": "realtime.transcription_session",
                "include": include,
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcm", "rate": c.sample_rate},
                        "transcription": transcription,
                        "turn_detection": c.turn_detection,
                        "noise_reduction": None,
                    }
                },
            }
        return {
            "id": self.session_id,
            "object": "realtime.transcription_session",
            "input_audio_format": "pcm16",
            "sample_rate": c.sample_rate,
            "input_audio_transcription": transcription,
            "turn_detection": c.turn_detection,
            "input_audio_noise_reduction": None,
            "include": include,
        }

    # -- the stream -------------------------------------------------------------------

    def options(self, config: RealtimeConfig) -> SessionOptions:
        """The stream options of `config`; a ValueError for what the model cannot do."""
        turn = config.turn_detection or {}
        changes: dict[str, Any] = {}
        if turn.get("type") == "semantic_vad":
            changes["turn_detection"] = "semantic"
            changes["eagerness"] = turn.get("eagerness") or "auto"
        elif turn:
            changes["turn_detection"] = "silence"
        if "threshold" in turn:
            changes["vad_threshold"] = float(turn["threshold"])
        if "silence_duration_ms" in turn:
            changes["min_silence_ms"] = int(turn["silence_duration_ms"])
        return self.service.options(language=config.language, prompt=config.prompt, logprobs=config.logprobs, **changes)

    async def ensure_stream(self) -> LiveStream | None:
        """The stream, started (a slot taken) with the first audio; None when full."""
        if self.stream is None:
            try:
                stream = self.service.open(self.options(self.config), self.on_stream_event)
            except ServerDraining as exc:
                await _refuse(self.ws, str(exc), "server_restarting", CLOSE_SERVICE_RESTART, type="server_error")
                self.refused = True
                return None
            if stream is None:
                metrics.REALTIME_CONNECTIONS.labels("full").inc()
                limit = self.service.slots.limit
                await _refuse(self.ws, f"The server is full ({limit} live streams). Try again in a minute.", "server_full", CLOSE_TRY_AGAIN_LATER, type="server_error")
                self.refused = True
                return None
            stream.on_drained = self.on_drained
            self.stream = stream
        return self.stream

    async def on_drained(self) -> None:
        """The server drains: every final was sent (the stream finished); say why and close."""
        await _refuse(self.ws, RESTART_MESSAGE, "server_restarting", CLOSE_SERVICE_RESTART, type="server_error")

    async def on_stream_event(self, ev: Event) -> None:
        try:
            if isinstance(ev, TranscriptEvent):
                await self._transcript(ev)
            elif isinstance(ev, ErrorEvent):
                item = self._items.get(ev.utterance_id) if ev.utterance_id is not None else None
                await self.send_error(ev.message, "transcription_failed", type="server_error", item_id=item)
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            log.debug("realtime: the client went away while events were sent: %s", exc)

    async def _transcript(self, ev: TranscriptEvent) -> None:
        item = self._items.get(ev.utterance_id)
        if item is None:
            item = self._items[ev.utterance_id] = "item_" + uuid.uuid4().hex[:20]
            self._sent[item] = ""
            await self.send(SpeechStarted(item_id=item, audio_start_ms=int(1000 * ev.start_s)))
        committed = ev.committed.strip() if ev.type == "partial" else ev.text.strip()
        already = self._sent[item]
        if committed.startswith(already) and len(committed) > len(already):
            self._sent[item] = committed
            await self.send(TranscriptDelta(item_id=item, delta=committed[len(already) :]))
        if ev.type == "partial":
            await self.send(
                TranscriptPartial(
                    item_id=item, committed=ev.committed, tentative=ev.tentative, text=ev.text, words=word_times(ev.words) or None
                )
            )
            return
        await self.send(SpeechStopped(item_id=item, audio_end_ms=int(1000 * ev.end_s)))
        await self.send(Committed(item_id=item, previous_item_id=self._last_item))
        self._last_item = item
        await self.send(
            TranscriptCompleted(
                item_id=item,
                transcript=ev.text.strip(),
                usage=Usage(seconds=round(max(0.0, ev.end_s - ev.start_s), 3)),
                latency_s=round(ev.latency_s, 3),
                language=ev.language,
                words=word_times(ev.words)
                if self.stream is not None and self.stream.session.options.word_times
                else None,
                logprobs=[LogProb(token=t.token, logprob=t.logprob, bytes=list(t.bytes)) for t in ev.logprobs]
                if self.config.logprobs
                else None,
                speaker=ev.speaker,
            )
        )
        self._sent.pop(item, None)
        self._items.pop(ev.utterance_id, None)

    # -- lifecycle --------------------------------------------------------------------

    async def run(self) -> None:
        """Read events until the client leaves, goes idle, or the server is full; then
        tear the stream down once: abort when the client is gone, else deliver every final."""
        await self.send(SessionEvent(type=self.name("created"), session=self.session_object()))
        reason = "client"
        try:
            while not self.refused:
                wait = self.last_audio_at + self.idle_timeout_s - time.monotonic()
                if wait <= 0:
                    if self.stream is not None and self.stream.session.finals_in_flight:
                        self.last_audio_at = time.monotonic()  # still working for it: not idle
                        continue
                    reason = "idle"
                    break
                try:
                    message = await asyncio.wait_for(self.ws.receive(), wait)
                except (asyncio.TimeoutError, TimeoutError):
                    continue
                if message["type"] == "websocket.disconnect":
                    break
                await self.handle(message)
            else:
                reason = "refused"
        except WebSocketDisconnect:
            pass
        except Exception:  # noqa: BLE001 -- one client's failure stays with it
            log.exception("realtime connection failed")
            reason = "error"
        finally:
            await self.end(reason)

    async def end(self, reason: str) -> None:
        stream = self.stream
        if stream is not None:
            if reason == "client":
                await stream.abort()  # nobody is left to read the text
            else:
                await stream.finish()
        if reason == "idle":
            await _refuse(self.ws, f"No audio for {self.idle_timeout_s:.0f} s: closing the idle connection.", "idle_timeout", CLOSE_NORMAL)
        elif reason == "error":
            await _refuse(self.ws, "The connection failed on the server.", "server_error", CLOSE_ERROR, type="server_error")

    async def handle(self, message: dict[str, Any]) -> None:
        text = message.get("text")
        if text is None:
            if message.get("bytes") is not None:
                await self.send_error("Send events as JSON text frames (audio base64-encoded in input_audio_buffer.append).", "binary_not_supported")
            return
        try:
            event = parse_client_event(text)
        except EventError as exc:
            await self.send_error(exc.message, exc.code, param=exc.param, event_id=exc.event_id)
            return
        await HANDLERS[type(event)](self, event)


# -- one handler per client event type -----------------------------------------------

Handler = Callable[[Connection, Any], Awaitable[None]]
HANDLERS: dict[type[ClientEvent], Handler] = {}


def handles(*kinds: type[ClientEvent]) -> Callable[[Handler], Handler]:
    """Register `fn` as the one handler of each event type; a second one for the same
    type is a programming error, refused at import rather than silently replacing the first."""

    def register(fn: Handler) -> Handler:
        for kind in kinds:
            taken = HANDLERS.get(kind)
            if taken is not None and taken is not fn:
                raise TypeError(f"{kind.__name__} is already handled by {taken.__name__}; not also by {fn.__name__}")
        for kind in kinds:
            HANDLERS[kind] = fn
        return fn

    return register


@handles(SessionUpdate, TranscriptionSessionUpdate)
async def on_session_update(conn: Connection, event: SessionUpdate | TranscriptionSessionUpdate) -> None:
    conn.ga = isinstance(event, SessionUpdate)
    config = conn.config.updated(event.session.config(), conn.server_vad)
    try:
        options = conn.options(config)
    except ValueError as exc:
        await conn.send_error(str(exc), "invalid_value", param="session", event_id=event.event_id)
        return
    if conn.stream is not None:
        if config.turn_detection != conn.config.turn_detection:
            await conn.send_error(
                "Turn detection can change only before the first audio: open a new connection to change it.",
                "session_already_started",
                param="session.turn_detection",
                event_id=event.event_id,
            )
            return
        conn.stream.use(options)
    conn.config = config
    await conn.send(SessionEvent(type=conn.name("updated"), session=conn.session_object()))


@handles(AudioAppend)
async def on_append(conn: Connection, event: AudioAppend) -> None:
    try:
        samples = decode_pcm16(base64.b64decode(event.audio, validate=True))
    except (binascii.Error, ValueError):
        await conn.send_error("'audio' is not valid base64.", "invalid_value", param="audio", event_id=event.event_id)
        return
    except AudioError as exc:
        await conn.send_error(str(exc), "invalid_value", param="audio", event_id=event.event_id)
        return
    if samples.size == 0:
        return
    stream = await conn.ensure_stream()
    if stream is None:
        return
    rate = conn.config.sample_rate
    try:
        seconds = await stream.accept(samples, rate)
    except AudioTooFast as exc:
        await conn.send_error(str(exc), "rate_limited", param="audio", event_id=event.event_id)
        return
    conn.last_audio_at = time.monotonic()
    metrics.INPUT_AUDIO_SECONDS.labels("realtime").inc(seconds)


@handles(AudioCommit)
async def on_commit(conn: Connection, event: AudioCommit) -> None:
    if conn.stream is not None:
        await conn.stream.commit()


@handles(AudioClear)
async def on_clear(conn: Connection, event: AudioClear) -> None:
    if conn.stream is not None:
        conn.stream.clear()
    await conn.send(Cleared())


# -- the route ----------------------------------------------------------------------


def realtime_router(engine: Engine, settings: Settings, slots: StreamSlots) -> APIRouter:
    router = APIRouter()
    service = StreamService.from_settings(engine, settings, slots)
    idle_timeout_s = float(settings.realtime_idle_s)

    @router.websocket("/v1/realtime")
    async def realtime(ws: WebSocket) -> None:
        ok, subprotocol = websocket_key_ok(ws, settings.api_key.get_secret_value())
        await ws.accept(subprotocol=subprotocol)
        if not ok:
            metrics.REALTIME_CONNECTIONS.labels("unauthorized").inc()
            await _refuse(ws, "Incorrect or missing API key: send `Authorization: Bearer <API_KEY>`.", "invalid_api_key", CLOSE_POLICY)
            return
        intent = ws.query_params.get("intent")
        if intent not in (None, "transcription"):
            await _refuse(ws, f"Only intent=transcription is served here, not {intent!r}.", "unsupported_intent", CLOSE_POLICY)
            return
        metrics.REALTIME_CONNECTIONS.labels("accepted").inc()
        # OpenAI's SDK (GA interface) names a model in the URL and speaks `session.*`;
        # beta clients (`OpenAI-Beta: realtime=v1`) and plain ones get `transcription_session.*`.
        beta = "realtime=v1" in ws.headers.get("openai-beta", "")
        ga = ws.query_params.get("model") is not None and not beta
        await Connection(ws, service, ga=ga, idle_timeout_s=idle_timeout_s).run()

    return router


async def _refuse(ws: WebSocket, message: str, code: str, close_code: int, *, type: str = "invalid_request_error") -> None:
    try:
        await ws.send_text(error_event(message, code, type=type).model_dump_json())
        await ws.close(code=close_code, reason=message[:120])
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass
