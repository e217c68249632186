"""Did the decoder give back every stretch of speech it was handed? Pure functions.

Whisper can end a window early (end-of-text while speech remains) and say nothing about
it: the long-form path would then join a piece's first sentence to the next piece and a
stretch of speech is silently lost. Two signals catch it, both against what the VAD heard
(`engine.vad.speech_regions`, seconds):

* too few words for the speech time: real speech carries two to three words per second;
  a piece whose text holds far fewer than one word per second of speech lost some;
* speech no segment covers (where the decoder did give segment times): a stretch after
  the last timestamp, or between two segments.

`engine/longform.py` decodes such a piece again in smaller parts and, where a stretch
still comes back empty, writes a gap segment (`gap_segment`) instead of a silent hole.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Protocol

from engine.base import Segment

Span = tuple[float, float]
_BRACKETED = re.compile(r"\[[^\]]*\]")

#: Fewer words than this per second of VAD speech means words were lost (tiny.en on
#: read speech gives 2.3-3 words per second of speech; slow dictation about 1.5).
MIN_WORDS_PER_SPEECH_S = 1.0
#: Word-rate judgements need this much speech to mean anything.
MIN_JUDGED_SPEECH_S = 3.0
#: Uncovered speech shorter than this is timestamp jitter, not a hole.
MIN_HOLE_S = 1.0
#: Segment times are Whisper's guesses: a segment covers this much around itself.
COLLAR_S = 0.5


class _Timed(Protocol):
    start: float
    end: float
    text: str


def word_count(text: str) -> int:
    """Words of decoded text, bracketed notes (gap markers, "[Music]") not counted."""
    return sum(1 for w in _BRACKETED.sub(" ", text or "").split() if any(c.isalnum() for c in w))


def _clip(spans: Iterable[Span], lo: float, hi: float) -> list[Span]:
    return [(max(a, lo), min(b, hi)) for a, b in spans if min(b, hi) > max(a, lo)]


def merge(spans: Iterable[Span]) -> list[Span]:
    """Sorted, overlapping or touching spans joined."""
    out: list[Span] = []
    for a, b in sorted(spans):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def total(spans: Iterable[Span]) -> float:
    return sum(b - a for a, b in spans)


def speech_seconds(regions: Sequence[Span], lo: float = -math.inf, hi: float = math.inf) -> float:
    return total(_clip(regions, lo, hi))


def subtract(spans: Sequence[Span], remove: Sequence[Span]) -> list[Span]:
    """The parts of `spans` outside every span of `remove`."""
    out: list[Span] = []
    cuts = merge(remove)
    for a, b in spans:
        pos = a
        for c, d in cuts:
            if d <= pos or c >= b:
                continue
            if c > pos:
                out.append((pos, c))
            pos = max(pos, d)
        if pos < b:
            out.append((pos, b))
    return out


def _segment_spans(segments: Iterable[_Timed], collar: float) -> list[Span]:
    return merge(
        (s.start - collar, s.end + collar)
        for s in segments
        if word_count(s.text) > 0 and getattr(s, "kind", "speech") != "gap"
    )


def coverage(regions: Sequence[Span], segments: Iterable[_Timed], collar: float = 0.0) -> float:
    """VAD speech seconds inside some segment (widened by `collar`) / all VAD speech seconds."""
    speech = total(regions)
    if speech <= 0:
        return 1.0
    left = total(subtract(list(regions), _segment_spans(segments, collar)))
    return max(0.0, 1.0 - left / speech)


def uncovered(
    regions: Sequence[Span], segments: Iterable[_Timed], *, collar: float = COLLAR_S, min_s: float = MIN_HOLE_S
) -> list[Span]:
    """Stretches of speech no segment covers, each holding at least `min_s` of speech.

    Pieces of uncovered speech closer than 1 s to each other count as one stretch (a
    sentence with short pauses), spanning from its first to its last speech.
    """
    left = subtract(list(regions), _segment_spans(segments, collar))
    groups: list[list[Span]] = []
    for span in left:
        if groups and span[0] - groups[-1][-1][1] < 1.0:
            groups[-1].append(span)
        else:
            groups.append([span])
    return [(g[0][0], g[-1][1]) for g in groups if total(g) >= min_s]


def too_few_words(text: str, speech_s: float) -> bool:
    """True when `speech_s` seconds of speech came back as far fewer words than they hold."""
    return speech_s >= MIN_JUDGED_SPEECH_S and word_count(text) < MIN_WORDS_PER_SPEECH_S * speech_s - 1


def has_times(segments: Sequence[_Timed], start: float, end: float) -> bool:
    """Whether segment times say anything: one segment spanning the whole window does not."""
    real = [s for s in segments if word_count(s.text) > 0]
    if not real:
        return False
    return len(real) > 1 or real[0].start > start + 0.05 or real[0].end < end - 0.05


def lost_speech(
    text: str, segments: Sequence[_Timed], regions: Sequence[Span], start: float, end: float
) -> list[Span]:
    """Speech of the window [start, end] that the decode (text, segments) did not give back.

    Empty when the decode looks complete. With meaningful segment times: the uncovered
    stretches. Without (one segment for the window): the whole window's speech when the
    word count is far below what that speech holds.
    """
    regions = _clip(regions, start, end)
    speech = total(regions)
    if speech < MIN_HOLE_S:
        return []
    holes = uncovered(regions, segments) if has_times(segments, start, end) else []
    if holes:
        return holes
    if too_few_words(text, speech):
        return [(regions[0][0], regions[-1][1])]
    return []


#: A segment's end time may run this far past the start of the next speech (Whisper's
#: timestamps are guesses, often a little late) and the pause between them still count.
END_SLACK_S = 0.3
#: A decode again from a point this close to the window's start keeps nothing: halve instead.
MIN_KEPT_S = 1.0


def redo_from(segments: Sequence[_Timed], regions: Sequence[Span], lost: Sequence[Span], start: float) -> float | None:
    """Where to decode a window again when its decode stopped early, or None.

    Whisper ends a window at a change of speaker or topic and says nothing of the rest
    (BENCHMARKS.md, issue 21's profile: 8 of 12 pieces of the mixed file). When every lost
    stretch lies after the last segment and a pause (the VAD's) separates it from that
    segment's speech, the text before the pause is complete: only the audio from the
    middle of that pause on needs another decode, not both halves of the window. None
    where speech is lost between segments, or runs on from the last segment without a
    pause to cut in, or nothing would be kept.
    """
    real = [s for s in segments if word_count(s.text) > 0 and getattr(s, "kind", "speech") != "gap"]
    if not real or not lost:
        return None
    last_end = max(s.end for s in real)
    first_lost = min(a for a, _ in lost)
    if first_lost < last_end:
        return None
    spans = merge(r for r in regions if r[1] > start)
    after = [i for i, (_, b) in enumerate(spans) if b > first_lost]
    if not after:
        return None
    onset = spans[after[0]][0]
    if onset + END_SLACK_S < last_end:
        return None  # the lost speech runs on from the last segment's: no pause to cut in
    pause_start = max(start, spans[after[0] - 1][1]) if after[0] > 0 else start
    cut = (pause_start + onset) / 2
    return cut if cut - start >= MIN_KEPT_S else None


def gap_segment(span: Span) -> Segment:
    """A marked hole: speech the decoder did not give back even after the retries."""
    a, b = span
    return Segment(a, b, f"[inaudible {a:.1f}\u2013{b:.1f} s]", kind="gap")


def speech_after_words(regions: Sequence[Span], start: float, words: int, words_per_s: float = 2.0) -> float:
    """Where the speech that `words` words can account for ends (walking the regions from `start`)."""
    budget = words / words_per_s
    for a, b in _clip(regions, start, math.inf):
        if b - a >= budget:
            return a + budget
        budget -= b - a
    return regions[-1][1] if regions else start
