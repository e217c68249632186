"""A piece of transcript cut where its words change speaker (issue 19).

A file's Whisper segment and a live final are both "text with words"; where the words
carry speakers (`Word.speaker`) and the speaker changes between two of them, everything
that shows or writes the transcript (the page, the History, txt/srt/vtt/json) shows one
part per speaker, cut between those words at their times. One rule here, so a live final
and a file segment are cut the same way and every view of one agrees with the others.

Light on purpose (no scikit-learn, no torch): the page imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine.base import Word


@dataclass(frozen=True)
class SpeakerPart:
    """One speaker's words of a segment or final: its times, text and words."""

    start: float
    end: float
    text: str
    speaker: str | None
    words: tuple[Word, ...] = ()


def word_runs(words: Sequence[Word], speaker_of=lambda w: w.speaker) -> list[tuple[str | None, list[Word]]]:
    """Consecutive words of one speaker, in order: [(speaker, words), ...]."""
    runs: list[tuple[str | None, list[Word]]] = []
    for word in words:
        speaker = speaker_of(word)
        if runs and runs[-1][0] == speaker:
            runs[-1][1].append(word)
        else:
            runs.append((speaker, [word]))
    return runs


def speaker_parts(start: float, end: float, text: str, speaker: str | None, words: Sequence[Word] = ()) -> list[SpeakerPart]:
    """The piece as one part per speaker. One part (the piece as it is) unless its words
    carry at least two speakers; then each run of one speaker's words is a part whose
    text is those words, the first starting at the piece's start and the last ending at
    its end (the words spell the text: `streaming.words`)."""
    runs = word_runs(words) if any(w.speaker for w in words) else []
    if len(runs) < 2:
        return [SpeakerPart(start, end, text.strip(), speaker, tuple(words))]
    parts = []
    for i, (who, group) in enumerate(runs):
        begin = start if i == 0 else group[0].start
        finish = end if i == len(runs) - 1 else max(group[-1].end, begin)
        parts.append(SpeakerPart(begin, finish, "".join(w.word for w in group).strip(), who if who is not None else speaker, tuple(group)))
    return parts


def parts_of(piece: object) -> list[SpeakerPart]:
    """`speaker_parts` of anything with start/end/text/speaker/words attributes (a stored
    segment, an engine Segment)."""
    return speaker_parts(
        float(getattr(piece, "start")), float(getattr(piece, "end")), str(getattr(piece, "text")),
        getattr(piece, "speaker", None), tuple(getattr(piece, "words", None) or ()),
    )
