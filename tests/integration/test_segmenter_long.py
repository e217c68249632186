"""The segmenter over long audio (no vLLM, but minutes): an hour of talk keeps its memory
flat; the real front end (48 kHz frames -> FrameResampler -> SileroVAD -> Segmenter) on the
larger evaluation set's long-form files matches their true segments. The short, in-repo
versions of these checks are in tests/unit/test_segmenter.py; the ones here that need the
larger set skip without it.
"""

from __future__ import annotations

import itertools
import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streaming.segmenter import Segmenter, SegmenterOptions, UtteranceEnded
from tests.unit.test_segmenter import SR, TOL, W, match_segments, run_front_end, to_48k_int16


# --- memory --------------------------------------------------------------------------


def test_memory_stays_bounded_over_an_hour() -> None:
    """An hour of talk (20 s sentences with 1 s pauses, and 41.6 s monologues without a
    pause every few minutes) keeps the segmenter's memory flat."""
    seg = Segmenter()
    rng = np.random.default_rng(2)
    window = (0.1 * rng.standard_normal(W)).astype(np.float32)
    hour = 3600 * SR // W
    bound = 2 * (25 * SR + W) + 3200 + W  # utterance buffer (doubling) + pre-roll ring
    peak = total_out = n_utt = n_forced = 0
    tracemalloc.start()
    baseline = None
    for k in range(hour):
        if k % 5200 < 1300:
            p = 0.9  # monologue: forced cuts
        else:
            p = 0.9 if (k % 1300) % 656 < 625 else 0.05
        for e in seg.feed(window, p):
            if isinstance(e, UtteranceEnded):
                total_out += len(e.audio)
                n_utt += 1
                n_forced += e.forced
        peak = max(peak, seg.buffered_samples)
        if k == hour // 6:
            baseline = tracemalloc.get_traced_memory()[0]
    current, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert seg.clock_s == pytest.approx(hour * W / SR)
    assert peak <= bound
    assert n_utt > 100 and n_forced > 10
    assert total_out <= hour * W
    assert baseline is not None
    # Bytes (float32 = 4 bytes a sample): nothing accumulates after the first ten
    # minutes, and the peak (a forced cut briefly holds the old buffer, the finished
    # audio and the rest) is a few MB, where an hour of audio would be 230 MB.
    assert current - baseline < 4 * bound
    assert traced_peak < 2 * 4 * bound



@pytest.fixture(scope="module")
def lj(eval_set: Path) -> tuple[np.ndarray, list[dict]]:
    name = eval_set / "longform" / "ljspeech_LJ001_0001-0032"
    audio, rate = sf.read(name.with_suffix(".flac"), dtype="float32")
    assert rate == SR
    segments = json.loads(name.with_suffix(".segments.json").read_text())["segments"]
    return to_48k_int16(audio), segments


@pytest.mark.parametrize("min_silence_ms", [250, 500])
def test_longform_lj_utterances_match_true_segments(lj, min_silence_ms) -> None:
    x48, segments = lj
    opts = SegmenterOptions(min_silence_ms=min_silence_ms)
    utts = run_front_end(x48, opts)
    m = match_segments(utts, segments, min_silence_ms / 1000)
    print(
        f"\nLJ long-form, min_silence={min_silence_ms} ms, {len(utts)} utterances "
        f"({sum(u.forced for u in utts)} forced): {m.summary()}"
    )
    assert max(m.start_err) <= TOL and max(m.end_err) <= TOL
    assert m.spill == [] and m.false == []
    assert all(u.end_s - u.start_s <= opts.max_utterance_s + 0.032 for u in utts)
    for u in utts:
        assert len(u.audio) == round((u.end_s - u.start_s) * SR)
    if min_silence_ms == 250:
        # Every LJ sentence gap (>= 0.27 s) is longer than 250 ms of silence: all 32
        # sentences are found on their own, start and end within 300 ms.
        assert m.raw_start_hits >= 31 and m.raw_end_hits >= 31
    else:
        # The LJ gaps are all shorter than 500 ms, so the truth is one 233 s stretch;
        # forced cuts must then land in pauses, mostly the pauses between sentences.
        forced = [u.end_s for u in utts if u.forced]
        assert forced
        gaps = [(a["end"], b["start"]) for a, b in itertools.pairwise(segments)]
        in_gap = [t for t in forced if any(a - 0.1 <= t <= b + 0.1 for a, b in gaps)]
        print(
            f"  forced cuts at {[round(t, 2) for t in forced]}; {len(in_gap)} in sentence gaps"
        )
        assert len(in_gap) >= len(forced) // 2


def test_longform_mixed_file(eval_set: Path) -> None:
    """The 16.6 min mixed file (speech of 6 sources, music, noise, digital silence).

    Its true segments are whole clips, some with up to ~0.9 s of near-silence or room
    tone at their edges, which the VAD rightly leaves out, so a few boundaries are more
    than 300 ms from the clip edges; the rest must match, and music/noise/silence
    inserts must produce nothing.
    """
    name = eval_set / "longform" / "mixed_en_e2e_dev_visible"
    audio, _ = sf.read(name.with_suffix(".flac"), dtype="float32")
    segments = json.loads(name.with_suffix(".segments.json").read_text())["segments"]
    utts = run_front_end(to_48k_int16(audio))
    m = match_segments(utts, segments, 0.5)
    print(f"\nmixed long-form, default options, {len(utts)} utterances: {m.summary()}")
    within = sum(e <= TOL for e in m.start_err) + sum(e <= TOL for e in m.end_err)
    assert within >= 0.95 * 2 * len(m.truth)
    assert max(m.start_err + m.end_err) <= 1.0
    assert m.spill == [] and m.false == []
    inserts = [s for s in segments if s["kind"] != "speech"]
    for s in inserts:
        inner = (s["start"] + TOL, s["end"] - TOL)
        assert not any(u.start_s < inner[1] and u.end_s > inner[0] for u in utts), s


def test_soft_limit_cuts_long_speech_at_short_pauses(lj) -> None:
    """LJ at 500 ms is one 233 s stretch of speech (all its gaps are shorter): with the
    soft limit, utterances past 10 s end at the next 200 ms pause instead of being
    forced at 25 s (at sentence gaps or commas)."""
    x48, segments = lj
    hard = run_front_end(x48, SegmenterOptions(min_silence_ms=500))
    opts = SegmenterOptions(min_silence_ms=500, long_utterance_s=10.0, long_min_silence_ms=200)
    soft = run_front_end(x48, opts)
    assert sum(u.forced for u in soft) < sum(u.forced for u in hard)
    assert len(soft) > len(hard)
    gaps = [(a["end"], b["start"]) for a, b in itertools.pairwise(segments)]
    # A 200 ms pause may also be a comma inside a sentence; many are sentence gaps.
    cuts = [u.end_s for u in soft[:-1] if not u.forced]
    in_gap = [t for t in cuts if any(a - 0.3 <= t <= b + 0.3 for a, b in gaps)]
    print(f"\nsoft cuts at {[round(t, 2) for t in cuts]}; {len(in_gap)} in sentence gaps")
    assert cuts and len(in_gap) >= len(cuts) // 3
    assert all(u.end_s - u.start_s <= opts.max_utterance_s + 0.032 for u in soft)
