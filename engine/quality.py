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
