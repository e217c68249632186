"""Segmenter: hysteresis, min speech/silence, real-audio padding, forced cuts, memory.

Synthetic tests drive the segmenter with hand-made probabilities so every boundary is
known to the sample; real-audio tests run the whole front end as FastRTC would feed it
(48 kHz int16 20 ms frames -> FrameResampler -> SileroVAD -> Segmenter) on tests/data.
An hour of audio and the larger set's long-form files: tests/integration/test_segmenter_long.py.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from streaming.resample import FrameResampler
from streaming.segmenter import (
    Segmenter,
    SegmenterOptions,
    UtteranceEnded,
    UtteranceStarted,
)
from streaming.vad import SileroVAD

from tests.datasets import TEST_DATA

W = 512  # VAD window
SR = 16_000


# --- helpers -----------------------------------------------------------------------


def feed_probs(
    seg: Segmenter,
    probs: list[float],
    signal: np.ndarray | None = None,
    offset: int = 0,
):
    """Feed one 512-sample window per probability; window audio is `signal` (default: the
    sample index itself, so every sample says where it came from)."""
    events = []
    for k, p in enumerate(probs):
        i = offset + k * W
        window = (
            signal[i : i + W]
            if signal is not None
            else np.arange(i, i + W, dtype=np.float32)
        )
        events += seg.feed(window, p)
    return events


def ended(events) -> list[UtteranceEnded]:
    return [e for e in events if isinstance(e, UtteranceEnded)]


def started(events) -> list[UtteranceStarted]:
    return [e for e in events if isinstance(e, UtteranceStarted)]


def to_48k_int16(audio16k: np.ndarray) -> np.ndarray:
    x = soxr.resample(audio16k, 16_000, 48_000)
    return np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16)


def run_front_end(
    x48: np.ndarray, options: SegmenterOptions | None = None
) -> list[UtteranceEnded]:
    """FastRTC path: (1, 960) int16 frames at 48 kHz through resampler, VAD and segmenter."""
    resampler, vad, seg = FrameResampler(), SileroVAD(), Segmenter(options)
    events = []
    for i in range(0, len(x48), 960):
        for w in vad.process_windows(resampler.process(x48[None, i : i + 960], 48_000)):
            events += seg.feed(w.audio, w.prob)
    events += seg.flush()
    return ended(events)


# --- synthetic: exact boundaries -----------------------------------------------------


def test_one_utterance_with_real_padding() -> None:
    seg = Segmenter()
    events = feed_probs(seg, [0.0] * 50 + [0.9] * 100 + [0.0] * 50)
    (s,) = started(events)
    (e,) = ended(events)
    onset, last_speech_end = 50 * W, 150 * W
    start, end = onset - 3200, last_speech_end + 2400  # 200 ms before, 150 ms after
    assert s.id == e.id and s.start_s == e.start_s == start / SR
    assert e.end_s == end / SR and not e.forced and e.reason == "silence"
    # The padding is real audio from the stream, sample for sample.
    assert np.array_equal(e.audio, np.arange(start, end, dtype=np.float32))
    assert e.audio.dtype == np.float32
    assert e.speech_ratio == pytest.approx(100 * W / (end - start))


def test_start_is_reported_after_min_speech_and_end_after_min_silence() -> None:
    seg = Segmenter()
    events = feed_probs(seg, [0.0] * 20 + [0.9] * 7)
    assert events == []  # 7 windows = 224 ms < 250 ms
    events = feed_probs(seg, [0.9], offset=27 * W)
    assert len(started(events)) == 1  # 8 windows = 256 ms
    events = feed_probs(seg, [0.9] * 20 + [0.0] * 15, offset=28 * W)
    assert ended(events) == []  # 15 windows = 480 ms of silence < 500 ms
    events = feed_probs(seg, [0.0], offset=63 * W)
    assert len(ended(events)) == 1


def test_clicks_and_blips_shorter_than_min_speech_are_dropped() -> None:
    seg = Segmenter()
    probs = [0.0] * 20 + ([0.99] * 2 + [0.0] * 30) * 20
    events = feed_probs(seg, probs) + seg.flush()
    assert events == []
    assert seg.current() is None


def test_start_needs_the_start_threshold() -> None:
    seg = Segmenter()
    assert feed_probs(seg, [0.0] * 10 + [0.45] * 200) + seg.flush() == []


def test_hysteresis_keeps_an_utterance_between_thresholds() -> None:
    seg = Segmenter()
    events = feed_probs(seg, [0.0] * 10 + [0.9] * 20 + [0.4] * 100 + [0.0] * 20)
    (e,) = ended(events)
    assert e.end_s == pytest.approx((130 * W + 2400) / SR)


def test_silence_is_only_cancelled_by_the_start_threshold() -> None:
    """After a drop below the end threshold, probabilities hovering at 0.4 do not keep
    the utterance alive (Silero's own rule)."""
    seg = Segmenter()
    events = feed_probs(seg, [0.0] * 10 + [0.9] * 20 + [0.2] + [0.4] * 15 + [0.9] * 5)
    (e,) = ended(events)
    assert e.end_s == pytest.approx((30 * W + 2400) / SR)
    # ... while a window at the start threshold does cancel it.
    seg = Segmenter()
    events = feed_probs(seg, [0.0] * 10 + [0.9] * 20 + [0.2] * 10 + [0.6] + [0.2] * 10)
    assert ended(events) == []


def test_gap_shorter_than_min_silence_merges_longer_splits() -> None:
    short = [0.0] * 20 + [0.9] * 30 + [0.0] * 12 + [0.9] * 30 + [0.0] * 40
    assert len(ended(feed_probs(Segmenter(), short))) == 1
    long_gap = [0.0] * 20 + [0.9] * 30 + [0.0] * 20 + [0.9] * 30 + [0.0] * 40
    first, second = ended(feed_probs(Segmenter(), long_gap))
    # The second utterance's pre-roll never overlaps the first utterance's audio.
    assert second.start_s >= first.end_s
    assert first.end_s == (50 * W + 2400) / SR
    assert second.start_s == (70 * W - 3200) / SR
    # With a gap shorter than both paddings (possible with min_silence < 350 ms), the
    # pre-roll is clipped at the previous end instead of overlapping it.
    tight = [0.0] * 20 + [0.9] * 30 + [0.0] * 9 + [0.9] * 30 + [0.0] * 40
    a, b = ended(feed_probs(Segmenter(SegmenterOptions(min_silence_ms=250)), tight))
    assert a.end_s == (50 * W + 2400) / SR
    assert b.start_s == a.end_s


def test_pre_roll_is_limited_by_the_start_of_the_stream() -> None:
    (e,) = ended(feed_probs(Segmenter(), [0.0] * 2 + [0.9] * 20 + [0.0] * 20))
    assert e.start_s == 0.0
    assert np.array_equal(e.audio[:5], np.arange(5, dtype=np.float32))


def test_min_silence_is_configurable() -> None:
    probs = [0.0] * 20 + [0.9] * 30 + [0.0] * 10 + [0.9] * 30 + [0.0] * 40
    assert len(ended(feed_probs(Segmenter(), probs))) == 1
    assert (
        len(ended(feed_probs(Segmenter(SegmenterOptions(min_silence_ms=300)), probs)))
        == 2
    )


def test_flush_closes_an_open_utterance() -> None:
    seg = Segmenter()
    feed_probs(seg, [0.0] * 10 + [0.9] * 30)
    (e,) = seg.flush()
    assert e.reason == "flush" and not e.forced
    assert e.end_s == 40 * W / SR
    assert seg.flush() == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"start_threshold": 0.3, "end_threshold": 0.5},
        {"min_silence_ms": -1},
        {"max_utterance_s": 1.0},
        {"cut_search_s": 30.0},
        {"sample_rate": 0},
    ],
)
def test_bad_options_are_refused(kwargs) -> None:
    with pytest.raises(ValueError):
        SegmenterOptions(**kwargs)


