"""Who spoke when in a file, and a transcript's segments split where the speaker changes.

The steps: voice embeddings of 1.6 s windows every HOP_S over the audio; the windows
whose centre falls in speech (the transcript's words, or its segments) are clustered
into speakers; runs of one speaker become turns; each word takes the speaker of the
turn at its middle, and a Whisper segment is cut between two words of different
speakers (word times: `DecodeRequest.word_timestamps`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from engine.base import Segment, Transcription, Word
from engine.speakers.choice import thresholds_for
from engine.speakers.cluster import (
    FILE_THRESHOLD,
    MIN_SPEAKER_S,
    MIN_TURN_S,
    NAME_SIMILARITY,
    centroids,
    cluster_windows,
    label_runs,
    name_speakers,
)
from engine.speakers.encoder import WINDOW_S, SpeakerEncoder, Windows
from engine.speakers.parts import word_runs

#: Step between two embedding windows (seconds): finer places changes better, costs more.
HOP_S = 0.4
#: A window is clustered when at least this share of its 1.6 s is speech: a window of
#: mostly silence or noise embeds no voice, and would make a speaker of its own.
MIN_SPEECH_SHARE = 0.5


@dataclass(frozen=True)
class Turn:
    """One speaker's stretch of audio (seconds)."""

    start: float
    end: float
    speaker: str


@dataclass(frozen=True)
class KnownSpeakers:
    """Names with one reference embedding each (OpenAI's known_speaker_names[] / _references[])."""

    names: list[str]
    embeddings: np.ndarray


def speech_spans(transcription: Transcription) -> list[tuple[float, float]]:
    """Where the transcript heard speech: its words when it has word times, else its segments."""
    if transcription.words:
        return [(w.start, w.end) for w in transcription.words]
    return [(s.start, s.end) for s in transcription.segments if s.text.strip()]


def _in_speech(centers: np.ndarray, spans: Sequence[tuple[float, float]], share: float = MIN_SPEECH_SHARE) -> np.ndarray:
    """Which windows hold at least `share` of speech (spans may overlap: words)."""
    covered = np.zeros(len(centers))
    lo, hi = centers - WINDOW_S / 2, centers + WINDOW_S / 2
    for start, end in _merged(spans):
        covered += np.clip(np.minimum(hi, end) - np.maximum(lo, start), 0.0, None)
    return covered >= share * WINDOW_S


def _merged(spans: Sequence[tuple[float, float]], gap: float = 0.0) -> list[tuple[float, float]]:
    """The spans sorted and joined where they overlap (or are within `gap`)."""
    out: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1] + gap:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _smooth(labels: np.ndarray, min_windows: int) -> np.ndarray:
    """Short runs sandwiched between two runs of one other speaker take that speaker."""
    labels = labels.copy()
    runs = label_runs(labels)
    for i in range(1, len(runs) - 1):
        start, length, _ = runs[i]
        if length < min_windows and runs[i - 1][2] == runs[i + 1][2]:
            labels[start : start + length] = runs[i - 1][2]
    return labels


def speaker_turns(
    windows: Windows,
    spans: Sequence[tuple[float, float]],
    known: KnownSpeakers | None = None,
    threshold: float = FILE_THRESHOLD,
    min_speaker_s: float = MIN_SPEAKER_S,
    hop_s: float = HOP_S,
    name_similarity: float = NAME_SIMILARITY,
) -> list[Turn]:
    """Turns over the speech spans: a change sits midway between the two windows that differ."""
    keep = _in_speech(windows.centers, spans)
    if not keep.any():  # speech too short for one window: the nearest windows, one speaker
        keep = _in_speech(windows.centers, spans, share=1e-9)
    if not keep.any():
        return []
    centers, embeddings = windows.centers[keep], windows.embeddings[keep]
    labels = cluster_windows(embeddings, hop_s, threshold, min_speaker_s)
    labels = _smooth(labels, max(1, round(MIN_TURN_S / hop_s)))
    names = name_speakers(
        centroids(embeddings, labels), known.embeddings if known else None, known.names if known else None,
        min_similarity=name_similarity,
    )
    turns = window_turns(centers, [names[label] for label in labels])
    # Turn edges that fall in silence are clipped to the speech they hold.
    first_speech, last_speech = min(s for s, _ in spans), max(e for _, e in spans)
    return [replace(t, start=max(t.start, first_speech), end=min(t.end, last_speech)) for t in turns]


def window_turns(centers: np.ndarray, speakers: Sequence[str]) -> list[Turn]:
    """Turns from a speaker per window: a change sits midway between the two windows that
    differ; the first turn starts at 0, the last never ends."""
    turns: list[Turn] = []
    for start, length, _ in label_runs(list(speakers)):
        first, last = start, start + length - 1
        begin = 0.0 if first == 0 else (centers[first - 1] + centers[first]) / 2
        end = float("inf") if last == len(centers) - 1 else (centers[last] + centers[last + 1]) / 2
        turns.append(Turn(float(begin), float(end), speakers[first]))
    return turns


def speaker_at(turns: Sequence[Turn], start: float, end: float) -> str | None:
    """The speaker who overlaps [start, end] most (the nearest turn when none overlaps)."""
    if not turns:
        return None
    overlaps = [max(0.0, min(end, t.end) - max(start, t.start)) for t in turns]
    best = int(np.argmax(overlaps))
    if overlaps[best] > 0:
        return turns[best].speaker
    middle = (start + end) / 2
    return min(turns, key=lambda t: min(abs(middle - t.start), abs(middle - t.end))).speaker


def split_segments(segments: Sequence[Segment], words: Sequence[Word], turns: Sequence[Turn]) -> list[Segment]:
    """Each segment with its speaker; a segment whose words change speaker is cut between
    them (at the words' times, text made of those words)."""
    out: list[Segment] = []
    for segment in segments:
        inside = [w for w in words if segment.start - 0.01 <= (w.start + w.end) / 2 <= segment.end + 0.01]
        if not inside or not segment.text.strip():
            out.append(replace(segment, speaker=speaker_at(turns, segment.start, segment.end)))
            continue
        groups = word_runs(inside, lambda w: speaker_at(turns, w.start, w.end))
        if len(groups) == 1:  # one speaker: the segment stays as Whisper gave it
            out.append(replace(segment, speaker=groups[0][0]))
        else:
            out.extend(_from_words(segment, group, speaker) for speaker, group in groups)
    return out


def _from_words(segment: Segment, words: list[Word], speaker: str | None) -> Segment:
    return Segment(
        words[0].start, max(words[-1].end, words[0].start), "".join(w.word for w in words).strip(), segment.kind, speaker, tuple(words)
    )


def diarize(
    encoder: SpeakerEncoder, audio: np.ndarray, transcription: Transcription, known: KnownSpeakers | None = None
) -> list[Segment]:
    """The transcription's segments with speakers (synchronous: run it in a worker thread)."""
    spans = speech_spans(transcription)
    if not spans:
        return list(transcription.segments)
    cuts = thresholds_for(encoder)  # each encoder's embeddings have their own distances
    turns = speaker_turns(encoder.windows(audio, HOP_S), spans, known, threshold=cuts.file, name_similarity=cuts.name_similarity)
    return split_segments(transcription.segments, transcription.words, turns)


def label_speakers(audio: np.ndarray, transcription: Transcription, known: KnownSpeakers | None = None) -> Transcription:
    """The transcription with speakers on its segments, by the process's shared encoder
    (synchronous, seconds per hour of audio: callers run it in a worker thread)."""
    from engine.speakers.encoder import shared_encoder

    return replace(transcription, segments=diarize(shared_encoder(), audio, transcription, known))
