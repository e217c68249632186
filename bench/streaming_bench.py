"""Streaming: N simulated real-time streams of a long-form excerpt through the full pipeline.

Every stream is a `Session` (resampling, VAD, segmenter, partial and final decodes on
the shared engine, guards, LocalAgreement) fed 20 ms frames of 48 kHz audio on a real
clock by `streaming.harness.simulate`. Each count runs twice: all N streams started
together (the worst case: their utterances end at the same moments, so N finals queue
for the engine at once), and staggered, stream k starting `stagger_s` x k later (as
independent speakers do; `stagger_s` in the record). Per run:

* `final_latency_p50_s` / `_p95_s`: true utterance end (from `segments.json`) to final;
* `first_partial_latency_s`: speech onset to the first partial with text (median);
* `max_lag_s`: the largest lag of any stream; `lag_growth_s`: over streams, the largest
  (max lag in the last third of the run) - (max lag in the first third): > 0 and growing
  with the run's length means the engine does not keep up;
* `streaming_wer` (mean over streams) vs `offline_wer` (the same excerpt through
  `transcribe()` on the same engine), `wer_ratio` = streaming / offline;
* `revisions`: committed words later changed (mean per stream; goal 0);
* `cpu_busy`: process CPU time / (wall time x cores): 1.0 means both cores saturated;
* `engine_busy`: share of the wall time the in-process engine spent in vLLM (taking
  requests in, stepping): near 1.0 the engine is full, even where `cpu_busy` reads
  lower (a step's Python parts run on one core); None for other runners;
* `realtime_ok`: no errors or dropped audio, lag growth <= 2 s and final p95 <= 3 s.
"""

from __future__ import annotations

import os
import time


from bench.offline import load_items

REALTIME_MAX_LAG_GROWTH_S = 2.0
REALTIME_MAX_P95_S = 3.0


def _lag_growth(series: list[tuple[float, float]], duration: float) -> float:
    early = [lag for t, lag in series if t <= duration / 3]
    late = [lag for t, lag in series if t > 2 * duration / 3]
    if not early or not late:
        return 0.0
    return round(max(late) - max(early), 3)


def measure_streaming(engine, plan: dict):
    """Yields one dict per stream count. `engine` is a `bench.peers.Ours`."""
    from evaluation import wer
    from streaming.harness import simulate
    from streaming.session import SessionOptions

    cfg = plan["streaming"]
    (audio, reference, duration), = load_items([cfg["item"]])
    segments = cfg["segments"]
    offline_text = engine.long(audio.copy())
    offline_wer = round(wer([reference], [offline_text]), 4)
    cores = os.cpu_count() or 1
    stagger = float(cfg.get("stagger_s", 0.0))
    runs = [(n, 0.0) for n in cfg["stream_counts"]]
    runs += [(n, stagger) for n in cfg.get("staggered_counts", [])] if stagger > 0 else []
    for k, (n, stagger_s) in enumerate(runs):
        lags: list[list[tuple[float, float]]] = [[] for _ in range(n)]
        finals0: list[str] = []

        def on_event(stream: int, ev, t: float, lags=lags, finals0=finals0) -> None:
            kind = getattr(ev, "type", None)
            if kind == "status":
                lags[stream].append((t, float(ev.lag_s)))
            elif kind == "final" and stream == 0 and ev.text:
                finals0.append(ev.text)

        options = SessionOptions(language=engine.language, min_silence_ms=cfg["min_silence_ms"])
        runner = getattr(engine.engine, "_runner", None)
        busy0 = getattr(runner, "busy_s", None)
        cpu0, t0 = os.times(), time.monotonic()
        try:
            summary = engine.run(
                simulate(
                    engine.engine,
                    audio.copy(),
                    realtime=True,
                    streams=n,
                    options=options,
                    reference=reference,
                    segments=segments,
                    on_event=on_event,
                    warmup=(k == 0),
                    stagger_s=stagger_s,
                ),
                timeout=duration * cfg.get("timeout_factor", 2.5) + stagger_s * (n - 1) + 60,
            )
        except Exception as exc:  # a timeout or a crash: report it, go on with the next count
            yield {"streams": n, "stagger_s": stagger_s, "error": f"{type(exc).__name__}: {exc}"[:300], "realtime_ok": False, "offline_wer": offline_wer}
            continue
        cpu1, wall = os.times(), time.monotonic() - t0
        busy = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / max(1e-9, wall * cores)
        engine_busy = None if busy0 is None else round((runner.busy_s - busy0) / max(1e-9, wall), 3)
        growth = max((_lag_growth(s, duration + stagger_s * (n - 1)) for s in lags), default=0.0)
        p95 = summary.get("final_latency_p95_s")
        swer = summary.get("wer")
        ok = (
            not summary.get("errors")
            and not summary.get("dropped")
            and growth <= REALTIME_MAX_LAG_GROWTH_S
            and p95 is not None
            and p95 <= REALTIME_MAX_P95_S
        )
        yield {
            "streams": n,
            "stagger_s": stagger_s,
            "audio_s": round(duration, 1),
            "min_silence_ms": cfg["min_silence_ms"],
            "final_latency_p50_s": summary.get("final_latency_p50_s"),
            "final_latency_p95_s": p95,
            "first_partial_latency_s": summary.get("first_partial_latency_s"),
            "first_partial_latency_p95_s": summary.get("first_partial_latency_p95_s"),
            "streaming_wer": swer,
            "offline_wer": offline_wer,
            "wer_ratio": round(swer / offline_wer, 3) if swer is not None and offline_wer > 0 else None,
            "max_lag_s": summary.get("max_lag_s"),
            "lag_growth_s": growth,
            "revisions": summary.get("revisions"),
            "partials": summary.get("partials"),
            "finals": summary.get("finals"),
            "errors": summary.get("errors"),
            "dropped": summary.get("dropped"),
            "wall_s": summary.get("wall_s"),
            "cpu_busy": round(busy, 3),
            "engine_busy": engine_busy,
            "realtime_ok": bool(ok),
            "per_stream_wer": [s.get("wer") for s in summary.get("per_stream", [])],
            "text_stream0": " ".join(finals0),
            "offline_text": offline_text,
        }
