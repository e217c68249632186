"""Word times from the decoder's cross-attention: the pure arithmetic, no model.

The recipe is the one openai-whisper and faster-whisper use: the decoded tokens are
fed back through the decoder (teacher forcing, engine/aligner.py), the cross-attention
of the alignment heads says which 20 ms audio frame each token looked at; normalised
per head, median-filtered, averaged over heads, that matrix is a cost map, and the
cheapest monotonic path through it (dynamic time warping) assigns each token a frame.
Tokens are then grouped into words. Kept apart from the model so it can be tested on
synthetic attention in milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from engine.base import SAMPLE_RATE, Transcription, Word

#: One encoder output frame (audio token) of Whisper: 30 s are 1500 of them.
FRAME_S = 0.02
#: Median filter width over frames (openai-whisper's `medfilt_width`): smooths a head's
#: jitter without moving an edge by more than a few frames.
MEDIAN_WIDTH = 7
#: Languages written without spaces between words: each token (or complete character) is a word.
UNSPACED_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "km", "my", "yue", "bo"})
#: Punctuation glued to the following word (an opening quote) or to the preceding one.
PREPENDED = frozenset("\"'“¿([{-«")
APPENDED = frozenset("\"'.。,，!！?？:：”)]}、»;…")
#: No word of speech lasts longer than this many times the median word (openai-whisper's
#: heuristic): the first and last word otherwise swallow the silence around the speech.
MAX_WORD_FACTOR = 2.0
#: ... and never more than this, whatever the median (seconds).
MAX_WORD_S = 1.4
#: Words under this probability are "low confidence" (the page underlines them):
#: calibrated by `python -m bench.word_times` on 175 clips, words below it were wrong
#: 47.6 % of the time, words above it 3.8 % (BENCHMARKS.md, word times).
LOW_CONFIDENCE = 0.5


def median_filter(x: np.ndarray, width: int = MEDIAN_WIDTH) -> np.ndarray:
    """Median over the last axis in windows of `width` (odd), edges reflected as numpy's
    `pad(mode="reflect")` does (scipy's "mirror"). scipy's C filter: numpy's median over a
    sliding window took 0.15 s for one 30 s window's heads, most of the DTW step."""
    from scipy.ndimage import median_filter as filter_

    if width <= 1 or x.shape[-1] <= width // 2:
        return x
    return filter_(x, size=(1,) * (x.ndim - 1) + (width,), mode="mirror")


def attention_cost(attention: np.ndarray, num_frames: int, width: int = MEDIAN_WIDTH) -> np.ndarray:
    """(heads, tokens, frames) cross-attention -> (tokens, frames) matrix where high means aligned.

    The attention is cut to the frames that hold audio (the rest of the 30 s window is
    padding) and renormalised, then standardised per head along the tokens so that every
    head counts the same, median-filtered along time and averaged over the heads.
    """
    weights = np.asarray(attention[..., :num_frames], dtype=np.float64)
    weights = weights / np.maximum(weights.sum(axis=-1, keepdims=True), 1e-12)
    mean = weights.mean(axis=-2, keepdims=True)
    std = weights.std(axis=-2, keepdims=True)
    weights = (weights - mean) / np.maximum(std, 1e-12)
    return median_filter(weights, width).mean(axis=0)


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cheapest path from (0, 0) to (N-1, M-1) moving right, down or diagonally.

    Returns (row indices, column indices) along the path. Each row of the accumulated
    cost is computed with numpy at once: entering row i from above (straight or
    diagonally) and then running right along it is a prefix-minimum over the row.
    """
    n, m = cost.shape
    acc = np.empty((n, m), dtype=np.float64)
    acc[0] = np.cumsum(cost[0])
    for i in range(1, n):
        above = acc[i - 1]
        entry = above.copy()
        entry[1:] = np.minimum(above[1:], above[:-1])
        row_sum = np.cumsum(cost[i])
        # acc[i, j] = min over k <= j of entry[k] + cost[i, k..j]
        acc[i] = row_sum + np.minimum.accumulate(entry - (row_sum - cost[i]))
    rows, cols = [n - 1], [m - 1]
    i, j = n - 1, m - 1
    while i > 0 or j > 0:
        if i == 0:
            j -= 1
        elif j == 0:
            i -= 1
        else:
            step = int(np.argmin((acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1])))
            i, j = (i - 1, j - 1) if step == 0 else (i - 1, j) if step == 1 else (i, j - 1)
        rows.append(i)
        cols.append(j)
    return np.array(rows[::-1]), np.array(cols[::-1])


def token_start_frames(cost: np.ndarray) -> np.ndarray:
    """For each row of `cost` (tokens, then end-of-text), the frame where the path enters it."""
    rows, cols = dtw(-cost)
    starts = np.zeros(cost.shape[0], dtype=np.int64)
    entered = np.concatenate([[True], np.diff(rows) > 0])
    starts[rows[entered]] = cols[entered]
    return starts


#: Token ids -> text (the tokenizer's decode).
Decode = Callable[[list[int]], str]


def group_words(tokens: Sequence[int], decode: Decode, language: str | None = None) -> list[list[int]]:
    """Tokens -> words, each the list of its token indices.

    A word starts at a token that begins with a space (Whisper's BPE keeps the space on
    the word's first token); in languages written without spaces every token is a word.
    A token that is not valid text alone (part of a UTF-8 character: U+FFFD when decoded
    alone) stays with the next ones until they decode. Punctuation is glued to its word
    (opening marks to the next one).
    """
    unspaced = (language or "").lower() in UNSPACED_LANGUAGES
    words: list[list[int]] = []
    pieces: dict[int, str] = {}  # the text of each word's tokens, by its first index
    pending: list[int] = []  # tokens of an incomplete character
    for i in range(len(tokens)):
        pending.append(i)
        text = decode([tokens[k] for k in pending])
        if "\ufffd" in text and i < len(tokens) - 1:
            continue
        pieces[pending[0]] = text
        starts_word = not words or unspaced or text[:1].isspace()
        if starts_word and not (words and _is_punctuation(text, APPENDED)):
            words.append(pending)
        else:
            words[-1].extend(pending)
        pending = []
    # Opening punctuation belongs to the word after it.
    merged: list[list[int]] = []
    carry: list[int] = []
    for word in words:
        text = "".join(pieces.get(k, "") for k in word)
        if _is_punctuation(text, PREPENDED) and word is not words[-1]:
            carry += word
            continue
        merged.append(carry + word)
        carry = []
    if carry:
        merged.append(carry)
    return merged


def _is_punctuation(text: str, marks: frozenset[str]) -> bool:
    stripped = text.strip()
    return bool(stripped) and all(c in marks for c in stripped)


def words_from_alignment(
    tokens: Sequence[int],
    decode: Decode,
    token_logprobs: Sequence[float],
    start_frames: np.ndarray,
    *,
    offset: float,
    duration: float,
    language: str | None = None,
) -> list[Word]:
    """Words with times (seconds of the whole recording) and probabilities.

    `start_frames` has one entry per token plus one for end-of-text: a word runs from its
    first token's frame to the frame where the next word (or end-of-text) begins. Times
    are clamped inside [offset, offset + duration]; a word may not be longer than
    `MAX_WORD_FACTOR` times the median word (the edges would otherwise take in silence).
    The probability is the mean of its tokens' probabilities.
    """
    groups = group_words(tokens, decode, language)
    if not groups:
        return []
    bounds = [g[0] for g in groups] + [len(tokens)]
    times = np.clip(np.asarray(start_frames, dtype=np.float64) * FRAME_S, 0.0, duration)
    starts = [float(times[b]) for b in bounds[:-1]]
    ends = [float(times[b]) for b in bounds[1:]]
    lengths = [e - s for s, e in zip(starts, ends) if e > s]
    if lengths:
        limit = min(MAX_WORD_S, MAX_WORD_FACTOR * float(np.median(lengths)))
        limit = max(limit, 0.2)
        if ends[0] - starts[0] > limit:
            starts[0] = ends[0] - limit
        if ends[-1] - starts[-1] > limit:
            ends[-1] = starts[-1] + limit
    words = []
    for group, start, end in zip(groups, starts, ends):
        text = decode([tokens[k] for k in group])
        probability = float(np.mean([np.exp(token_logprobs[k]) for k in group])) if token_logprobs else float("nan")
        words.append(Word(text, round(offset + start, 3), round(offset + max(start, end), 3), round(probability, 4)))
    return words


def snap_to_speech(words: list[Word], regions: Sequence[tuple[float, float]]) -> list[Word]:
    """Word edges that fall in silence moved to the nearest edge of speech inside the word.

    The attention path is weakest at the edges of speech: the first word tends to start
    in the silence before it and the last to run on into the silence after it. Where a
    word's start lies outside every speech region (the VAD's), it moves to the start of
    the next region if that comes before the word's end; its end likewise to the end of
    the last region before it. A word with no speech at all keeps its times.

    The window's first and last word also take the edges of the speech they sit in: the
    path tends to clip the first word's start and the last word's end inside the speech
    too, and no word of the window comes before the first or after the last.
    """
    def inside(t: float) -> bool:
        return any(a <= t <= b for a, b in regions)

    snapped = []
    for i, w in enumerate(words):
        start, end = w.start, w.end
        if i == 0:
            start = next((a for a, b in regions if a <= start <= b), start)
        if i == len(words) - 1:
            end = next((b for a, b in regions if a <= end <= b), end)
        if not inside(start):
            later = [a for a, _ in regions if a > start]
            if later and min(later) < end:
                start = min(later)
        if not inside(end):
            earlier = [b for _, b in regions if b < end]
            if earlier and max(earlier) > start:
                end = max(earlier)
        snapped.append(Word(w.word, round(start, 3), round(end, 3), w.probability))
    return snapped


#: A word before a pause ends where its sound has fallen this far below its loudest
#: 10 ms frame (the VAD's end lags the sound: Silero's 32 ms windows and its end
#: hysteresis put it a median 0.08 s late, BENCHMARKS.md, word times).
SOUND_FALL_DB = 35.0
#: ... moved back by this much at most (the VAD's lag, not a word's tail).
MAX_SOUND_TRIM_S = 0.2
_SOUND_FRAME = SAMPLE_RATE // 100  # 10 ms


def end_at_sound(words: list[Word], audio: np.ndarray, offset: float, regions: Sequence[tuple[float, float]]) -> list[Word]:
    """Words that end where a speech region ends (before a pause, after `snap_to_speech`)
    end instead where their sound does: the end of their last 10 ms frame within
    `SOUND_FALL_DB` of their loudest, at most `MAX_SOUND_TRIM_S` earlier. In noise
    louder than that fall nothing moves (every frame stays "within"); a word is never
    made shorter than a frame. `audio` starts at `offset` seconds (the window's)."""
    ends = {round(b, 3) for _, b in regions}
    out = []
    for w in words:
        if round(w.end, 3) not in ends:
            out.append(w)
            continue
        a = max(0, int(round((w.start - offset) * SAMPLE_RATE)))
        b = min(len(audio), int(round((w.end - offset) * SAMPLE_RATE)))
        n = (b - a) // _SOUND_FRAME
        if n < 3:
            out.append(w)
            continue
        frames = np.asarray(audio[a : a + n * _SOUND_FRAME], dtype=np.float64).reshape(n, _SOUND_FRAME)
        level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
        last = int(np.nonzero(level >= level.max() - SOUND_FALL_DB)[0][-1])
        end = offset + (a + (last + 1) * _SOUND_FRAME) / SAMPLE_RATE
        end = max(end, w.end - MAX_SOUND_TRIM_S, w.start + _SOUND_FRAME / SAMPLE_RATE)
        out.append(replace(w, end=round(min(end, w.end), 3)))
    return out


def with_segment_words(transcription: Transcription) -> Transcription:
    """The transcription with each segment holding its words (those whose middle falls in
    it, each word in one segment), for whoever keeps segments rather than the flat list
    (the History's store). Segments that already hold words keep them."""
    words = list(transcription.words or ())
    if not words:
        return transcription
    segments, i = [], 0
    for segment in transcription.segments:
        if segment.words:
            segments.append(segment)
            continue
        mine = []
        while i < len(words) and (words[i].start + words[i].end) / 2 <= segment.end + 0.01:
            if (words[i].start + words[i].end) / 2 >= segment.start - 0.01:
                mine.append(words[i])
            i += 1
        segments.append(replace(segment, words=tuple(mine)))
    return replace(transcription, segments=segments)
