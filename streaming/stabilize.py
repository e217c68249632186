"""LocalAgreement-n stabilisation of streaming partial transcripts.

Why: every partial decode of a growing utterance re-transcribes it from the start, and
its last words change from one decode to the next (a word cut mid-syllable, a guess
revised with more context). Showing raw partials flickers. LocalAgreement (Macháček et
al., whisper_streaming) commits the longest word prefix that the last n hypotheses
agree on: a word confirmed by two consecutive decodes rarely changes again. Committed
words are never taken back within an utterance, which is what lets the page render them
as settled text and the rest as grey, tentative text.

Words are compared case- and punctuation-insensitively ("Hello," equals "hello") but the
original spelling is kept (that of the hypothesis that confirmed them).
"""

from __future__ import annotations

import difflib
import unicodedata
from collections import deque
from dataclasses import dataclass

__all__ = ["LocalAgreement", "LocalAgreementOptions", "normalize_word"]


def normalize_word(word: str) -> str:
    """Comparison key of a word: case-folded, punctuation and symbols removed.

    A word that is nothing but punctuation ("...", "-") keeps its raw form, so that it
    only matches itself rather than every other punctuation mark.
    """
    word = unicodedata.normalize("NFKC", word).replace("\u2019", "'")
    key = "".join(
        ch for ch in word if not unicodedata.category(ch).startswith(("P", "S"))
    )
    key = key.casefold()
    return key if key else word


@dataclass(frozen=True)
class LocalAgreementOptions:
    """`n`: how many consecutive hypotheses must agree on a word before it is committed.

    `keep_committed_on_finalize`: when the final decode disagrees with words already
    committed, keep the committed words (the promise to the page) and append the final
    decode's words after them; when False, the final decode replaces everything.
    """

    n: int = 2
    keep_committed_on_finalize: bool = True

    def __post_init__(self) -> None:
        if self.n < 2:
            raise ValueError("LocalAgreement needs n >= 2 hypotheses to agree")


class LocalAgreement:
    """Per-utterance stabiliser: `update(hypothesis)` on each partial, `finalize(final)` at the end."""

    def __init__(self, options: LocalAgreementOptions | None = None) -> None:
        self.options = options or LocalAgreementOptions()
        self.reset()

    def reset(self) -> None:
        """Start a new utterance."""
        self._committed: list[str] = []
        self._tentative: list[str] = []
        self._history: deque[list[str]] = deque(maxlen=self.options.n - 1)

    @property
    def committed(self) -> str:
        """Text confirmed so far in this utterance (only ever grows)."""
        return " ".join(self._committed)

    @property
    def tentative(self) -> str:
        """Words of the latest hypothesis after the committed part (may still change)."""
        return " ".join(self._tentative)

    def update(self, hypothesis: str) -> tuple[str, str]:
        """Feed the newest partial transcript; returns (committed_text, tentative_text)."""
        words = hypothesis.split()
        tail = self._tail(words)
        if len(self._history) == self.options.n - 1:
            tails = [self._tail(h) for h in self._history] + [tail]
            agreed = _common_prefix_len(tails)
            if agreed:
                self._committed.extend(tail[:agreed])
                tail = tail[agreed:]
        self._history.append(words)
        self._tentative = tail
        return self.committed, self.tentative

    def finalize(self, final_text: str | None = None) -> str:
        """Close the utterance and return its final text; the stabiliser is then reset.

        With `final_text` None (no final decode, or it was dropped by a guard), the
        committed and tentative words of the last partial are the final text. Otherwise
        the final decode is authoritative for everything after the committed words.
        """
        if final_text is None:
            words = self._committed + self._tentative
        elif self.options.keep_committed_on_finalize:
            words = self._committed + self._tail(final_text.split())
        else:
            words = final_text.split()
        self.reset()
        return " ".join(words)

    def _tail(self, words: list[str]) -> list[str]:
        """The words of `words` after the part that corresponds to the committed words.

        Usually the hypothesis starts with the committed words and the tail is simply
        the rest. When a later decode rewrites part of the committed text (it may: the
        committed words are fixed for the page, not for the model), the committed words
        are aligned to the hypothesis so that the tail neither repeats nor skips words.
        """
        c = len(self._committed)
        if not c:
            return list(words)
        keys = [normalize_word(w) for w in words]
        committed_keys = [normalize_word(w) for w in self._committed]
        if keys[:c] == committed_keys:
            return list(words[c:])
        matcher = difflib.SequenceMatcher(a=committed_keys, b=keys, autojunk=False)
        blocks = [b for b in matcher.get_matching_blocks() if b.size]
        if not blocks:
            # Nothing in common: assume the hypothesis covers the committed words one
            # for one and the rest is new.
            return list(words[c:])
        last = blocks[-1]
        # Committed words after the last match that the hypothesis did not repeat.
        unmatched_committed = c - (last.a + last.size)
        return list(words[last.b + last.size + unmatched_committed :])


def _common_prefix_len(seqs: list[list[str]]) -> int:
    n = 0
    for column in zip(*seqs):
        first = normalize_word(column[0])
        if any(normalize_word(w) != first for w in column[1:]):
            break
        n += 1
    return n
