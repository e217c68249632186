"""The realtime WebSocket's events as pydantic models (OpenAI's realtime transcription names).

Client events are parsed in one place (`parse_client_event`): the size is checked before
anything is parsed, the JSON is read by pydantic's own parser (its nesting limit turns
`[[[[...]]]]` into an error, not a `RecursionError`), the `type` picks the model, and the
model validates every field. Whatever is wrong comes back as one `EventError` that the
connection answers with an `error` event; the connection lives on.

Both session shapes are accepted: OpenAI's GA `session.update` (what the official SDK's
`client.realtime.connect()` sends: `session.audio.input.{format, transcription,
turn_detection}`) and the beta `transcription_session.update` (`input_audio_format`,
`input_audio_transcription`, `turn_detection`). Unknown fields are ignored, as OpenAI's
clients send more than a transcription server needs.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal, Union

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

#: Sample rates a client may send PCM16 at (OpenAI's default is 24 kHz).
ALLOWED_RATES = (8_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000)
DEFAULT_RATE = 24_000
#: Largest single append (base64 characters): ~15 s of 24 kHz PCM16.
MAX_APPEND_CHARS = 1_000_000
#: Largest client event (characters), checked before it is parsed: one largest append
#: with room for its envelope. The server itself refuses frames past `WS_MAX_SIZE`.
MAX_EVENT_CHARS = MAX_APPEND_CHARS + 16_384


def event_id() -> str:
    return "event_" + uuid.uuid4().hex[:20]


class EventError(Exception):
    """A client event that cannot be served: answered with an `error` event."""

    def __init__(self, message: str, code: str, *, param: str | None = None, event_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.event_id = event_id


# -- client events ---------------------------------------------------------------------


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Transcription(_Lenient):
    """`input_audio_transcription` (beta) / `audio.input.transcription` (GA)."""

    model: str | None = None
    language: str | None = None
    prompt: str | None = None


class TurnDetection(_Lenient):
    type: Literal["server_vad", "semantic_vad"] = "server_vad"
    threshold: float | None = Field(None, gt=0.0, lt=1.0)
    silence_duration_ms: int | None = Field(None, ge=100, le=10_000)
    prefix_padding_ms: int | None = Field(None, ge=0, le=5_000)
    #: `semantic_vad` only: how soon a pause ends the turn (`auto` is `medium`, as OpenAI's).
    eagerness: Literal["low", "medium", "high", "auto"] | None = None


def _check_rate(rate: int | None) -> int | None:
    if rate is not None and rate not in ALLOWED_RATES:
        raise ValueError(f"unsupported sample rate {rate}: use one of {', '.join(map(str, ALLOWED_RATES))}")
    return rate


class AudioFormat(_Lenient):
    type: Literal["audio/pcm"] = "audio/pcm"
    rate: int | None = None

    @field_validator("rate")
    @classmethod
    def _known_rate(cls, rate: int | None) -> int | None:
        return _check_rate(rate)


class AudioInput(_Lenient):
    format: AudioFormat | None = None
    transcription: Transcription | None = None
    turn_detection: TurnDetection | None = None  # null: no server VAD (see `given`)


class Audio(_Lenient):
    input: AudioInput | None = None


#: What a session's `include` may ask (OpenAI's one item): each completed transcript's
#: token log-probabilities.
LOGPROBS_ITEM = "item.input_audio_transcription.logprobs"
Include = list[Literal["item.input_audio_transcription.logprobs"]]


class SessionConfig(_Lenient):
    """What a client may set, from either shape: None where it said nothing."""

    sample_rate: int | None = None
    include: Include | None = None
    transcription: Transcription | None = None
    #: Given (`turn_detection` was in the event) and its value (None: no server VAD).
    turn_detection_given: bool = False
    turn_detection: TurnDetection | None = None


class GASession(_Lenient):
    type: Literal["transcription"] = "transcription"
    audio: Audio | None = None
    sample_rate: int | None = None
    include: Include | None = None

    @field_validator("sample_rate")
    @classmethod
    def _known_rate(cls, rate: int | None) -> int | None:
        return _check_rate(rate)

    def config(self) -> SessionConfig:
        audio_in = self.audio.input if self.audio and self.audio.input else AudioInput()
        rate = audio_in.format.rate if audio_in.format and audio_in.format.rate else self.sample_rate
        return SessionConfig(
            sample_rate=rate,
            include=self.include,
            transcription=audio_in.transcription,
            turn_detection_given="turn_detection" in audio_in.model_fields_set,
            turn_detection=audio_in.turn_detection,
        )


class BetaSession(_Lenient):
    input_audio_format: Literal["pcm16"] | None = None
    sample_rate: int | None = None
    input_audio_transcription: Transcription | None = None
    turn_detection: TurnDetection | None = None
    include: Include | None = None

    @field_validator("sample_rate")
    @classmethod
    def _known_rate(cls, rate: int | None) -> int | None:
        return _check_rate(rate)

    def config(self) -> SessionConfig:
        return SessionConfig(
            sample_rate=self.sample_rate,
            include=self.include,
            transcription=self.input_audio_transcription,
            turn_detection_given="turn_detection" in self.model_fields_set,
            turn_detection=self.turn_detection,
        )


class ClientEvent(_Lenient):
    event_id: str | None = None


class SessionUpdate(ClientEvent):
    type: Literal["session.update"]
    session: GASession


class TranscriptionSessionUpdate(ClientEvent):
    type: Literal["transcription_session.update"]
    session: BetaSession


class AudioAppend(ClientEvent):
    type: Literal["input_audio_buffer.append"]
    audio: str = Field(max_length=MAX_APPEND_CHARS)


class AudioCommit(ClientEvent):
    type: Literal["input_audio_buffer.commit"]


class AudioClear(ClientEvent):
    type: Literal["input_audio_buffer.clear"]


CLIENT_EVENTS: dict[str, type[ClientEvent]] = {
    m.model_fields["type"].annotation.__args__[0]: m  # type: ignore[union-attr]
    for m in (SessionUpdate, TranscriptionSessionUpdate, AudioAppend, AudioCommit, AudioClear)
}


def parse_client_event(raw: str | bytes) -> ClientEvent:
    """One client event from a text frame, or `EventError` saying what is wrong."""
    if len(raw) > MAX_EVENT_CHARS:
        raise EventError(
            f"An event may have at most {MAX_EVENT_CHARS} characters, this one has {len(raw)}; send audio in smaller chunks.",
            "message_too_large",
        )
    try:
        data = pydantic_core.from_json(raw)
    except ValueError as exc:  # includes the nesting limit
        raise EventError(f"Event is not valid JSON: {exc}", "invalid_json") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise EventError("Event must be a JSON object with a string 'type'.", "invalid_event")
    client_id = data.get("event_id") if isinstance(data.get("event_id"), str) else None
    model = CLIENT_EVENTS.get(data["type"])
    if model is None:
        raise EventError(f"Unsupported event type {data['type'][:100]!r}.", "unknown_event", param="type", event_id=client_id)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        param = ".".join(str(p) for p in first.get("loc", ()))
        code = "audio_too_large" if first.get("type") == "string_too_long" and param == "audio" else "invalid_value"
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        got = first.get("input")
        shown = isinstance(got, (int, float)) or (isinstance(got, str) and len(got) <= 60)
        detail = f" (got {got!r})" if shown and first.get("type") != "missing" else ""
        raise EventError(f"{param or 'event'}: {message}{detail}", code, param=param or None, event_id=client_id) from None


# -- server events ---------------------------------------------------------------------


class ServerEvent(BaseModel):
    event_id: str = Field(default_factory=event_id)
    type: str


class ErrorDetail(BaseModel):
    type: str = "invalid_request_error"
    code: str
    message: str
    param: str | None = None
    event_id: str | None = None
    item_id: str | None = None


class Error(ServerEvent):
    type: Literal["error"] = "error"
    error: ErrorDetail


class SessionEvent(ServerEvent):
    """`session.created` / `.updated` (GA) or `transcription_session.*` (beta)."""

    session: dict[str, Any]


class SpeechStarted(ServerEvent):
    type: Literal["input_audio_buffer.speech_started"] = "input_audio_buffer.speech_started"
    item_id: str
    audio_start_ms: int


class SpeechStopped(ServerEvent):
    type: Literal["input_audio_buffer.speech_stopped"] = "input_audio_buffer.speech_stopped"
    item_id: str
    audio_end_ms: int


class Committed(ServerEvent):
    type: Literal["input_audio_buffer.committed"] = "input_audio_buffer.committed"
    item_id: str
    previous_item_id: str | None = None


class Cleared(ServerEvent):
    type: Literal["input_audio_buffer.cleared"] = "input_audio_buffer.cleared"


class TranscriptDelta(ServerEvent):
    type: Literal["conversation.item.input_audio_transcription.delta"] = "conversation.item.input_audio_transcription.delta"
    item_id: str
    content_index: int = 0
    delta: str


class WordTime(BaseModel):
    """An extension: one word of a completed transcript with its time in the stream's
    audio (seconds from the connection's first audio) and the decoder's confidence."""

    word: str
    start: float
    end: float
    probability: float
    #: With `LIVE_SPEAKERS` too: the word's speaker, where the utterance holds two voices.
    speaker: str | None = None


class TranscriptPartial(ServerEvent):
    """An extension: the whole current hypothesis for live display (OpenAI clients ignore it)."""

    type: Literal["conversation.item.input_audio_transcription.partial"] = "conversation.item.input_audio_transcription.partial"
    item_id: str
    committed: str
    tentative: str
    text: str
    #: With `LIVE_PARTIAL_WORD_TIMES` (and `LIVE_WORD_TIMES`): the partial's words with times.
    words: list[WordTime] | None = None


class Usage(BaseModel):
    type: Literal["duration"] = "duration"
    seconds: float


class LogProb(BaseModel):
    """OpenAI's `LogProbProperties`: one text token, its log-probability and UTF-8 bytes."""

    token: str
    logprob: float
    bytes: list[int]


class TranscriptCompleted(ServerEvent):
    type: Literal["conversation.item.input_audio_transcription.completed"] = (
        "conversation.item.input_audio_transcription.completed"
    )
    item_id: str
    content_index: int = 0
    transcript: str
    usage: Usage
    latency_s: float
    language: str | None = None
    #: An extension (with `LIVE_WORD_TIMES` on): the transcript's words with their times.
    words: list[WordTime] | None = None
    #: OpenAI's: with `include: ["item.input_audio_transcription.logprobs"]`.
    logprobs: list[LogProb] | None = None
    #: An extension (with `LIVE_SPEAKERS` on): who said it, "Speaker 1", "Speaker 2"...
    speaker: str | None = None


AnyServerEvent = Union[Error, SessionEvent, SpeechStarted, SpeechStopped, Committed, Cleared, TranscriptDelta, TranscriptPartial, TranscriptCompleted]


def error_event(message: str, code: str, *, type: str = "invalid_request_error", param: str | None = None, event_id: str | None = None, item_id: str | None = None) -> Error:
    return Error(error=ErrorDetail(type=type, code=code, message=message, param=param, event_id=event_id, item_id=item_id))
