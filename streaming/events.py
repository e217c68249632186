"""Transcript events: what a session emits and every consumer (page, WebSocket, export) reads.

Events are immutable and carry everything a consumer needs, so consumers never reach
back into the session.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal, Union

from engine.base import TokenLogprob, Word


@dataclass(frozen=True)
class TranscriptEvent:
    """A `partial` (utterance still growing) or `final` (utterance settled) hypothesis.

    `committed` never changes once emitted for an utterance (LocalAgreement); `tentative`
    may. For a final, `tentative` is empty and `committed` is the settled text.
    Times are seconds of session audio; `latency_s` is wall time from the audio's end
    (`end_s` reached the session) to this event. A final may carry its `words` (times in
    session audio, confidence) and the `speaker` label it was given; both stay empty where
    the stream does not compute them.
    """

    type: Literal["partial", "final"]
    utterance_id: int
    committed: str
    tentative: str
    start_s: float
    end_s: float
    latency_s: float
    language: str | None = None
    words: tuple[Word, ...] = ()
    speaker: str | None = None
    #: The final's text tokens with their log-probabilities, when the stream asks for them
    #: (`SessionOptions.logprobs`: a realtime client's `include`).
    logprobs: tuple[TokenLogprob, ...] = ()

    @property
    def text(self) -> str:
        return " ".join(part for part in (self.committed, self.tentative) if part)

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "text": self.text}


@dataclass(frozen=True)
class StatusEvent:
    """Session health for the status line: how far behind real time decoding is."""

    type: Literal["status"]
    lag_s: float
    partial_interval_s: float
    last_final_latency_s: float | None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class ErrorEvent:
    """A decode failed (engine down, remote refused). The session keeps running."""

    type: Literal["error"]
    message: str
    utterance_id: int | None = None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


Event = Union[TranscriptEvent, StatusEvent, ErrorEvent]
