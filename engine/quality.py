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


#: Whisper's `logprob_threshold`: a decode whose mean token log-probability is below it
#: is doubtful (Whisper itself then decodes again at a higher temperature).
LOW_CONFIDENCE_LOGPROB = -1.0


def is_low_confidence(avg_logprob: float | None) -> bool:
    """True when the decoder was unsure of its own text (None: not known, not doubtful)."""
    return avg_logprob is not None and avg_logprob < LOW_CONFIDENCE_LOGPROB


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


#: Copies of a phrase back to back at the end that prove a decode is stuck, so that it
#: is stopped there (`stuck_in_loop`) instead of running to its token budget: four, or
#: three once the text holds more words than its audio can (people do say a phrase
#: twice or three times: "thank you very much, thank you very much").
STUCK_COPIES = 4
STUCK_COPIES_TOO_FAST = 3
#: The longest phrase looked for while decoding (the check runs every few tokens).
MAX_LOOP_PHRASE_WORDS = 30


def words_of(text: str) -> list[str]:
    """Lower-case words without edge punctuation: what the repetition rules compare."""
    words = [w.strip(".,!?;:\"'").lower() for w in text.split()]
    return [w for w in words if w]


def repeated_tail(words: list[str], max_words: int | None = None, min_words: int = MIN_REPEATED_WORDS) -> int:
    """Back-to-back copies of the phrase (at least `min_words` words, at most
    `max_words`) that ends `words`: 1 when the end does not repeat. The last copy may
    start anywhere in the phrase, so a loop caught mid-sentence counts too. By default
    a phrase that is itself one or two words said over ("no no no") does not count:
    people do."""
    n = len(words)
    longest = n // 2 if max_words is None else min(n // 2, max_words)
    best = 1
    for k in range(max(1, min_words), longest + 1):
        tail = words[n - k :]
        if _period(tail) < min_words:
            continue  # "no no no", "I'm sorry I'm sorry": a word or two said again
        copies = 1
        while n - (copies + 1) * k >= 0 and words[n - (copies + 1) * k : n - copies * k] == tail:
            copies += 1
        best = max(best, copies)
    return best


def _period(words: list[str]) -> int:
    """The shortest p with words[i] == words[i - p] throughout (len(words) if none)."""
    for p in range(1, len(words)):
        if all(words[i] == words[i - p] for i in range(p, len(words))):
            return p
    return len(words)


def stuck_in_loop(text: str, duration_s: float) -> bool:
    """True when text decoded so far from `duration_s` of audio ends in a loop the
    decoder will not come out of: every further token is wasted engine time.

    A word or two said over counts only once the text holds more words than the audio
    can (`_more_than_audio_holds`): a short window on the first half-second of speech
    makes tiny.en say "printing printing printing ..." to its token budget, where
    "no, no, no, no" in a second of audio is speech."""
    words = words_of(text)
    copies = repeated_tail(words, MAX_LOOP_PHRASE_WORDS)
    too_fast = len(words) > MAX_WORDS_PER_SECOND * duration_s
    if copies >= STUCK_COPIES or (copies >= STUCK_COPIES_TOO_FAST and too_fast):
        return True
    short_copies = repeated_tail(words, MIN_REPEATED_WORDS - 1, min_words=1)
    return short_copies >= STUCK_COPIES and _more_than_audio_holds(words, duration_s)


def _more_than_audio_holds(words: list[str], duration_s: float) -> bool:
    """More words than anyone says in `duration_s`, with a few to spare."""
    return len(words) > MAX_WORDS_PER_SECOND * duration_s + 3


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
    words = words_of(text)
    if _more_than_audio_holds(words, duration_s) or len(text) > MAX_CHARS_PER_SECOND * duration_s + 20:
        return True
    return repeated_tail(words) >= 2