# --- synthetic: the current utterance for partial decodes ---------------------------


def test_current_snapshot_grows_and_stays_valid() -> None:
    seg = Segmenter()
    feed_probs(seg, [0.0] * 10 + [0.9] * 5)
    assert seg.current() is None  # not yet min_speech: no utterance to decode
    feed_probs(seg, [0.9] * 10, offset=15 * W)
    snap = seg.current()
    assert snap is not None and seg.in_utterance
    start = 10 * W - 3200
    assert snap.start_s == start / SR and snap.end_s == 25 * W / SR
    assert np.array_equal(snap.audio, np.arange(start, 25 * W, dtype=np.float32))
    assert not snap.audio.flags.writeable
    before = snap.audio.copy()
    feed_probs(seg, [0.9] * 100, offset=25 * W)  # buffer grows (reallocates) meanwhile
    later = seg.current()
    assert later.id == snap.id and len(later.audio) == len(snap.audio) + 100 * W
    assert np.array_equal(snap.audio, before)  # the old view did not change
    # Trailing silence is not part of the snapshot (it is not part of the final either).
    feed_probs(seg, [0.0] * 10, offset=125 * W)
    assert seg.current().end_s == (125 * W + 2400) / SR
    (final,) = ended(feed_probs(seg, [0.0] * 10, offset=135 * W))
    assert np.array_equal(final.audio[: len(later.audio)], later.audio)
    assert seg.current() is None


