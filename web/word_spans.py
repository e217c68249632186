"""A final's text as HTML with one span per word: its time on hover, a low-confidence
word underlined. Used by the live transcript and the History viewer alike.

Every piece of text is escaped (a transcript is user content); the `title` holds only
numbers the server formatted.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from typing import Any

from engine.speakers.parts import speaker_parts
from engine.word_times import LOW_CONFIDENCE

#: CSS of the spans (added to the page's CSS): a subtle dotted underline for doubt.
WORD_CSS = """
.rtw-word.rtw-low { text-decoration: underline dotted; text-decoration-color: var(--body-text-color-subdued); text-underline-offset: 0.2em; }
"""


def word_title(word: Any) -> str:
    """'12.34–12.80 s · p 0.93': the word's time in the transcript and its probability
    (left out where unknown: NaN, from a remote endpoint that gives none)."""
    times = f"{word.start:.2f}–{word.end:.2f} s"
    return times if math.isnan(word.probability) else f"{times} · p {word.probability:.2f}"


def words_html(text: str, words: Sequence[Any]) -> str:
    """`text` escaped, with each of `words` (objects with word/start/end/probability that
    spell it) in a span titled with its time; words under `LOW_CONFIDENCE` carry the
    class `rtw-low`. Without words, just the escaped text."""
    if not words:
        return html.escape(text.strip())
    spans = []
    for w in words:
        low = " rtw-low" if w.probability < LOW_CONFIDENCE else ""
        # The word's own leading space stays outside its span (none between CJK words).
        space = " " if spans and w.word[:1].isspace() else ""
        spans.append(f'{space}<span class="rtw-word{low}" title="{html.escape(word_title(w))}">{html.escape(w.word.strip())}</span>')
    return "".join(spans)


def speaker_html(speaker: str | None) -> str:
    """A speaker's label ("Speaker 1:", or the name a person gave it) before its words, or
    "" without one."""
    return f'<span class="rtw-speaker">{html.escape(speaker)}:</span>' if speaker else ""


def piece_html(
    start: float, end: float, text: str, speaker: str | None, words: Sequence[Any], shown: Callable[[str | None], str | None]
) -> str:
    """A final or segment as HTML: each speaker's part (one unless its words change voice)
    with the label `shown` gives its speaker, then its words."""
    return " ".join(f"{speaker_html(shown(p.speaker))}{words_html(p.text, p.words)}" for p in speaker_parts(start, end, text, speaker, words))
