"""Word times on synthetic attention: DTW, the attention cost, word grouping, the
times and probabilities of words, the snap to speech edges, and the word exports.
The real model behind them is tests/integration/test_word_times_engine.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.base import Segment, Transcription, Word
from engine.formats import to_json, to_srt, to_vtt, word_cues, word_json
from engine.word_times import (
    MAX_SOUND_TRIM_S,
    end_at_sound,
    FRAME_S,
    attention_cost,
    dtw,
    group_words,
    median_filter,
    snap_to_speech,
    token_start_frames,
    words_from_alignment,
)


def _vocabulary(pieces: list[bytes]) -> tuple[list[int], object]:
    """Token ids 0..n-1 for byte strings, and a decode like a byte-level BPE tokenizer's."""
    return list(range(len(pieces))), lambda ids: b"".join(pieces[i] for i in ids).decode("utf-8", "replace")


def _dtw_reference(cost: np.ndarray) -> float:
    """Plain O(N*M) dynamic programming: the cheapest path's total cost."""
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), math.inf)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            acc[i, j] = cost[i - 1, j - 1] + min(acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1])
    return float(acc[n, m])


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (7, 1), (5, 40), (30, 12), (12, 12)])
def test_dtw_finds_the_cheapest_monotonic_path(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    cost = rng.random(shape)
    rows, cols = dtw(cost)
    assert (rows[0], cols[0]) == (0, 0) and (rows[-1], cols[-1]) == (shape[0] - 1, shape[1] - 1)
    steps = np.stack([np.diff(rows), np.diff(cols)], axis=1)
    assert all(tuple(s) in ((0, 1), (1, 0), (1, 1)) for s in steps)
    assert float(cost[rows, cols].sum()) == pytest.approx(_dtw_reference(cost))


def _attention(spans: list[tuple[int, int]], frames: int, heads: int = 3, noise: float = 0.05) -> np.ndarray:
    """Cross-attention where token k looks at frames spans[k] (plus noise), every head alike."""
    rng = np.random.default_rng(0)
    att = rng.random((heads, len(spans), frames)) * noise
    for k, (a, b) in enumerate(spans):
        att[:, k, a:b] += 1.0
    return att / att.sum(axis=-1, keepdims=True)


def test_tokens_start_where_their_attention_starts() -> None:
    # Three tokens and end-of-text over 100 audio frames, the rest of the window padding.
    spans = [(10, 30), (30, 45), (45, 80), (80, 100)]
    starts = token_start_frames(attention_cost(_attention(spans, 1500), 100))
    assert np.all(np.abs(starts[1:] - np.array([a for a, _ in spans[1:]])) <= 3), starts
    # The path begins at the window's first frame, whatever the first token looked at: why
    # the first word's start is bounded (words_from_alignment) and snapped to speech.
    assert starts[0] == 0


def test_median_filter_smooths_along_time_only() -> None:
    x = np.array([[0.0, 0.0, 9.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]])
    assert median_filter(x, 3).tolist() == [[0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]]
    assert median_filter(x, 1) is x
    rng = np.random.default_rng(1)
    y = rng.random((2, 3, 40))
    expected = np.array([[[np.median(np.pad(row, 3, mode="reflect")[j : j + 7]) for j in range(40)] for row in h] for h in y])
    assert np.allclose(median_filter(y, 7), expected)


def test_words_take_their_tokens_times_probability_and_offset() -> None:
    tokens, decode = _vocabulary([b" Hello", b",", b" wor", b"ld", b"."])
    logprobs = [math.log(0.9), math.log(0.5), math.log(0.8), math.log(0.6), math.log(1.0)]
    starts = np.array([10, 30, 40, 55, 70, 90])  # five tokens, then end-of-text
    words = words_from_alignment(tokens, decode, logprobs, starts, offset=12.0, duration=2.0)
    assert [w.word for w in words] == [" Hello,", " world."]
    assert words[0].start == pytest.approx(12.0 + 10 * FRAME_S) and words[0].end == pytest.approx(12.0 + 40 * FRAME_S)
    assert words[1].start == pytest.approx(12.0 + 40 * FRAME_S) and words[1].end == pytest.approx(12.0 + 90 * FRAME_S)
    assert words[0].probability == pytest.approx(0.7) and words[1].probability == pytest.approx(0.8)


def test_times_stay_inside_the_window_and_edge_words_are_bounded() -> None:
    tokens, decode = _vocabulary([b" a", b" b", b" c", b" d"])
    # The first word takes in 2 s of silence; the end-of-text row lies past the audio.
    starts = np.array([0, 100, 110, 120, 400])
    words = words_from_alignment(tokens, decode, [0.0] * 4, starts, offset=0.0, duration=3.0)
    assert all(0.0 <= w.start <= w.end <= 3.0 for w in words)
    assert words[0].end == pytest.approx(2.0) and words[0].start > 1.0  # not from 0.0
    assert words[-1].end - words[-1].start <= 1.4


@pytest.mark.parametrize(
    ("pieces", "language", "expected"),
    [
        ([b" Hello", b",", b" world", b"."], "en", [[0, 1], [2, 3]]),
        ([b' "', b"Yes", b',"', b" he", b" said"], "en", [[0, 1, 2], [3], [4]]),
        ([b" caf", b"\xc3", b"\xa9", b" ok"], "en", [[0, 1, 2], [3]]),  # "é" split over two tokens
        ([b" \xe4\xbd", b"\xa0", b"\xe5\xa5\xbd", b"\xe3\x80\x82"], "zh", [[0, 1], [2, 3]]),  # " 你", "好。"
        ([], "en", []),
    ],
)
def test_tokens_are_grouped_into_words(pieces: list[bytes], language: str, expected: list[list[int]]) -> None:
    tokens, decode = _vocabulary(pieces)
    assert group_words(tokens, decode, language) == expected


def test_edges_in_silence_snap_to_speech() -> None:
    words = [Word(" one", 0.2, 1.3, 0.9), Word(" two", 1.3, 1.9, 0.9), Word(" three", 1.9, 3.4, 0.9)]
    snapped = snap_to_speech(words, [(0.9, 2.6)])
    assert [(w.start, w.end) for w in snapped] == [(0.9, 1.3), (1.3, 1.9), (1.9, 2.6)]
    # A word with no speech under it keeps its times; so do edges already inside speech.
    assert snap_to_speech([Word(" x", 5.0, 6.0, 0.5)], [(0.9, 2.6)]) == [Word(" x", 5.0, 6.0, 0.5)]
    # The first and last word reach the edges of the speech they sit in.
    assert [(w.start, w.end) for w in snap_to_speech(words, [(0.1, 3.6)])] == [(0.1, 1.3), (1.3, 1.9), (1.9, 3.6)]
    assert snap_to_speech(words[1:2], [(0.0, 4.0)]) == [Word(" two", 0.0, 4.0, 0.9)]


def test_word_json_and_word_cues() -> None:
    words = [Word(f" w{i}{'.' if i == 3 else ''}", i * 0.5, i * 0.5 + 0.4, 0.91234) for i in range(12)]
    assert word_json(words[3]) == {"word": "w3.", "start": 1.5, "end": 1.9, "probability": 0.9123}
    cues = word_cues(words, max_words=5, max_seconds=10.0)
    # A sentence end closes a cue; then at most five words a cue.
    assert [c.text for c in cues] == ["w0 w1 w2 w3.", "w4 w5 w6 w7 w8", "w9 w10 w11"]
    assert (cues[0].start, cues[0].end) == (0.0, 1.9)
    short = word_cues(words, max_words=50, max_seconds=1.0)
    assert all(c.end - c.start <= 1.0 for c in short) and sum(len(c.text.split()) for c in short) == 12
    srt = to_srt(cues)
    assert srt.startswith("1\n00:00:00,000 --> 00:00:01,900\nw0 w1 w2 w3.\n")
    assert "00:00:02.000 --> 00:00:04.400\nw4 w5 w6 w7 w8" in to_vtt(cues)


def test_a_cue_also_closes_after_a_quoted_sentence_end() -> None:
    # The cues and the live turn check share one sentence-end rule (engine.formats.ends_sentence).
    words = [Word(" He", 0.0, 0.3, 0.9), Word(' said "stop!"', 0.3, 0.9, 0.9), Word(" Then", 1.2, 1.5, 0.9)]
    assert [c.text for c in word_cues(words, max_words=10, max_seconds=10.0)] == ['He said "stop!"', "Then"]


def test_json_export_has_words_only_when_timed() -> None:
    plain = Transcription("hi there", "en", 1.0, [Segment(0.0, 1.0, "hi there")])
    assert "words" not in to_json(plain)
    timed = Transcription("hi there", "en", 1.0, plain.segments, words=[Word(" hi", 0.1, 0.4, 0.99), Word(" there", 0.4, 0.9, 0.5)])
    assert to_json(timed)["words"] == [
        {"word": "hi", "start": 0.1, "end": 0.4, "probability": 0.99},
        {"word": "there", "start": 0.4, "end": 0.9, "probability": 0.5},
    ]


async def test_aligner_worker_skips_jobs_whose_waiter_was_cancelled() -> None:
    """A live stream's speculative final is cancelled when speech resumes: its queued
    alignment must cost no pass (it made 4 staggered streams fall minutes behind)."""
    import asyncio
    import threading

    from engine.aligner import AlignJob, BatchWorker

    gate, ran = threading.Event(), []

    def run(jobs: list[AlignJob]) -> list[list[Word]]:
        gate.wait(10)
        ran.extend(job.offset for job in jobs)
        return [[Word(" w", job.offset, job.offset + 0.1, 0.9)] for job in jobs]

    worker = BatchWorker(run)
    job = lambda offset: AlignJob(np.zeros(160, np.float32), [1], [2], offset, "en")
    first = asyncio.ensure_future(asyncio.wrap_future(worker.submit(job(0.0))))
    deadline = asyncio.get_running_loop().time() + 10
    while worker.aligned == 0:  # the first job is running (blocked on the gate)
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    queued = worker.submit(job(1.0))
    cancelled = asyncio.ensure_future(asyncio.wrap_future(queued))
    kept = asyncio.ensure_future(asyncio.wrap_future(worker.submit(job(2.0))))
    await asyncio.sleep(0)
    cancelled.cancel()
    while not queued.cancelled():  # the task's cancellation reaches the queued job
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.01)
    gate.set()
    assert (await first)[0].start == 0.0 and (await kept)[0].start == 2.0
    assert ran == [0.0, 2.0] and worker.skipped == 1