# --- synthetic: forced cuts at max length ------------------------------------------


def test_forced_cut_lands_on_the_quietest_point() -> None:
    opts = SegmenterOptions(max_utterance_s=10.0, cut_search_s=3.0)
    seg = Segmenter(opts)
    probs = [0.0] * 20 + [1.0] * 1000
    for k in (281, 282, 283):  # a short pause around 9.0 s, inside the last 3 s
        probs[k] = 0.05
    probs[300] = 0.0  # one isolated low window: loses to the smoothed pause
    events = feed_probs(seg, probs)
    first = ended(events)[0]
    start = 20 * W - 3200
    cut = 282 * W + W // 2
    assert first.forced and first.reason == "max_length"
    assert first.start_s == start / SR and first.end_s == cut / SR
    assert np.array_equal(first.audio, np.arange(start, cut, dtype=np.float32))
    # The next utterance continues at the cut, at once.
    nxt = next(e for e in started(events) if e.id == first.id + 1)
    assert nxt.start_s == first.end_s


def test_forced_cut_without_a_pause_uses_the_energy_minimum() -> None:
    opts = SegmenterOptions(max_utterance_s=10.0, cut_search_s=3.0)
    n = 400
    signal = np.full(n * W, 0.5, dtype=np.float32)
    signal[289 * W : 292 * W] = 0.01  # quieter stretch, VAD still says speech
    events = feed_probs(Segmenter(opts), [0.0] * 20 + [1.0] * (n - 20), signal=signal)
    first = ended(events)[0]
    assert first.forced and first.end_s == (290 * W + W // 2) / SR


def test_long_speech_is_cut_into_contiguous_pieces_below_the_limit() -> None:
    opts = SegmenterOptions(max_utterance_s=8.0)
    rng = np.random.default_rng(1)
    probs = (
        [0.0] * 20 + list(np.clip(rng.normal(0.8, 0.2, 3000), 0.36, 1.0)) + [0.0] * 30
    )
    seg = Segmenter(opts)
    events = feed_probs(seg, probs)
    ends = ended(events)
    assert len(ends) >= 10
    assert all(e.forced for e in ends[:-1]) and not ends[-1].forced
    assert all(e.end_s - e.start_s <= 8.0 + W / SR for e in ends)
    for a, b in itertools.pairwise(ends):
        assert b.start_s == a.end_s
    joined = np.concatenate([e.audio for e in ends])
    start = round(ends[0].start_s * SR)
    assert np.array_equal(
        joined, np.arange(start, start + len(joined), dtype=np.float32)
    )
    # Ids: every Started has its Ended, in order.
    assert [s.id for s in started(events)] == [e.id for e in ends]


def test_forced_cut_in_a_pause_does_not_open_an_empty_utterance() -> None:
    opts = SegmenterOptions(max_utterance_s=5.0, cut_search_s=2.0)
    # Speech up to 4.9 s of utterance time, then a pause (shorter than min silence)
    # that runs over the limit, then speech again.
    probs = [0.0] * 10 + [1.0] * 143 + [0.0] * 14 + [1.0] * 30 + [0.0] * 20
    seg = Segmenter(opts)
    events = feed_probs(seg, probs)
    ends = ended(events)
    assert ends[0].forced
    assert len(started(events)) == len(ends) == 2
    assert ends[1].start_s > ends[0].end_s  # a fresh onset, with its own pre-roll


# --- real audio through the whole front end ------------------------------------------


def test_tone_and_silence_make_no_utterance() -> None:
    """Silero rejects steady tones: a sine between silences is not speech."""
    t = np.arange(3 * SR) / SR
    audio = np.concatenate(
        [
            np.zeros(SR),
            0.3 * np.sin(2 * np.pi * 440 * t),
            np.zeros(SR),
            0.3 * np.sin(2 * np.pi * 1000 * t),
        ]
    ).astype(np.float32)
    assert run_front_end(to_48k_int16(audio)) == []


def test_speech_between_clicks_is_found_and_clicks_are_not() -> None:
    speech, _ = sf.read(
        TEST_DATA / "clips" / "ljspeech_coqui__LJ001-0002.flac", dtype="float32"
    )
    gap = np.zeros(4 * SR, dtype=np.float32)
    gap[:: SR // 3] = 0.9  # three clicks a second
    gap[5 :: SR // 3] = -0.9
    audio = np.concatenate([gap, speech, gap])
    (utt,) = run_front_end(to_48k_int16(audio))
    speech_start, speech_end = 4.0, 4.0 + len(speech) / SR
    assert abs(utt.start_s - speech_start) <= 0.3
    assert abs(utt.end_s - speech_end) <= 0.3
    assert len(utt.audio) == round((utt.end_s - utt.start_s) * SR)


def _nonspeech_clips() -> list[dict]:
    lines = (TEST_DATA / "manifest.jsonl").read_text().splitlines()
    return [m for m in map(json.loads, lines) if m["kind"] == "nonspeech"]


GENERATED_NONSPEECH = (
    "silence_",
    "hum_50hz",
    "white_noise",
    "pink_noise",
    "brown_noise",
)


def test_nonspeech_clips_make_few_or_no_utterances() -> None:
    rows = []
    total_clip = total_utt = 0.0
    for m in _nonspeech_clips():
        audio, _rate = sf.read(TEST_DATA / m["audio"], dtype="float32")
        utts = run_front_end(to_48k_int16(audio))
        seconds = sum(u.end_s - u.start_s for u in utts)
        rows.append((Path(m["audio"]).stem, m["duration"], len(utts), seconds))
        total_clip += m["duration"]
        total_utt += seconds
        if any(g in m["audio"] for g in GENERATED_NONSPEECH):
            assert utts == [], m["audio"]  # silence, hum and synthetic noise: nothing
        assert seconds <= 0.2 * m["duration"], m["audio"]
    print("\nnon-speech clips (clip, duration s, utterances, utterance s):")
    for row in rows:
        print(f"  {row[0][:60]:60s} {row[1]:5.1f} {row[2]:2d} {row[3]:5.1f}")
    print(
        f"  total: {total_utt:.1f} s of utterances in {total_clip:.1f} s of non-speech"
    )
    assert total_utt <= 0.05 * total_clip


# --- long-form: matching against the true segments -----------------------------------

TOL = 0.3  # seconds
# Silero decides per 32 ms window and its probability rises and falls a little around
# the audible edges, so a true gap within this margin of min_silence may go either way.
MERGE_MARGIN = 0.15


@dataclass
class Match:
    truth: list[tuple[float, float]]  # merged true speech intervals
    detected: list[tuple[float, float]]  # utterances, forced cuts joined back
    start_err: list[float]
    end_err: list[float]
    spill: list[
        tuple[float, float]
    ]  # detected intervals reaching > TOL into non-speech
    false: list[tuple[float, float]]  # detected intervals overlapping no speech
    raw_start_hits: int  # unmerged true starts with a detected start within TOL
    raw_end_hits: int
    raw_count: int

    def summary(self) -> str:
        return (
            f"truth={len(self.truth)} detected={len(self.detected)} "
            f"starts within {TOL}s: {sum(e <= TOL for e in self.start_err)}/{len(self.truth)} "
            f"ends: {sum(e <= TOL for e in self.end_err)}/{len(self.truth)} "
            f"mean|err| start={np.mean(self.start_err):.3f}s end={np.mean(self.end_err):.3f}s "
            f"max start={np.max(self.start_err):.3f}s end={np.max(self.end_err):.3f}s "
            f"spill={len(self.spill)} false={len(self.false)} "
            f"unmerged truth: starts {self.raw_start_hits}/{self.raw_count} ends {self.raw_end_hits}/{self.raw_count}"
        )


def match_segments(
    utts: list[UtteranceEnded], segments: list[dict], min_silence_s: float
) -> Match:
    """Compare detected utterances with the true speech segments.

    * Truth: speech segments, merged where the gap between them is shorter than
      min_silence (+ MERGE_MARGIN): the segmenter is designed not to split there.
    * Detected: utterances, with forced cuts (max length) joined back, since those are
      not speech boundaries.
    * Every merged true start (end) must have a detected start (end) within TOL.
    * Extra detected boundaries inside true speech (pauses in a sentence that are longer
      than min_silence) are allowed, but no detected start or end may lie more than TOL
      outside true speech ("spill"), and no utterance may be all non-speech ("false").
    """
    speech = sorted((s["start"], s["end"]) for s in segments if s["kind"] == "speech")
    truth: list[list[float]] = []
    for a, b in speech:
        if truth and a - truth[-1][1] < min_silence_s + MERGE_MARGIN:
            truth[-1][1] = b
        else:
            truth.append([a, b])
    detected: list[list[float]] = []
    joined_forced = False
    for u in utts:
        if detected and joined_forced:
            detected[-1][1] = u.end_s
        else:
            detected.append([u.start_s, u.end_s])
        joined_forced = u.forced
    starts = np.array([d[0] for d in detected])
    ends = np.array([d[1] for d in detected])
    start_err = [float(np.min(np.abs(starts - a))) for a, _ in truth]
    end_err = [float(np.min(np.abs(ends - b))) for _, b in truth]

    def in_speech(t: float) -> bool:
        return any(a - TOL <= t <= b + TOL for a, b in speech)

    spill = [(a, b) for a, b in detected if not (in_speech(a) and in_speech(b))]
    false = [
        (a, b) for a, b in detected if not any(a < sb and b > sa for sa, sb in speech)
    ]
    raw_start_hits = sum(np.min(np.abs(starts - a)) <= TOL for a, _ in speech)
    raw_end_hits = sum(np.min(np.abs(ends - b)) <= TOL for _, b in speech)
    return Match(
        [tuple(t) for t in truth],
        [tuple(d) for d in detected],
        start_err,
        end_err,
        spill,
        false,
        int(raw_start_hits),
        int(raw_end_hits),
        len(speech),
    )


def test_longform_mixed_file() -> None:
    """tests/data's 2.2 min long-form file (LJ Speech, CMU ARCTIC and JFK, with music, noise,
    digital silence and whale song between them): every utterance boundary within 300 ms of
    the true one, nothing spills over a clip edge, and the inserts produce nothing. The
    larger set's 16.6 min file: tests/integration/test_segmenter_long.py."""
    name = TEST_DATA / "longform" / "mixed_short"
    audio, _ = sf.read(name.with_suffix(".flac"), dtype="float32")
    segments = json.loads(name.with_suffix(".segments.json").read_text())["segments"]
    utts = run_front_end(to_48k_int16(audio))
    m = match_segments(utts, segments, 0.5)
    print(f"\nshort mixed long-form, default options, {len(utts)} utterances: {m.summary()}")
    within = sum(e <= TOL for e in m.start_err) + sum(e <= TOL for e in m.end_err)
    assert within >= 0.95 * 2 * len(m.truth)
    assert max(m.start_err + m.end_err) <= 1.0
    assert m.spill == [] and m.false == []
    inserts = [s for s in segments if s["kind"] != "speech"]
    assert {s["kind"] for s in inserts} == {"music", "noise", "silence"}
    for s in inserts:
        inner = (s["start"] + TOL, s["end"] - TOL)
        assert not any(u.start_s < inner[1] and u.end_s > inner[0] for u in utts), s
