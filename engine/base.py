"""The one small interface every transcription engine implements.

Sessions, the page and the HTTP API only ever see `Engine`; whether decoding runs
in this process (vLLM) or on a remote OpenAI-compatible server is hidden behind it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import AsyncIterator, Callable, Literal, Protocol, runtime_checkable

import numpy as np

from settings import SAMPLE_RATE as SAMPLE_RATE  # defined once in settings; re-exported for the engine's callers

Task = Literal["transcribe", "translate"]
ProgressCallback = Callable[[float, float], None]


#: Request priorities (vLLM's convention: lower is served first). A live stream's final
#: and any request made by a caller go first; a live partial (soon superseded anyway)
#: and the pieces of a long file wait behind them, so a final never queues behind the
#: partials of other streams or behind a two-hour upload.
PRIORITY_DEFAULT = 0
PRIORITY_BACKGROUND = 1

#: Whisper's window: audio longer than this takes the long-form path (split on quiet points).
WINDOW_S = 30.0


class TranscriptionError(Exception):
    """A request failed for a reason the caller should show to the user as is."""


class AudioError(TranscriptionError):
    """The audio itself is unusable (empty, corrupt, not audio, NaN samples...)."""


class UnsupportedRequest(TranscriptionError, ValueError):
    """The model cannot do what was asked (translate with an English-only model...)."""


#: Longest decoder prompt a caller may give (characters), for every way in (live streams,
#: realtime, /v1): Whisper keeps only its last 223 tokens, and a longer text would only
#: cost tokenizer time on the event loop (a 1 MiB prompt stalls every live stream).
MAX_PROMPT_CHARS = 2_000


def checked_prompt(prompt: str | None) -> str | None:
    """The caller's prompt, stripped (None when empty); refused when longer than MAX_PROMPT_CHARS."""
    prompt = (prompt or "").strip() or None
    if prompt is not None and len(prompt) > MAX_PROMPT_CHARS:
        raise UnsupportedRequest(f"The prompt may have at most {MAX_PROMPT_CHARS} characters, not {len(prompt)}.")
    return prompt


class EngineUnavailable(TranscriptionError):
    """The engine could not serve the request (remote down, auth refused, overloaded)."""


@dataclass(frozen=True)
class Segment:
    """A stretch of text with its position in the audio, in seconds.

    `kind` is "gap" for speech the decoder did not give back even after the coverage
    retries (engine/coverage.py): its text says so ("[inaudible 12.3-15.1 s]"), so a
    transcript never has a silent hole. `speaker` is set by diarization (engine/speakers).
    """

    start: float
    end: float
    text: str
    kind: str = "speech"
    #: Who said it (engine/speakers): None unless the caller asked for speakers.
    speaker: str | None = None
    #: Its words with their times, where the caller keeps them with the segment (an
    #: upload's transcript in the History: `engine.word_times.with_segment_words`); the
    #: transcription's own `words` list is the source.
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class Word:
    """One word with its time in the audio's timeline (seconds) and the decoder's
    confidence in it (mean probability of its tokens, 0-1). `word` keeps Whisper's
    leading space, so joining the words gives the text back. `speaker` is the voice's
    label where speakers were told apart word by word (a live final whose voice changes
    inside it: `engine.speakers.parts`); None elsewhere."""

    word: str
    start: float
    end: float
    probability: float
    speaker: str | None = None


@dataclass(frozen=True)
class TokenLogprob:
    """One decoded text token with its log-probability (OpenAI's `include[]=logprobs`):
    `token` its text, `bytes` its UTF-8 bytes (a token may hold part of a character)."""

    token: str
    logprob: float
    bytes: tuple[int, ...]


