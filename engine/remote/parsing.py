"""The audio we upload and the answers we read: what differs between OpenAI-compatible servers.

Every Whisper server reads 16 kHz mono 16-bit FLAC or WAV. Answers come in several
shapes (`json`, `verbose_json` with segments and confidence signals, plain text, a
language given as a name or a code; stream events in OpenAI's `transcript.text.delta`
or vLLM's chat-style `choices[0].delta.content` form), so they are read leniently here.
"""

from __future__ import annotations

import io
import json
import wave
from typing import Any

import numpy as np

from engine import languages
from engine.base import SAMPLE_RATE, Segment, Transcription, Word
from engine.remote.errors import RemoteError
from engine.word_times import UNSPACED_LANGUAGES

AUDIO_FORMATS = ("flac", "wav")

def encode_audio(audio: np.ndarray, fmt: str = "flac") -> tuple[str, bytes, str]:
    """16 kHz mono 16-bit audio file: (filename, data, content type), as the openai client takes it."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2")
    buf = io.BytesIO()
    if fmt == "flac":
        import soundfile

        soundfile.write(buf, pcm, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        return "audio.flac", buf.getvalue(), "audio/flac"
    if fmt != "wav":
        raise ValueError(f"remote audio format must be 'flac' or 'wav', not {fmt!r}")
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())
    return "audio.wav", buf.getvalue(), "audio/wav"


def language_code(value: Any) -> str | None:
    """The language a server answered ("en", "English" or "english") as a code; None if absent."""
    if not isinstance(value, str) or not value.strip():
        return None
    return languages.language_code(value)


def text_of_body(body: bytes, ctype: str) -> str:
    """The text of an answer that is plain text, or JSON with a `text` field."""
    text = body.decode("utf-8", errors="replace")
    if "json" in ctype or text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            return text.strip()
        if isinstance(data, dict):
            return str(data.get("text", "")).strip()
    return text.strip()


def parse_transcription(
    body: bytes, ctype: str, *, fmt: str, duration: float, offset: float, language: str | None
) -> Transcription:
    """A `Transcription` from an answer body; segment times moved by `offset`, kept inside the audio."""
    if fmt == "text" or "json" not in ctype:
        text = text_of_body(body, ctype)
        return Transcription(text, language, duration, [Segment(offset, offset + duration, text)] if text else [])
    try:
        data = json.loads(body)
    except ValueError as exc:
        snippet = body[:200].decode("utf-8", "replace")
        raise RemoteError(f"the remote endpoint sent an unreadable answer: {snippet!r}") from exc
    if not isinstance(data, dict) or "text" not in data:
        raise RemoteError(f"the remote endpoint's answer has no 'text': {str(data)[:200]}")
    text = str(data.get("text") or "").strip()
    raw_segments = data.get("segments") or []
    segments: list[Segment] = []
    signals: dict[str, list[float]] = {"avg_logprob": [], "compression_ratio": [], "no_speech_prob": []}
    for s in raw_segments:
        if not isinstance(s, dict):
            continue
        try:
            start = float(s.get("start", 0.0))
            end = float(s.get("end", start))
        except (TypeError, ValueError):
            continue
        seg_text = str(s.get("text") or "").strip()
        if seg_text:
            start = min(max(0.0, start), duration)
            end = min(max(start, end), duration)
            segments.append(Segment(offset + start, offset + end, seg_text))
        for key, bucket in signals.items():
            value = s.get(key)
            if isinstance(value, (int, float)):
                bucket.append(float(value))
    if not segments and text:
        segments = [Segment(offset, offset + duration, text)]
    if raw_segments and segments:
        text = " ".join(s.text for s in segments)
    logprobs, ratios, no_speech = signals.values()
    return Transcription(
        words=words_of(data.get("words"), duration=duration, offset=offset, language=language_code(data.get("language")) or language),
        text=text,
        language=language_code(data.get("language")) or language,
        duration=duration,
        segments=segments,
        avg_logprob=float(np.mean(logprobs)) if logprobs else None,
        compression_ratio=max(ratios) if ratios else None,
        no_speech_prob=float(np.mean(no_speech)) if no_speech else None,
    )


def words_of(raw: Any, *, duration: float, offset: float, language: str | None = None) -> list[Word]:
    """The endpoint's `words` ([{word, start, end, probability?}]), times moved by `offset`
    and kept inside the audio. A word without a probability (OpenAI gives none) gets NaN:
    unknown, never a made-up confidence. Unreadable rows are skipped."""
    words: list[Word] = []
    for w in raw if isinstance(raw, list) else []:
        if not isinstance(w, dict) or not str(w.get("word") or "").strip():
            continue
        try:
            start = min(max(0.0, float(w["start"])), duration)
            end = min(max(start, float(w["end"])), duration)
            p = w.get("probability")
            probability = float(p) if isinstance(p, (int, float)) else float("nan")
        except (KeyError, TypeError, ValueError):
            continue
        text = str(w["word"])
        # Whisper's words keep their leading space (joined they give the text); OpenAI's have
        # none, and languages written without spaces need none.
        if not text[:1].isspace() and language not in UNSPACED_LANGUAGES:
            text = " " + text
        words.append(Word(text, offset + start, offset + end, probability))
    return words


def event_delta(event: Any) -> str:
    """The text an SSE event adds: OpenAI's `transcript.text.delta` or vLLM's `choices[0].delta.content`."""
    kind = getattr(event, "type", None)
    if kind == "transcript.text.delta":
        return getattr(event, "delta", None) or ""
    if kind is not None and str(kind).startswith("transcript."):
        return ""  # transcript.text.done and other summaries repeat what was streamed
    parts = []
    for choice in getattr(event, "choices", None) or []:
        delta = choice.get("delta") if isinstance(choice, dict) else getattr(choice, "delta", None)
        content = delta.get("content") if isinstance(delta, dict) else getattr(delta, "content", None)
        if content:
            parts.append(content)
    return "".join(parts)
