"""Feed audio files through the full streaming pipeline, as live streams would, and score it.

Each simulated stream is a `Session` fed 20 ms frames of 48 kHz int16 audio (what FastRTC
delivers), on a real-time clock (`realtime=True`: frame k is fed when its last sample
would have been spoken) or as fast as the pipeline takes them. Several streams share
the one engine, as connections of one server do.

Figures (per stream, then pooled over streams):

* `final_latency_*`: wall time from the utterance's true end in the audio to its final
  event. The true end is the end of the matching speech segment of a `segments.json`
  when one is given, else the end of speech the VAD saw (the final's `end_s` minus the
  segmenter's end padding). Real-time runs only (otherwise the events' own `latency_s`).
* `first_partial_latency_s`: wall time from an utterance's speech onset (same rule) to
  its first partial event with text (median over utterances; `_p95_s` too).
* `max_lag_s`: the session's largest lag (see `streaming.session`).
* `partials`, `finals`, `revisions`, `errors`, `dropped`: counts, mean per stream.
* `wer`: word error rate of the transcript (finals) against `reference`.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Callable

import numpy as np

from engine.base import SAMPLE_RATE, DecodeRequest
from streaming.events import Event, TranscriptEvent
from streaming.session import Session, SessionOptions

__all__ = ["simulate", "to_frames"]

FRAME_MS = 20
INPUT_RATE = 48_000
_MATCH_S = 1.0  # how far a true segment edge may be from the VAD's to count as the same


def to_frames(audio_16k: np.ndarray, *, rate: int = INPUT_RATE, frame_ms: int = FRAME_MS) -> list[np.ndarray]:
    """16 kHz float audio -> list of (1, n) int16 frames at `rate`, as FastRTC sends them."""
    import soxr

    audio = np.asarray(audio_16k, dtype=np.float32).reshape(-1)
    x = soxr.resample(audio, SAMPLE_RATE, rate, quality="HQ") if rate != SAMPLE_RATE else audio
    pcm = (np.clip(x, -1.0, 32767 / 32768) * 32768.0).astype(np.int16)
    n = rate * frame_ms // 1000
    return [pcm[i : i + n].reshape(1, -1) for i in range(0, len(pcm), n)]


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(float(np.percentile(np.asarray(values, dtype=np.float64), q)), 3)


def _true_edge(estimate: float, candidates: list[float]) -> float:
    if candidates:
        best = min(candidates, key=lambda c: abs(c - estimate))
        if abs(best - estimate) <= _MATCH_S:
            return best
    return estimate


async def _run_stream(
    index: int,
    engine,
    frames: list[np.ndarray],
    *,
    realtime: bool,
    options: SessionOptions,
    start_delay_s: float,
    on_event: Callable[[int, Event, float], None] | None,
    t_zero: float,
) -> tuple[Session, list[tuple[float, Event]], float]:
    if start_delay_s > 0:
        await asyncio.sleep(start_delay_s)
    session = Session(engine, options)
    log: list[tuple[float, Event]] = []

    async def consume() -> None:
        async for ev in session.events():
            t = time.monotonic()
            log.append((t, ev))
            if on_event is not None:
                on_event(index, ev, t - t_zero)

    consumer = asyncio.ensure_future(consume())
    t0 = time.monotonic()
    frame_s = frames[0].shape[-1] / INPUT_RATE if frames else FRAME_MS / 1000
    try:
        for i, frame in enumerate(frames):
            if realtime:
                delay = t0 + (i + 1) * frame_s - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif i % 5 == 0:
                await asyncio.sleep(0)  # let decodes and events run
            session.feed(frame, INPUT_RATE)
        await session.finish()
    except BaseException:
        await session.close()
        raise
    finally:
        await consumer
    return session, log, t0


def _stream_summary(
    session: Session,
    log: list[tuple[float, Event]],
    t0: float,
    *,
    realtime: bool,
    reference: str | None,
    segments: list[dict] | None,
    options: SessionOptions,
) -> tuple[dict, list[float], list[float]]:
    seg_opts = options.segmenter_options()
    pad_after = seg_opts.pad_after_ms / 1000
    pad_before = seg_opts.pad_before_ms / 1000
    speech = [s for s in (segments or []) if s.get("kind", "speech") == "speech"]
    true_ends = [float(s["end"]) for s in speech]
    true_starts = [float(s["start"]) for s in speech]

    final_lat: list[float] = []
    first_partial: list[float] = []
    seen_partial: set[int] = set()
    for t, ev in log:
        if not isinstance(ev, TranscriptEvent):
            continue
        if ev.type == "final":
            if realtime:
                end = _true_edge(max(ev.start_s, ev.end_s - pad_after), true_ends)
                end = min(end, ev.end_s)
                final_lat.append(t - (t0 + end))
            else:
                final_lat.append(ev.latency_s)
        elif ev.utterance_id not in seen_partial and ev.text:
            seen_partial.add(ev.utterance_id)
            if realtime:
                onset = _true_edge(ev.start_s + (pad_before if ev.start_s > 0 else 0.0), true_starts)
                first_partial.append(t - (t0 + onset))
    stats = session.stats
    out: dict[str, object] = {
        "audio_s": round(session.audio_s, 3),
        "final_latency_p50_s": _percentile(final_lat, 50),
        "final_latency_p95_s": _percentile(final_lat, 95),
        "first_partial_latency_s": _percentile(first_partial, 50),
        "first_partial_latency_p95_s": _percentile(first_partial, 95),
        "max_lag_s": round(stats.max_lag_s, 3),
        "partials": stats.partials,
        "finals": stats.finals,
        "revisions": stats.revisions,
        "errors": stats.errors,
        "dropped": stats.dropped,
        "final_partial_interval_s": stats.partial_interval_s,
    }
    if reference is not None:
        from evaluation.text import wer

        out["wer"] = round(wer([reference], [session.transcript.text]), 4)
    return out, final_lat, first_partial


async def simulate(
    engine,
    audio_16k: np.ndarray,
    *,
    realtime: bool = True,
    streams: int = 1,
    options: SessionOptions | None = None,
    reference: str | None = None,
    on_event: Callable[[int, Event, float], None] | None = None,
    segments: list[dict] | None = None,
    stagger_s: float = 0.0,
    warmup: bool = True,
) -> dict:
    """Run `streams` sessions on the same audio; returns the summary dict.

    `on_event(stream_index, event, seconds_since_start)` sees every event as it comes.
    `segments` (a `segments.json` list) gives true utterance edges for the latencies.
    `stagger_s` starts stream k that many seconds after stream k-1 (0: all at once,
    the worst case: every stream's utterances end at the same moment).
    """
    options = options or SessionOptions()
    frames = to_frames(audio_16k)
    if warmup:
        # A server is warm when streams arrive; the first decodes of a fresh engine are
        # slower (allocations, caches), which would only measure start-up.
        clip = np.array(audio_16k[: SAMPLE_RATE * 3], dtype=np.float32, copy=True)
        for _ in range(2):
            try:
                await engine.transcribe(DecodeRequest(clip, language=options.language, task=options.task))
            except Exception:
                break
    t_zero = time.monotonic()
    runs = await asyncio.gather(
        *[
            _run_stream(
                k,
                engine,
                frames,
                realtime=realtime,
                options=options,
                start_delay_s=k * stagger_s,
                on_event=on_event,
                t_zero=t_zero,
            )
            for k in range(max(1, streams))
        ]
    )
    wall = time.monotonic() - t_zero
    per_stream = []
    all_final: list[float] = []
    all_first: list[float] = []
    for session, log, t0 in runs:
        summary, fl, fp = _stream_summary(
            session, log, t0, realtime=realtime, reference=reference, segments=segments, options=options
        )
        per_stream.append(summary)
        all_final += fl
        all_first += fp

    def mean(key: str) -> float | None:
        vals = [s[key] for s in per_stream if s.get(key) is not None]
        return round(float(np.mean(vals)), 4) if vals else None

    audio_s = len(audio_16k) / SAMPLE_RATE
    out: dict[str, object] = {
        "streams": len(per_stream),
        "realtime": realtime,
        "audio_s": round(audio_s, 3),
        "wall_s": round(wall, 3),
        "rtf": round(wall / audio_s, 3) if audio_s else None,
        "final_latency_p50_s": _percentile(all_final, 50),
        "final_latency_p95_s": _percentile(all_final, 95),
        "first_partial_latency_s": _percentile(all_first, 50),
        "first_partial_latency_p95_s": _percentile(all_first, 95),
        "max_lag_s": max((float(s["max_lag_s"]) for s in per_stream), default=0.0),
        "partials": mean("partials"),
        "finals": mean("finals"),
        "revisions": mean("revisions"),
        "errors": mean("errors"),
        "dropped": mean("dropped"),
        "turn_checks": sum(session.stats.turn_checks for session, _, _ in runs),
        "turn_wait_s": round(sum(session.stats.turn_wait_s for session, _, _ in runs), 3),
        "options": {
            "min_silence_ms": options.min_silence_ms,
            "turn_detection": options.turn_detection,
            "eagerness": options.eagerness,
            "partial_interval_s": options.partial_interval_s,
            "vad_threshold": options.vad_threshold,
            "use_prompt": options.use_prompt,
            "speculative_final": options.speculative_final,
        },
        "per_stream": per_stream,
    }
    if reference is not None:
        out["wer"] = mean("wer")
    return {k: v for k, v in out.items() if not (isinstance(v, float) and math.isnan(v))}
