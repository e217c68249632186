"""The settled record of a session: every final, exportable as txt, srt, vtt and json.

Only finals are kept (partials are a display concern); a final with no text (an
utterance whose words were all dropped by the guards) is not a line of the transcript.
Formatting reuses `engine.formats`, so a live transcript and a file transcription
export to the same shapes; a final whose words change speaker is written as one segment
per speaker (`engine.speakers.parts`), as a file's segments are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from engine import formats
from engine.speakers.parts import SpeakerPart, speaker_parts
from streaming.events import TranscriptEvent

__all__ = ["Transcript"]


@dataclass(frozen=True)
class _Cue:
    start: float
    end: float
    text: str
    speaker: str | None = None  # written by engine.formats ("A: text", a WebVTT voice)


@dataclass
class Transcript:
    """Finals in utterance order. `add` ignores partials and empty finals."""

    finals: list[TranscriptEvent] = field(default_factory=list)

    def add(self, event: TranscriptEvent) -> bool:
        """Keep a final; returns whether it was kept."""
        if event.type != "final" or not event.text.strip():
            return False
        self.finals.append(event)
        return True

    def clear(self) -> None:
        self.finals.clear()

    @property
    def text(self) -> str:
        """All finals joined with spaces."""
        return " ".join(e.text.strip() for e in self.finals if e.text.strip())

    @property
    def duration(self) -> float:
        return max((e.end_s for e in self.finals), default=0.0)

    def _parts(self) -> list[tuple[TranscriptEvent, SpeakerPart]]:
        """Each final as one part per speaker (one part unless its words change voice)."""
        return [(e, part) for e in self.finals for part in speaker_parts(e.start_s, e.end_s, e.text, e.speaker, e.words)]

    def _cues(self) -> list[_Cue]:
        return [_Cue(p.start, p.end, p.text, p.speaker) for _, p in self._parts()]

    def to_txt(self) -> str:
        """One final per line."""
        return formats.to_text(self._cues())

    def to_srt(self) -> str:
        return formats.to_srt(self._cues())

    def to_vtt(self) -> str:
        return formats.to_vtt(self._cues())

    def to_dict(self) -> dict[str, object]:
        language = next((e.language for e in reversed(self.finals) if e.language), None)
        return {
            "text": self.text,
            "language": language,
            "duration": round(self.duration, 3),
            "segments": [
                {
                    "id": i,
                    "utterance_id": e.utterance_id,
                    "start": round(p.start, 3),
                    "end": round(p.end, 3),
                    "text": p.text,
                    **({"speaker": p.speaker} if p.speaker else {}),
                }
                for i, (e, p) in enumerate(self._parts())
            ],
        }

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=indent)

    def export(self, fmt: str) -> str:
        """`fmt`: txt (or text), srt, vtt or json."""
        fmt = fmt.lower()
        if fmt in ("txt", "text"):
            return self.to_txt()
        if fmt == "srt":
            return self.to_srt()
        if fmt == "vtt":
            return self.to_vtt()
        if fmt == "json":
            return self.to_json()
        raise ValueError(f"unknown transcript format {fmt!r}; expected txt, srt, vtt or json")
