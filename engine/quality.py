"""Whisper's loop detector, in one place for the engine's retry and the streaming guards.

`compression_ratio` is UTF-8 length over zlib-compressed length: repetitive text (a
decoder stuck in a loop) compresses well. Above `LOOP_COMPRESSION_RATIO` (Whisper's own
`compression_ratio_threshold`, 2.4) the text of one decode of at most 30 s is a loop.
"""

from __future__ import annotations

import zlib

LOOP_COMPRESSION_RATIO = 2.4


def compression_ratio(text: str) -> float:
    """Whisper's measure: UTF-8 length over zlib-compressed length (0.0 for empty text)."""
    data = text.encode("utf-8")
    if not data:
        return 0.0
    return len(data) / len(zlib.compress(data))


def is_loop(ratio: float | None, threshold: float = LOOP_COMPRESSION_RATIO) -> bool:
    """True when a decode's compression ratio says it looped (None: not known, not a loop)."""
    return (ratio or 0.0) > threshold


#: Faster than anyone speaks (fast read speech is ~4 words/s): more words than this per
#: second of audio, plus a few, means the decoder went on past what it heard.
MAX_WORDS_PER_SECOND = 5.0
#: The same for characters (fast read speech is ~15 characters/s), for loops inside a word.
MAX_CHARS_PER_SECOND = 25.0
#: The shortest phrase whose back-to-back repetition at the end counts as a loop.
MIN_REPEATED_WORDS = 3


def overruns_audio(text: str, duration_s: float) -> bool:
    """True when a decode of `duration_s` of audio says more than the audio can hold.

    A short encoder window (engine.whisper_buckets) gives tiny models less silence after
    the speech than the 30 s they were trained on, and sometimes they start over ("A thin
    stripe runs down the middle. A thin stripe runs down the middle. ..."). That shows as
    a loop (compression ratio), as far too many words for the audio's length, or as a
    phrase of several words repeated back to back at the end.
    """
    if is_loop(compression_ratio(text)):
        return True
    words = [w.strip(".,!?;:\"'").lower() for w in text.split()]
    words = [w for w in words if w]
    if len(words) > MAX_WORDS_PER_SECOND * duration_s + 3 or len(text) > MAX_CHARS_PER_SECOND * duration_s + 20:
        return True
    n = len(words)
    for k in range(MIN_REPEATED_WORDS, n // 2 + 1):
        if words[n - 2 * k : n - k] == words[n - k :]:
            return True
    return False
