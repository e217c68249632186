"""Transcript writers shared by the CLI, the HTTP API and the streaming transcript export.

Pure functions of segments (anything with `start`, `end` in seconds and `text`, such as
`engine.base.Segment`) or of a `Transcription`. Conventions, the same in every format:

- segment text is stripped and its whitespace collapsed; segments left empty are
  skipped, and cue / segment numbers count only the ones written;
- times below 0 (or NaN) are written as 0, and an end before its start as the start;
- times are rounded to the millisecond; hours take as many digits as they need
  (`100:00:00,000` after 100 hours), minutes and seconds never overflow;
- a segment with a `speaker` (engine/speakers) is written `Speaker: text` in text and
  SRT, and as a WebVTT voice span `<v Speaker>text`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Protocol

from engine.base import Segment, TokenLogprob, Transcription, Word

#: Short word-timed subtitle cues (`word_cues`): at most this many words ...
CUE_MAX_WORDS = 7
#: ... and this many seconds a cue, as subtitle editors expect.
CUE_MAX_SECONDS = 3.0


class _Timed(Protocol):
    start: float
    end: float
    text: str


def _milliseconds(seconds: float) -> int:
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        return 0
    return math.floor(seconds * 1000 + 0.5)


def format_timestamp(seconds: float, *, decimal_marker: str = ".") -> str:
    """`HH:MM:SS.mmm` (hours widen past 99); `decimal_marker=","` gives SRT's form."""
    ms = _milliseconds(seconds)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_marker}{ms:03d}"


def srt_timestamp(seconds: float) -> str:
    """`00:01:02,345`"""
    return format_timestamp(seconds, decimal_marker=",")


def vtt_timestamp(seconds: float) -> str:
    """`00:01:02.345`"""
    return format_timestamp(seconds, decimal_marker=".")


def _clean(text: str) -> str:
    """One line per line of text, inner whitespace collapsed, blank lines dropped.

    A blank line would end a cue early in SRT and WebVTT.
    """
    lines = (" ".join(line.split()) for line in (text or "").splitlines())
    return "\n".join(line for line in lines if line)


def _speaker(segment: object) -> str:
    """The segment's speaker label on one line ("" when it has none)."""
    return " ".join(str(getattr(segment, "speaker", None) or "").split())


def _cues(segments: Iterable[_Timed], speakers: str | None = None) -> list[tuple[float, float, str]]:
    """(start, end, text) of each segment with text; its speaker, where it has one, written
    as `Speaker: ` (`speakers="prefix"`) or a WebVTT voice span (`"voice"`, text escaped)."""
    cues = []
    for segment in segments:
        text = _clean(segment.text)
        if not text:
            continue
        speaker = _speaker(segment) if speakers else ""
        if speakers == "voice":
            text = f"<v {_vtt_escape(speaker)}>{_vtt_escape(text)}" if speaker else _vtt_escape(text)
        elif speaker:
            text = f"{speaker}: {text}"
        start = _milliseconds(segment.start) / 1000
        end = max(start, _milliseconds(segment.end) / 1000)
        cues.append((start, end, text))
    return cues


def to_text(segments: Iterable[_Timed]) -> str:
    """Plain text, one segment per line, ending with a newline ("" when nothing was said)."""
    return "".join(f"{text}\n" for _, _, text in _cues(segments, "prefix"))


def to_srt(segments: Iterable[_Timed]) -> str:
    """SubRip: numbered cues from 1, `HH:MM:SS,mmm`, a blank line between cues."""
    blocks = [
        f"{i}\n{srt_timestamp(start)} --> {srt_timestamp(end)}\n{text.replace('-->', '->')}\n"
        for i, (start, end, text) in enumerate(_cues(segments, "prefix"), start=1)
    ]
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    # "&", "<" and ">" are markup in WebVTT cue text; escaping ">" also rules out "-->".
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(segments: Iterable[_Timed]) -> str:
    """WebVTT: the `WEBVTT` header, then cues `HH:MM:SS.mmm --> HH:MM:SS.mmm`."""
    blocks = [f"{vtt_timestamp(start)} --> {vtt_timestamp(end)}\n{text}\n" for start, end, text in _cues(segments, "voice")]
    return "WEBVTT\n\n" + "\n".join(blocks) if blocks else "WEBVTT\n"


