"""The simulate harness and its command line with a scripted engine, on tests/data.

The real-engine, real-time runs (minutes: audio streams at the speed it was spoken) are in
tests/integration/test_simulate_engine.py; the timing figures belong to the benchmarks.
"""

from __future__ import annotations

import json

from evaluation import longform_files, read_audio
from streaming.events import TranscriptEvent
from streaming.harness import simulate
from tests.datasets import TEST_DATA
from tests.fakes import FakeEngine

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


def longform(name: str, base=TEST_DATA):
    return next(f for f in longform_files(base) if f.path.stem == name)


# -- the command line, with a scripted engine --------------------------------------------


def test_cli_prints_events_and_summary(monkeypatch, capsys) -> None:
    import engine.factory
    from streaming.__main__ import main

    class ClosableFake(FakeEngine):
        info = type("Info", (), {"model": "fake"})()

        async def close(self) -> None:
            pass

    monkeypatch.setattr(engine.factory, "create_engine", lambda settings: ClosableFake())
    clip = TEST_DATA / "clips" / "cmu_arctic__awb_arctic_a0007.flac"
    reference = TEST_DATA / "longform" / "mixed_short.txt"  # any text will do
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
    lj = longform("mixed_short")
    audio = read_audio(lj.path)[: SR * 40]
    seen: list = []
    summary = await simulate(
        FakeEngine(), audio, realtime=False, reference="one two three", on_event=lambda i, e, t: seen.append(e)
    )
    assert summary["finals"] >= 1 and summary["wer"] is not None
    assert summary["max_lag_s"] >= 0 and summary["revisions"] == 0
    assert any(isinstance(e, TranscriptEvent) and e.type == "final" for e in seen)