def test_remote_words_are_read_leniently_and_unknown_probability_is_null() -> None:
    from engine.remote.parsing import words_of

    raw = [
        {"word": "Hello", "start": 0.1, "end": 0.4},
        {"word": " world", "start": 0.5, "end": 9.0, "probability": 0.8},
        {"word": "bad", "start": "x", "end": 1},
        "not a word",
        {"word": " ", "start": 0, "end": 1},
    ]
    words = words_of(raw, duration=2.0, offset=30.0)
    assert [(w.word, w.start, w.end) for w in words] == [(" Hello", 30.1, 30.4), (" world", 30.5, 32.0)]
    assert math.isnan(words[0].probability) and words[1].probability == 0.8
    assert word_json(words[0])["probability"] is None and word_json(words[1])["probability"] == 0.8
    assert [w.word for w in words_of([{"word": "你好", "start": 0, "end": 1}], duration=2.0, offset=0.0, language="zh")] == ["你好"]
    assert words_of(None, duration=1.0, offset=0.0) == []


def test_each_segment_gets_the_words_whose_middle_falls_in_it() -> None:
    """An upload's words kept with their segments (the History stores segments, not the
    flat list): each word once, in order; a word in a gap between segments is nobody's."""
    from engine.word_times import with_segment_words

    words = [Word(" One", 0.0, 0.4, 0.9), Word(" two.", 0.4, 1.02, 0.8), Word(" um", 1.3, 1.5, 0.2), Word(" Three", 2.0, 2.5, 0.7)]
    result = Transcription(
        "One two. Three", "en", 3.0, [Segment(0.0, 1.0, "One two."), Segment(2.0, 3.0, "Three")], words=words
    )
    out = with_segment_words(result)
    assert [tuple(w.word for w in s.words) for s in out.segments] == [(" One", " two."), (" Three",)]
    assert [s.text for s in out.segments] == ["One two.", "Three"] and out.words == words
    assert with_segment_words(Transcription("x", "en", 1.0, [Segment(0.0, 1.0, "x")])).segments[0].words == ()