def word_json(word: Word) -> dict[str, Any]:
    """One word as JSON: the word without Whisper's leading space, its times rounded to
    the millisecond, its probability (0-1, 4 decimals; null where unknown: NaN, a remote
    endpoint's word that came without one)."""
    probability = float(word.probability)
    return {
        "word": word.word.strip(),
        "start": _milliseconds(word.start) / 1000,
        "end": _milliseconds(max(word.start, word.end)) / 1000,
        "probability": None if math.isnan(probability) else round(probability, 4),
    }


def token_json(token: TokenLogprob) -> dict[str, Any]:
    """One token's log-probability as OpenAI's `include[]=logprobs` gives it."""
    return {"token": token.token, "logprob": round(float(token.logprob), 6), "bytes": list(token.bytes)}


#: Marks that end a sentence in Whisper's output (Latin, CJK, Arabic, Devanagari, ...).
SENTENCE_END = frozenset(".?!…。？！؟।።")
#: Closing marks that may follow them ('... he said."').
_CLOSERS = "\"'”’»)]}」』 \t\n"


def ends_sentence(text: str | None) -> bool:
    """Whether text ends a sentence (its last mark, after closing quotes and brackets, is a
    full stop, question or exclamation mark): a subtitle cue closes after such a word, and
    a live turn needs its pause's decode to end so (streaming.turns). Empty text counts as
    ended: no words, no evidence that the speaker goes on."""
    stripped = (text or "").rstrip(_CLOSERS)
    return not stripped or stripped[-1] in SENTENCE_END


def word_cues(words: Iterable[Word], max_words: int = CUE_MAX_WORDS, max_seconds: float = CUE_MAX_SECONDS) -> list[Segment]:
    """Words grouped into short subtitle cues (for `to_srt` / `to_vtt`): a cue ends after
    `max_words` words, before a word that would make it longer than `max_seconds`, and
    after a word that ends a sentence. Each cue runs from its first word's start to its
    last word's end."""
    cues: list[Segment] = []
    current: list[Word] = []

    def close() -> None:
        if current:
            cues.append(Segment(current[0].start, current[-1].end, "".join(w.word for w in current).strip()))
            current.clear()

    for word in words:
        if current and (len(current) >= max_words or word.end - current[0].start > max_seconds):
            close()
        current.append(word)
        if ends_sentence(word.word):
            close()
    close()
    return cues


def to_json(transcription: Transcription) -> dict[str, Any]:
    """A JSON-ready dict: text, language, duration and segments (id from 0, start, end, text),
    and `words` (word, start, end, probability) when the transcription has word times.

    Times are rounded to the millisecond; segments with no text are left out.
    """
    # The kinds of the segments `_cues` keeps (it skips those without text), in order.
    kept = [s for s in transcription.segments if _clean(s.text)]
    kinds = [getattr(s, "kind", "speech") for s in kept]
    speakers = [_speaker(s) for s in kept]
    return {
        "text": (transcription.text or "").strip(),
        "language": transcription.language,
        "duration": _milliseconds(transcription.duration) / 1000,
        "segments": [
            {"id": i, "start": start, "end": end, "text": text, **_gap_note(kind), **({"speaker": who} if who else {})}
            for i, ((start, end, text), kind, who) in enumerate(zip(_cues(transcription.segments), kinds, speakers))
        ],
        **({"words": [word_json(w) for w in transcription.words]} if transcription.words else {}),
    }


def _gap_note(kind: str) -> dict[str, Any]:
    """A gap segment (speech the engine could not decode, engine/coverage.py) says so in JSON."""
    return {"kind": "gap", "error": "speech here could not be transcribed"} if kind == "gap" else {}