@dataclass(frozen=True)
class Transcription:
    """The result of one decode.

    `avg_logprob` and `compression_ratio` are the decoder's own confidence signals,
    used by the streaming guards against hallucination and repetition loops; they are
    None where an engine cannot report them (a remote endpoint).
    """

    text: str
    language: str | None
    duration: float
    segments: list[Segment] = field(default_factory=list)
    avg_logprob: float | None = None
    compression_ratio: float | None = None
    no_speech_prob: float | None = None
    #: Filled only when the request asked for word times (`DecodeRequest.word_timestamps`).
    words: list[Word] = field(default_factory=list)
    #: Filled only when the request asked for them (`DecodeRequest.logprobs`).
    logprobs: list[TokenLogprob] = field(default_factory=list)


@dataclass(frozen=True)
class EngineInfo:
    """What the status line and /v1/models show about the engine."""

    model: str
    engine: str
    device: str
    multilingual: bool
    settings: dict[str, object] = field(default_factory=dict)


def check_task(info: EngineInfo, language: str | None, task: str) -> None:
    """Refuse what the model cannot do before any audio is decoded (silent audio included)."""
    if task not in ("transcribe", "translate"):
        raise UnsupportedRequest(f"task must be 'transcribe' or 'translate', not {task!r}")
    if not info.multilingual:
        if task == "translate":
            raise UnsupportedRequest(f"{info.model} is English-only: it cannot translate")
        if language not in (None, "", "en"):
            raise UnsupportedRequest(f"{info.model} is English-only: language {language!r} is not supported")


@dataclass(frozen=True)
class DecodeRequest:
    """One transcription request: the only value that travels from callers to engines.

    Every engine entry point takes one of these instead of a keyword list, so a new
    option (a prompt, a priority) is added in one place. `progress(done_s, total_s)` is
    called as long-form pieces finish; `priority` orders requests waiting for the engine
    (lower first; engines without a queue of their own may ignore it). `draft` marks a
    decode whose text is soon replaced (a live partial): an engine spends no extra
    decodes to perfect it. `word_timestamps` asks for `Transcription.words` (an extra
    aligning pass: only finals and files ask for it); `logprobs` asks for
    `Transcription.logprobs`, the decoder's own log-probability of each text token.
    `end_not_before` (seconds into the audio, with `timestamps`): the decode may not end
    before its timestamps reach it; the long-form path sets it at a window's last speech
    (engine/longform.py); an engine that cannot honour it (a remote API) ignores it and
    the coverage check decodes again what an early end lost.
    """

    audio: np.ndarray = field(repr=False)
    language: str | None = None
    task: Task = "transcribe"
    prompt: str | None = None
    temperature: float = 0.0
    timestamps: bool = False
    priority: int = PRIORITY_DEFAULT
    draft: bool = False
    word_timestamps: bool = False
    logprobs: bool = False
    end_not_before: float | None = None
    progress: ProgressCallback | None = field(default=None, repr=False, compare=False)

    @property
    def duration(self) -> float:
        return len(self.audio) / SAMPLE_RATE

    def with_(self, **changes: object) -> "DecodeRequest":
        """A copy with some fields changed (a piece of the audio, a detected language...)."""
        return replace(self, **changes)  # type: ignore[arg-type]


@runtime_checkable
class Engine(Protocol):
    """Turns 16 kHz mono float32 audio into text. One instance serves every session."""

    info: EngineInfo

    async def transcribe(self, request: DecodeRequest) -> Transcription:
        """Decode audio of any length; longer than 30 s goes through the long-form path."""
        ...

    def transcribe_stream(self, request: DecodeRequest) -> AsyncIterator[str]:
        """Yield text deltas as tokens arrive (short-form)."""
        ...

    async def close(self) -> None:
        ...


@runtime_checkable
class WindowDecoder(Protocol):
    """What the long-form path (engine/longform.py) needs of an engine: decode one window
    of at most 30 s whose first sample sits at `offset` seconds of the whole recording,
    and detect the language of a piece. Both engines implement it."""

    info: EngineInfo

    async def transcribe_window(self, request: DecodeRequest, offset: float = 0.0) -> Transcription:
        ...

    async def detect_language(self, audio: np.ndarray, priority: int = PRIORITY_DEFAULT) -> str | None:
        ...
