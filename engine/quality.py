"""Every rule that says a decode looped, in one module, for the engine and the streaming guards.

- `compression_ratio` is UTF-8 length over zlib-compressed length: repetitive text (a
  decoder stuck in a loop) compresses well. Above `LOOP_COMPRESSION_RATIO` (Whisper's own
  `compression_ratio_threshold`, 2.4) the text of one decode of at most 30 s is a loop.
- While decoding: `stuck_in_loop` stops a decode that repeats itself (engine); after it,
  `overruns_audio` sends a short-window decode to the full window (engine).
- On text shown to people: `has_loop` (one word or phrase repeated many times in a row
  anywhere, by character for text without spaces) and `strip_loop` (cut a trailing loop,
  keep one copy) serve the streaming guards (streaming.guards), with a `LoopRule`.
They answer different questions (stop now / decode again / hide or trim), so their
thresholds differ; what they share (the word key, Whisper's ratio) is defined once here.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from dataclasses import dataclass

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


# -- loops in text shown to people (the streaming guards) ---------------------------------


@dataclass(frozen=True)
class LoopRule:
    """How many repeats make a loop in `has_loop` / `strip_loop`."""

    #: Whisper's `compression_ratio_threshold`.
    max_compression_ratio: float = LOOP_COMPRESSION_RATIO
    #: Consecutive copies of one word that count as a loop ("the the the the the").
    min_word_repeats: int = 5
    #: Consecutive copies of a 2..`max_period`-word phrase that count as a loop.
    min_phrase_repeats: int = 4
    max_period: int = 12


DEFAULT_LOOP_RULE = LoopRule()
_TOKEN_RE = re.compile(r"\S+")


def normalize_text(text: str) -> str:
    """Case-folded words without punctuation, symbols or extra spaces (for comparison)."""
    text = unicodedata.normalize("NFKC", text).replace("\u2019", "'")
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch == "'":
            continue  # "don't" and "dont" compare equal
        out.append(" " if cat.startswith(("P", "S", "Z", "C")) else ch)
    return " ".join("".join(out).casefold().split())



def _word_key(word: str) -> str:
    key = normalize_text(word)
    return key if key else word


def _periodic_suffix(keys: list[str], period: int) -> int:
    """Length of the longest suffix of `keys` with the given period."""
    n = len(keys)
    if n < 2 * period:
        return 0
    i = n - 1 - period
    # The last element may be cut short ("hello world hello wor"): a prefix will do.
    if keys[-1] != keys[i] and not (keys[-1] and keys[i].startswith(keys[-1])):
        return 0
    i -= 1
    while i >= 0 and keys[i] == keys[i + period]:
        i -= 1
    return n - 1 - i  # the suffix keys[i+1:] is periodic


def _min_repeats(period: int, rule: LoopRule) -> int:
    return rule.min_word_repeats if period == 1 else rule.min_phrase_repeats


def _find_loop(keys: list[str], rule: LoopRule, trailing: bool) -> tuple[int, int] | None:
    """(start, period) of the loop to cut, or None. With `trailing`, only loops that run
    to the end of `keys`; otherwise any run of repeats anywhere."""
    best: tuple[int, int] | None = None
    max_period = min(rule.max_period, len(keys) // 2)
    for period in range(1, max_period + 1):
        need = _min_repeats(period, rule)
        if trailing:
            length = _periodic_suffix(keys, period)
            if length // period >= need:
                start = len(keys) - length
                if best is None or start < best[0]:
                    best = (start, period)
        else:
            run = 0
            for i in range(period, len(keys)):
                run = run + 1 if keys[i] == keys[i - period] else 0
                if (run + period) // period >= need:
                    return (i - run - period + 1, period)
    return best


_CJK_MIN_RUN = 12  # characters, for loops in text without spaces


def has_loop(text: str, rule: LoopRule = DEFAULT_LOOP_RULE) -> bool:
    """True if the text is a decoder loop: Whisper's compression-ratio test, or one word
    or phrase repeated many times in a row anywhere (which short partials show before
    the ratio can rise). Text without spaces (CJK, "hahahaha") is checked by character."""
    if compression_ratio(text) > rule.max_compression_ratio:
        return True
    keys = [_word_key(t) for t in _TOKEN_RE.findall(text)]
    if _find_loop(keys, rule, trailing=False) is not None:
        return True
    # Scripts written without spaces: look for repeated characters sequences.
    for token in _TOKEN_RE.findall(text):
        if len(token) >= _CJK_MIN_RUN and _find_loop(
            list(token), _char_rule(rule), trailing=False
        ):
            return True
    return False


def _char_rule(rule: LoopRule) -> LoopRule:
    """The rule for loops inside one token, counted in characters."""
    return LoopRule(rule.max_compression_ratio, max(rule.min_word_repeats, 8), rule.min_phrase_repeats, 30)


def strip_loop(text: str, rule: LoopRule = DEFAULT_LOOP_RULE) -> str:
    """Cut a loop at the end of the text, keeping one copy of the repeated part.

    "I said no. And then and then and then and then and then" -> "I said no. And then";
    a loop of bare punctuation ("It was fine. . . . . .") is removed entirely.
    Text before the loop keeps its original spacing and punctuation; text with no
    trailing loop is returned unchanged.
    """
    spans = [m.span() for m in _TOKEN_RE.finditer(text)]
    keys = [_word_key(text[a:b]) for a, b in spans]
    loop = _find_loop(keys, rule, trailing=True)
    if loop is not None:
        start, period = loop
        unit = text[spans[start][0] : spans[start + period - 1][1]]
        if not normalize_text(unit):
            # A loop of punctuation (". . . ."): no copy is worth keeping.
            return text[: spans[start - 1][1]] if start else ""
        return text[: spans[start + period - 1][1]]
    # One long token that loops (no spaces: CJK, or "hahahahahaha").
    if spans:
        a, b = spans[-1]
        token = text[a:b]
        if len(token) >= _CJK_MIN_RUN:
            loop = _find_loop(list(token), _char_rule(rule), trailing=True)
            if loop is not None:
                start, period = loop
                return text[: a + start + period]
    return text
