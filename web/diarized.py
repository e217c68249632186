"""`response_format=diarized_json` on /v1/audio/transcriptions, in OpenAI's shape.

OpenAI's `gpt-4o-transcribe-diarize` answers with `segments` of
`{type: "transcript.text.segment", id, start, end, text, speaker}` plus `text`,
`duration`, `task` and `usage`; with `stream=true` it sends a `transcript.text.segment`
event per segment before `transcript.text.done`. Speakers are letters (A, B, ...) unless
the caller names them: `known_speaker_names[]` with `known_speaker_references[]`, each
reference a short audio clip as a data URL (`data:audio/wav;base64,...`).

Here Whisper transcribes with word times, then engine/speakers labels the voices and
cuts segments where the speaker changes; that runs in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
from typing import Any

from engine.audio import load_audio
from engine.base import SAMPLE_RATE, AudioError, Segment
from engine.speakers.diarize import KnownSpeakers
from engine.speakers.encoder import EncoderMissing
from web.errors import APIError

#: OpenAI takes up to four known speakers, each with a reference of 2-10 s.
MAX_KNOWN_SPEAKERS = 4
MIN_REFERENCE_S = 1.0
MAX_REFERENCE_S = 10.0


def _decode_reference(value: str, index: int) -> Any:
    """The audio of one `data:<mime>;base64,<data>` reference."""
    param = "known_speaker_references"
    head, sep, data = value.partition(",")
    if not sep or not head.startswith("data:") or not head.endswith(";base64"):
        raise APIError(400, f"known_speaker_references[{index}] must be a data URL (data:audio/wav;base64,...).", param=param, code="invalid_value")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise APIError(400, f"known_speaker_references[{index}] is not valid base64.", param=param, code="invalid_value") from None
    try:
        audio = load_audio(raw, max_seconds=MAX_REFERENCE_S)
    except AudioError as exc:
        raise APIError(400, f"known_speaker_references[{index}]: {exc}", param=param, code="invalid_audio") from exc
    if len(audio) < MIN_REFERENCE_S * SAMPLE_RATE:
        raise APIError(400, f"known_speaker_references[{index}] is shorter than {MIN_REFERENCE_S:g} s.", param=param, code="invalid_audio")
    return audio


async def known_speakers(form: Any) -> KnownSpeakers | None:
    """The form's known speakers, embedded (None when it names none)."""
    from engine.speakers.encoder import shared_encoder

    names = [n for n in form.getlist("known_speaker_names[]") + form.getlist("known_speaker_names") if isinstance(n, str)]
    refs = [r for r in form.getlist("known_speaker_references[]") + form.getlist("known_speaker_references") if isinstance(r, str)]
    if not names and not refs:
        return None
    if len(names) != len(refs):
        raise APIError(400, f"known_speaker_names[] ({len(names)}) and known_speaker_references[] ({len(refs)}) must pair up.", param="known_speaker_names", code="invalid_value")
    if len(names) > MAX_KNOWN_SPEAKERS:
        raise APIError(400, f"At most {MAX_KNOWN_SPEAKERS} known speakers.", param="known_speaker_names", code="invalid_value")
    if len(set(names)) != len(names) or not all(n.strip() for n in names):
        raise APIError(400, "known_speaker_names[] must be distinct and not empty.", param="known_speaker_names", code="invalid_value")
    clips = [await asyncio.to_thread(_decode_reference, r, i) for i, r in enumerate(refs)]
    try:
        encoder = await asyncio.to_thread(shared_encoder)
    except EncoderMissing as exc:
        raise _unavailable(exc) from exc
    return KnownSpeakers([n.strip() for n in names], await asyncio.to_thread(encoder.utterances, clips))


def _unavailable(exc: Exception) -> APIError:
    """503: this server cannot label speakers (its install lacks the encoder's wheel)."""
    return APIError(503, f"Speaker labels are unavailable on this server: {exc}.", type="server_error", code="speakers_unavailable")


async def label(audio: Any, result: Any, known: KnownSpeakers | None) -> list[Segment]:
    """The transcription's segments with speakers, computed in a worker thread."""
    from engine.speakers.diarize import label_speakers

    try:
        return (await asyncio.to_thread(label_speakers, audio, result, known)).segments
    except EncoderMissing as exc:
        raise _unavailable(exc) from exc


def segment_json(index: int, segment: Segment) -> dict[str, Any]:
    """One segment as OpenAI's TranscriptionDiarizedSegment (also the stream's segment event)."""
    return {
        "type": "transcript.text.segment",
        "id": f"seg_{index}",
        "start": round(segment.start, 3),
        "end": round(max(segment.end, segment.start), 3),
        "text": segment.text.strip(),
        "speaker": segment.speaker or "A",
    }


def spoken(segments: list[Segment]) -> list[Segment]:
    """The segments with text (gaps the engine could not decode keep their note as text)."""
    return [s for s in segments if s.text.strip()]


def body(segments: list[Segment], text: str, duration: float) -> dict[str, Any]:
    """The whole `diarized_json` answer (OpenAI's TranscriptionDiarized)."""
    return {
        "task": "transcribe",
        "duration": round(duration, 3),
        "text": text,
        "segments": [segment_json(i, s) for i, s in enumerate(spoken(segments))],
        "usage": {"type": "duration", "seconds": math.ceil(duration)},
    }
