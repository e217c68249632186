"""The simulate harness and the whole pipeline on the long-form files of the eval set.

The real-time tests take minutes (they stream audio at the speed it was spoken). They
assert correctness (WER, every utterance settled, lag that stays bounded); the timing
figures themselves are printed and belong to the benchmarks.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from evaluation import eval_dir, longform_files, read_audio, wer
from engine.base import DecodeRequest
from streaming.events import TranscriptEvent
from streaming.harness import simulate
from streaming.session import SessionOptions

from tests.unit.test_session import FakeEngine

SR = 16_000
SUMMARY_KEYS = {
    "wer",
    "final_latency_p50_s",
    "final_latency_p95_s",
    "first_partial_latency_s",
    "max_lag_s",
    "partials",
    "finals",
    "revisions",
    "per_stream",
}


def longform(name: str):
    return next(f for f in longform_files() if f.path.stem == name)


# -- the command line, with a scripted engine --------------------------------------------


def test_cli_prints_events_and_summary(monkeypatch, capsys) -> None:
    import engine.factory
    from streaming.__main__ import main

    class ClosableFake(FakeEngine):
        info = type("Info", (), {"model": "fake"})()

        async def close(self) -> None:
            pass

    monkeypatch.setattr(engine.factory, "create_engine", lambda settings: ClosableFake())
    clip = eval_dir() / "clips" / "cmu_arctic__awb_arctic_a0007.flac"
    reference = eval_dir() / "longform" / "ljspeech_LJ001_0001-0032.txt"  # any text will do
    assert main(["simulate", str(clip), "--streams", "2", "--reference", str(reference)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    summary = lines[-1]["summary"]
    assert SUMMARY_KEYS <= set(summary)
    assert summary["streams"] == 2 and len(summary["per_stream"]) == 2
    assert summary["finals"] == 1
    events = lines[:-1]
    assert events and all(e["type"] in ("partial", "final") for e in events)
    assert {e["stream"] for e in events} == {0, 1}
    assert all({"utterance_id", "committed", "tentative", "start_s", "end_s", "latency_s", "text"} <= set(e) for e in events)


async def test_simulate_as_fast_as_possible_with_fake_engine() -> None:
    lj = longform("ljspeech_LJ001_0001-0032")
    audio = read_audio(lj.path)[: SR * 40]
    seen: list = []
    summary = await simulate(
        FakeEngine(), audio, realtime=False, reference="one two three", on_event=lambda i, e, t: seen.append(e)
    )
    assert summary["finals"] >= 1 and summary["wer"] is not None
    assert summary["max_lag_s"] >= 0 and summary["revisions"] == 0
    assert any(isinstance(e, TranscriptEvent) and e.type == "final" for e in seen)


# -- the real engine, real time -------------------------------------------------------------


@pytest.mark.slow
async def test_realtime_longform_wer_matches_offline(engine) -> None:
    """LJ long-form (3.9 min) streamed in real time: WER within 10 % (relative) of the
    offline whole-file transcription by the same engine."""
    lj = longform("ljspeech_LJ001_0001-0032")
    audio = read_audio(lj.path)
    offline = await engine.transcribe(DecodeRequest(audio.copy()))
    offline_wer = wer([lj.text], [offline.text])
    summary = await simulate(engine, audio, realtime=True, reference=lj.text, segments=lj.segments)
    print(f"\noffline WER {offline_wer:.4f}; streaming summary {json.dumps({k: v for k, v in summary.items() if k != 'per_stream'})}")
    assert summary["errors"] == 0
    assert summary["finals"] >= 5
    assert summary["wer"] <= offline_wer * 1.10 + 1e-9


@pytest.mark.slow
async def test_four_realtime_streams_keep_up(engine) -> None:
    """Four concurrent real-time streams of the mixed long-form file (its first 100 s:
    speech of several sources, music, noise, silence) on one shared engine: every
    stream settles every utterance with the WER of a single stream, and the lag stays
    bounded (it does not grow with the length of the stream)."""
    mixed = longform("mixed_en_e2e_dev_visible")
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