def _tone_then(seconds_tone: float, after: np.ndarray) -> np.ndarray:
    t = np.arange(int(seconds_tone * 16000)) / 16000
    return np.concatenate([0.3 * np.sin(2 * np.pi * 220 * t), after]).astype(np.float32)


def test_a_word_before_a_pause_ends_where_its_sound_does() -> None:
    # The VAD's region ends 0.12 s after the sound (its lag): the word's end comes back.
    audio = _tone_then(0.5, np.zeros(8000))
    offset = 10.0  # the window's place in the file
    words = [Word(" one", 10.1, 10.62, 0.9)]
    out = end_at_sound(words, audio, offset, [(10.05, 10.62)])
    assert abs(out[0].end - 10.5) <= 0.011, out


def test_no_trim_in_noise_nor_off_a_region_end_nor_past_the_limit() -> None:
    noisy = _tone_then(0.5, (0.05 * np.random.default_rng(0).standard_normal(8000)))
    assert end_at_sound([Word(" one", 0.1, 0.62, 0.9)], noisy, 0.0, [(0.05, 0.62)])[0].end == 0.62
    quiet = _tone_then(0.5, np.zeros(8000))
    inner = Word(" one", 0.1, 0.55, 0.9)  # ends inside speech, not at the region's end
    assert end_at_sound([inner], quiet, 0.0, [(0.05, 0.9)])[0] == inner
    far = end_at_sound([Word(" one", 0.1, 0.9, 0.9)], quiet, 0.0, [(0.05, 0.9)])[0]
    assert far.end == pytest.approx(0.9 - MAX_SOUND_TRIM_S)
