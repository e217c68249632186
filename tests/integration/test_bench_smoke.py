"""`python -m bench`: the plan, the report, and a seconds-long smoke run of the real thing.

The smoke run writes to a temporary `--out`, never over `bench/results/latest.json`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

OFFLINE_KEYS = {"rtfx_bs1", "rtfx_conc8", "wer", "peak_rss_mb"}
STREAM_KEYS = {"streams", "final_latency_p50_s", "final_latency_p95_s", "streaming_wer", "offline_wer", "max_lag_s"}


@pytest.fixture
def bench_set(monkeypatch) -> Path | None:
    """The set the bench reads: the larger evaluation set where it is, else the
    repository's own tests/data (a fresh clone has nothing beside it: issue 17, case 12).
    Returns the EVAL_DIR given to the bench, None for the default."""
    from tests.datasets import TEST_DATA, eval_set_missing

    if eval_set_missing() is None:
        return None
    monkeypatch.setenv("EVAL_DIR", str(TEST_DATA))
    return TEST_DATA


def test_quick_plan_cuts_excerpts_in_pauses(bench_set) -> None:
    from bench.__main__ import build_parser, make_plan

    plan = make_plan(build_parser().parse_args(["--quick"]))
    assert len(plan["clips"]) == 8 and plan["bs1_indices"] == [0, 1, 2, 3]
    assert plan["streaming"]["stream_counts"] == [1, 4]
    assert plan["streaming"]["staggered_counts"] == [4] and plan["streaming"]["stagger_s"] > 0
    item = plan["streaming"]["item"]
    segs = plan["streaming"]["segments"]
    # the cut lies after the last kept segment and before the next one starts
    assert segs and all(s["end"] <= item["cut_s"] for s in segs)
    assert item["text"] == " ".join(s["text"] for s in segs if s["kind"] == "speech")
    long = plan["longform"][0]
    assert 30 < long["cut_s"] < 45 and long["text"]
    full = make_plan(build_parser().parse_args([]))
    assert full["streaming"]["stream_counts"] == [1, 2, 4, 8]
    assert len(full["longform"]) == 2
    if bench_set is None:  # the larger set's own size
        assert len(full["nonspeech"]) >= 20


def test_short_utterance_stream_set(eval_set) -> None:
    """`--stream-set short`: many 1-3.5 s utterances with real pauses, times that match the audio."""
    import soundfile

    from bench.__main__ import build_parser, make_plan

    plan = make_plan(build_parser().parse_args(["--stream-set", "short", "--stream-seconds", "30"]))
    item, segs = plan["streaming"]["item"], plan["streaming"]["segments"]
    audio, rate = soundfile.read(item["path"], dtype="float32")
    assert rate == 16_000 and abs(len(audio) / rate - item["cut_s"]) < 0.01
    assert len(segs) >= 8 and all(0 < s["end"] - s["start"] <= 3.5 for s in segs)
    assert all(b["start"] - a["end"] >= 0.8 - 1e-6 for a, b in zip(segs, segs[1:]))  # real pauses between utterances
    assert item["text"] == " ".join(s["text"] for s in segs)
    for s in segs:  # speech inside each utterance's span, silence in the pauses
        inside = audio[int(s["start"] * rate) : int(s["end"] * rate)]
        assert float(abs(inside).max()) > 0.05
    assert "short utterances" in plan["streaming"]["label"]


def _fake_result() -> dict:
    offline = {
        name: {"rtfx_bs1": 10.0 + i, "rtfx_conc8": 30.0 + i, "rtfx_longform": 25.0, "wer": 0.05, "wer_clips": 0.04, "wer_longform": 0.06, "peak_rss_mb": 1000.0 + i}
        for i, name in enumerate(["ours", "transformers", "faster-whisper-int8", "faster-whisper-fp32"])
    }
    streaming = [
        {"streams": n, "min_silence_ms": 500, "final_latency_p50_s": 0.6 * n, "final_latency_p95_s": 1.0 * n, "first_partial_latency_s": 0.9,
         "streaming_wer": 0.05, "offline_wer": 0.05, "wer_ratio": 1.0, "max_lag_s": 1.0, "lag_growth_s": 0.1 * n, "revisions": 0.0,
         "cpu_busy": 0.5, "realtime_ok": n <= 2}
        for n in (1, 2, 4, 8)
    ]
    # Staggered starts: within the latency goal, and real-time even at 8; neither may
    # count towards max_realtime_streams (that is the all-at-once figure).
    streaming += [
        {**run, "stagger_s": 1.7, "final_latency_p50_s": 0.7, "final_latency_p95_s": 1.2, "realtime_ok": True}
        for run in streaming if run["streams"] > 1
    ]
    return {
        "meta": {"quick": True, "model": "tiny.en", "machine": {"cores": 2}, "longform": []},
        "offline": offline,
        "streaming": streaming,
        "hallucination": {"nonspeech_words": 0, "nonspeech_streaming_words": 0, "nonspeech_streaming_partial_words": 0, "nonspeech_offline_words": 0, "nonspeech_clips": 23, "nonspeech_audio_s": 534.0},
        "nonspeech_words": 0,
        "errors": [],
    }


def test_report_ratios_goals_table_and_plot(tmp_path: Path) -> None:
    from bench import report

    out = _fake_result()
    report.finish(out)
    assert out["offline"]["faster-whisper-int8"]["ours_over_peer"]["rtfx_conc8"] == round(30 / 32, 3)
    assert out["max_realtime_streams"] == 2
    goals = {g["goal"].split(" (")[0]: g["met"] for g in out["goals"]}
    assert goals["our RTFx >= faster-whisper int8 at 8 concurrent requests"] is False
    assert goals["final latency p50 <= 0.8 s and p95 <= 1.5 s at 4 streams"] is False
    assert goals["final latency p50 <= 0.8 s and p95 <= 1.5 s at 4 streams staggered 1.7 s"] is True
    assert "streaming WER <= 1.1 x offline WER" in goals
    assert goals["no words on non-speech clips"] is True
    text = report.table(out)
    assert "faster-whisper-fp32" in text and "MISSED" in text and "GPU: skipped" in text
    assert "| 4 streams staggered 1.7 s |" in text
    path = tmp_path / "r.json"
    report.write(out, path)
    assert json.loads(path.read_text())["nonspeech_words"] == 0
    assert path.with_suffix(".png").stat().st_size > 10_000


@pytest.mark.slow
def test_bench_quick_smoke_run(tmp_path: Path, bench_set) -> None:
    """The real command, cut to the bone: our engine (eager) and faster-whisper int8,
    one 8 s stream. Checks the JSON's shape and that the figures are sane. Without the
    larger set it runs on the repository's tests/data (the subprocess inherits EVAL_DIR)."""
    out = tmp_path / "latest.json"
    cmd = [
        sys.executable, "-m", "bench", "--quick", "--eager",
        "--engines", "ours,faster-whisper-int8",
        "--streams", "1", "--stream-seconds", "8",
        "--out", str(out),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert not data["errors"], data["errors"]
    assert data["meta"]["quick"] is True
    for name in ("ours", "faster-whisper-int8"):
        rec = data["offline"][name]
        assert OFFLINE_KEYS <= set(rec)
        assert rec["rtfx_bs1"] > 0.5 and rec["rtfx_conc8"] > 0.5
        assert 0 <= rec["wer"] < 0.2
        assert 100 < rec["peak_rss_mb"] < 16_000
    assert data["offline"]["faster-whisper-int8"]["ours_over_peer"]["rtfx_conc8"] > 0
    (run,) = data["streaming"]
    assert STREAM_KEYS <= set(run) and run["streams"] == 1
    assert 0 < run["final_latency_p50_s"] < 10 and run["streaming_wer"] < 0.3
    assert isinstance(data["nonspeech_words"], int) and data["nonspeech_words"] <= 2
    assert "skipped" in data["gpu"]
    assert out.with_suffix(".png").stat().st_size > 10_000
    assert "Offline" in proc.stdout
