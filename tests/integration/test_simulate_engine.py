"""`streaming.harness.simulate` on the real vLLM engine, in real time, over the larger
evaluation set's long-form files (skipped without it): streaming WER equal to offline, four
concurrent streams keep up. With a scripted engine: tests/unit/test_simulate.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.base import DecodeRequest
from evaluation import read_audio, wer
from streaming.harness import simulate
from streaming.session import SessionOptions
from tests.unit.test_simulate import SR, longform


@pytest.mark.slow
async def test_realtime_longform_wer_matches_offline(eval_set, engine) -> None:
    """LJ long-form (3.9 min) streamed in real time: WER within 10 % (relative) of the
    offline whole-file transcription by the same engine."""
    lj = longform("ljspeech_LJ001_0001-0032", eval_set)
    audio = read_audio(lj.path)
    offline = await engine.transcribe(DecodeRequest(audio.copy()))
    offline_wer = wer([lj.text], [offline.text])
    summary = await simulate(engine, audio, realtime=True, reference=lj.text, segments=lj.segments)
    print(f"\noffline WER {offline_wer:.4f}; streaming summary {json.dumps({k: v for k, v in summary.items() if k != 'per_stream'})}")
    assert summary["errors"] == 0
    assert summary["finals"] >= 5
    assert summary["wer"] <= offline_wer * 1.10 + 1e-9


@pytest.mark.slow
async def test_four_realtime_streams_keep_up(eval_set, engine) -> None:
    """Four concurrent real-time streams of the mixed long-form file (its first 100 s:
    speech of several sources, music, noise, silence) on one shared engine: every
    stream settles every utterance with the WER of a single stream, and the lag stays
    bounded (it does not grow with the length of the stream)."""
    mixed = longform("mixed_en_e2e_dev_visible", eval_set)
    cut = 100.0
    audio = read_audio(mixed.path)[: int(cut * SR)]
    segments = [s for s in mixed.segments if s["end"] <= cut]
    reference = " ".join(s["text"] for s in segments if s["kind"] == "speech")
    lags: list[list[tuple[float, float]]] = [[], [], [], []]

    def on_event(stream: int, event, t: float) -> None:
        if event.type == "status":
            lags[stream].append((t, event.lag_s))

    summary = await simulate(
        engine,
        audio,
        realtime=True,
        streams=4,
        options=SessionOptions(language="en"),
        reference=reference,
        segments=segments,
        on_event=on_event,
    )
    print(f"\n4 streams: {json.dumps({k: v for k, v in summary.items() if k != 'per_stream'})}")
    n_speech = sum(s["kind"] == "speech" for s in segments)
    for stream in summary["per_stream"]:
        assert stream["errors"] == 0
        assert stream["finals"] >= n_speech // 2
        assert stream["wer"] <= 0.25
    # Bounded lag: no stream ends far behind, and the last third of the run is not
    # worse than the first two thirds by more than a few seconds.
    for series in lags:
        assert series
        late = [lag for t, lag in series if t > 2 * cut / 3]
        early = [lag for t, lag in series if t <= 2 * cut / 3]
        assert max(late, default=0.0) <= max(early, default=0.0) + 5.0
    assert summary["wall_s"] <= cut + 20.0
    assert np.isfinite(summary["max_lag_s"])
