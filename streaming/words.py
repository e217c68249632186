"""A final's words and token log-probabilities, fitted to the text the final shows.

The engine returns word times for the audio it decoded (utterance time) and for the
text it decoded; the final's text may be shorter (the guards strip a repetition loop,
`streaming.guards.strip_repetition`) or different (committed words kept when the final
does not override them). A word time is only worth showing for a word the final
actually shows, so the words are kept only as far as they spell the final's text, and
dropped altogether when they do not spell it (never a time for a word nobody sees).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TypeVar

from engine.base import TokenLogprob, Word

T = TypeVar("T")


def _squeezed(text: str) -> str:
    return " ".join(text.split())


def spelling_prefix(items: Sequence[T], spell: Callable[[Sequence[T]], str], text: str) -> tuple[T, ...]:
    """The shortest leading run of `items` that `spell` turns into `text` (whitespace
    aside); () when no run does."""
    target = _squeezed(text)
    if not target:
        return ()
    for k in range(1, len(items) + 1):
        squeezed = _squeezed(spell(items[:k]))
        if squeezed == target:
            return tuple(items[:k])
        if not target.startswith(squeezed.rstrip("\ufffd")):
            return ()
    return ()


def _word_text(words: Sequence[Word]) -> str:
    return "".join(w.word for w in words)


def _token_text(tokens: Sequence[TokenLogprob]) -> str:
    # Bytes, not each token's text: one character may span two tokens.
    return b"".join(bytes(t.bytes) for t in tokens).decode("utf-8", "replace")


def shifted(words: Sequence[Word], shift_s: float) -> tuple[Word, ...]:
    """`words` moved by `shift_s` seconds (to another timeline: the session's, the tab's),
    never before 0."""
    return tuple(
        replace(w, start=round(max(0.0, w.start + shift_s), 3), end=round(max(0.0, w.end + shift_s), 3)) for w in words
    )


def final_words(words: Sequence[Word], text: str, offset_s: float) -> tuple[Word, ...]:
    """The words of a final showing `text`, moved from utterance time to session time
    (the utterance's audio starts at `offset_s`)."""
    return shifted(spelling_prefix(words, _word_text, text), offset_s)


def final_logprobs(logprobs: Sequence[TokenLogprob], text: str) -> tuple[TokenLogprob, ...]:
    """The token log-probabilities of a final showing `text` (same rule as its words)."""
    return spelling_prefix(logprobs, _token_text, text)
