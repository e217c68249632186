"""Load with the turn model on: how many semantic-turn streams keep up, at what partial rate and memory.

    python -m bench.turns --load [--load-streams 1,8,16] [--turns 24] [--stagger 2.5] [--out FILE]

Issue 20's load targets: the Smart Turn model runs for every stream on the same CPU as
the engine, so the streaming figures must be taken with it loaded and asked. Per stream
count N (N streams of `bench.turns`' conversation, staggered by `--stagger` s, semantic
turns at eagerness auto, all on a real clock):

* `realtime_ok`: the streaming bench's thresholds (`bench.streaming_bench`): no errors, lag
  growth <= 2 s over the run and final p95 <= 3 s (decodes the guards drop are counted,
  not failed: on a conversation they are breaths and noise, not load);
* `partials_per_stream_s`: partial events per second of audio per stream, and
  `partial_rate_vs_1`: that over the single-stream run's (target at 8 streams >= 0.5);
* `peak_rss_mb`: the bench process's peak resident memory so far (`bench.memory`: engine,
  turn model and every session; target <= 2048);
* the turn model's calls and its share of one core per stream.

Each count's figures are ratios within one run; absolute capacity depends on the machine
being quiet (run it alone: other work on the cores lowers the stream count that keeps up).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from engine.base import SAMPLE_RATE


async def run_load(engine, conv, counts: list[int], stagger_s: float, out: str | None = None) -> list[dict]:
    """One record per stream count (`conv`: a `bench.turns.Conversation`)."""
    from bench.memory import peak_rss_mb
    from bench.streaming_bench import (
        REALTIME_MAX_LAG_GROWTH_S,
        REALTIME_MAX_P95_S,
        _lag_growth,
    )
    from streaming.harness import simulate
    from streaming.session import SessionOptions
    from streaming.turns import shared_detector

    peak_rss_mb()  # starts the sampler before the first stream
    detector = shared_detector()
    reference = " ".join(text for _, _, text in conv.turns)
    audio_s = len(conv.audio) / SAMPLE_RATE
    results: list[dict] = []
    single_rate: float | None = None
    for n in counts:
        stagger = stagger_s if n > 1 else 0.0
        lags: list[list[tuple[float, float]]] = [[] for _ in range(n)]

        def on_event(k: int, ev, t: float, lags=lags) -> None:
            if getattr(ev, "type", None) == "status":
                lags[k].append((t, float(ev.lag_s)))

        rows0, busy0 = detector.stats.rows, detector.stats.busy_s
        t0 = time.monotonic()
        summary = await simulate(
            engine, conv.audio, realtime=True, streams=n, options=SessionOptions(turn_detection="semantic"),
            reference=reference, on_event=on_event, stagger_s=stagger,
        )
        wall = time.monotonic() - t0
        growth = max((_lag_growth(s, audio_s + stagger * (n - 1)) for s in lags), default=0.0)
        p95 = summary.get("final_latency_p95_s")
        rate = (summary.get("partials") or 0) / audio_s  # the summary's counts are means per stream
        single_rate = rate if single_rate is None and n == 1 else single_rate
        rows, busy = detector.stats.rows - rows0, detector.stats.busy_s - busy0
        rec = {
            "streams": n,
            "stagger_s": stagger,
            "realtime_ok": bool(
                not summary.get("errors") and growth <= REALTIME_MAX_LAG_GROWTH_S
                and p95 is not None and p95 <= REALTIME_MAX_P95_S
            ),
            "errors": summary.get("errors"),
            "dropped_decodes": summary.get("dropped"),
            "lag_growth_s": growth,
            "max_lag_s": summary.get("max_lag_s"),
            "final_latency_p50_s": summary.get("final_latency_p50_s"),
            "final_latency_p95_s": p95,
            "partials_per_stream_s": round(rate, 3),
            "partial_rate_vs_1": round(rate / single_rate, 3) if single_rate else None,
            "wer": summary.get("wer"),
            "turn_calls": rows,
            "turn_core_share_per_stream": round(busy / (audio_s * n), 4) if rows else None,
            "peak_rss_mb": peak_rss_mb(),
            "wall_s": round(wall, 1),
        }
        print(json.dumps(rec), flush=True)
        results.append(rec)
        if out:
            Path(out).write_text(json.dumps({"load": results, "audio_s": round(audio_s, 1)}, indent=1))
    return results
