"""End of turn: silence 500 ms vs silence 200 ms vs semantic turns, on a conversation.

    python -m bench.turns [--turns 40] [--configs silence500,silence200,semantic] [--streams 1,4]
    python -m bench.turns --load [--load-streams 1,8,16]   (load with the turn model: bench.turn_load)

The set (built here from the evaluation clips, seeded): English clips of 1.5-9 s, one
turn each, trimmed to their speech (energy) and joined with turn gaps of 0.7-1.3 s of
faint noise. About a third of the turns hold a mid-sentence pause: half the clips longer
than 2.5 s are split at their longest internal pause (in their middle 30-75 %, 40 ms or
more: between words), and that pause stretched to 0.3-0.8 s. The true turn ends are known to the sample.

Per configuration, every stream fed on a real clock (`streaming.harness.simulate`):

* `ttf_p50_s` / `ttf_p95_s`: time to final, the public STT benchmark's definition: from
  the true end of a turn's speech to the final that ends there (turns whose final ended
  elsewhere, i.e. merged ones, are not timed);
* `splits_per_100`: finals that end where no turn ended (inside a turn), per 100 turns;
* `merges_per_100`: turn ends that fall inside a final (two turns in one), per 100;
* `wer`: the transcript (finals) against the turns' text;
* `turn_ms_per_call`, `turn_core_share_per_stream`: the turn model's wall time per
  utterance scored, and its time over the audio streamed (a share of one core).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.base import SAMPLE_RATE
from streaming.events import TranscriptEvent

_END_TOLERANCE_S = (0.35, 0.6)  # a final "ends a turn" when its speech end is this close to it
CONFIGS = {
    "silence500": {"turn_detection": "silence", "min_silence_ms": 500},
    "silence200": {"turn_detection": "silence", "min_silence_ms": 200},
    "semantic": {"turn_detection": "semantic", "eagerness": "auto"},
    "semantic_high": {"turn_detection": "semantic", "eagerness": "high"},
    "semantic_low": {"turn_detection": "semantic", "eagerness": "low"},
    # issue 20: the turn model's "finished" alone, without the speculative final's full stop
    "semantic_notext": {"turn_detection": "semantic", "eagerness": "auto", "turn_text_check": False},
    # issue 20: the speculative final starts once the pad after the speech has arrived
    "semantic_pad50": {"turn_detection": "semantic", "eagerness": "auto", "pad_after_ms": 50},
    "silence500_pad50": {"turn_detection": "silence", "min_silence_ms": 500, "pad_after_ms": 50},
    # Live word times (issue 18, `LIVE_WORD_TIMES`): the same silence rule, finals with words.
    "silence500_words": {"turn_detection": "silence", "min_silence_ms": 500, "word_times": True},
    # The default turn rule (semantic) with word times on every final.
    "semantic_words": {"turn_detection": "semantic", "eagerness": "auto", "word_times": True},
    # ... and partials with words too (`LIVE_PARTIAL_WORD_TIMES`).
    "silence500_partial_words": {"turn_detection": "silence", "min_silence_ms": 500, "word_times": True, "partial_words": True},
}


@dataclass
class Conversation:
    audio: np.ndarray
    turns: list[tuple[float, float, str]]  # (speech start, speech end, text) in seconds
    mid_pauses: int


def _frame_rms(audio: np.ndarray, hop: int = 160) -> np.ndarray:
    n = len(audio) // hop
    return np.sqrt(np.mean(audio[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)


def _trim(audio: np.ndarray) -> np.ndarray:
    """The clip from its first to its last frame within 35 dB of its loudest."""
    rms = _frame_rms(audio)
    loud = np.nonzero(rms > rms.max() * 10 ** (-35 / 20))[0]
    return audio[loud[0] * 160 : (loud[-1] + 1) * 160]


def _split_point(audio: np.ndarray) -> int | None:
    """Centre (sample) of the longest quiet run in the middle 30-75 % of a trimmed clip."""
    rms = _frame_rms(audio)
    quiet = rms < rms.max() * 10 ** (-30 / 20)
    lo, hi = int(len(rms) * 0.3), int(len(rms) * 0.75)
    best, best_len, run_start = None, 0, None
    for i in range(lo, hi):
        if quiet[i] and run_start is None:
            run_start = i
        if (not quiet[i] or i == hi - 1) and run_start is not None:
            length = i - run_start
            if length > best_len:
                best, best_len = (run_start + i) // 2, length
            run_start = None
    return best * 160 if best is not None and best_len >= 4 else None


def build_conversation(n_turns: int, seed: int = 20) -> Conversation:
    from evaluation.evalset import clips, read_audio

    rng = np.random.default_rng(seed)
    pool = [c for c in clips(kind="speech", lang="en") if 1.5 <= c.duration <= 9.0]
    rng.shuffle(pool)
    noise = lambda s: rng.normal(0, 3e-4, int(s * SAMPLE_RATE)).astype(np.float32)
    parts = [noise(0.8)]
    t = 0.8
    turns: list[tuple[float, float, str]] = []
    mid = 0
    for c in pool[:n_turns]:
        audio = _trim(read_audio(c.path))
        split = _split_point(audio) if len(audio) > 2.5 * SAMPLE_RATE and rng.random() < 0.5 else None
        start = t
        if split is not None:
            pause = float(rng.uniform(0.3, 0.8))
            pieces = [audio[:split], noise(pause), audio[split:]]
            mid += 1
        else:
            pieces = [audio]
        for p in pieces:
            parts.append(p)
            t += len(p) / SAMPLE_RATE
        turns.append((start, t, c.text))
        gap = float(rng.uniform(0.7, 1.3))
        parts.append(noise(gap))
        t += gap
    parts.append(noise(2.0))
    return Conversation(np.concatenate(parts), turns, mid)


def score(
    finals: list[tuple[float, TranscriptEvent]], t0: float, turns: list[tuple[float, float, str]], pad_after_s: float = 0.15
) -> dict:
    """Splits, merges and time to final of one stream's finals (event wall time, event);
    `pad_after_s`: the session's `pad_after_ms` (a final's end_s is its speech end + this)."""
    ends = [e for _, e, _ in turns]
    lo, hi = _END_TOLERANCE_S
    splits = merges = 0
    ttf: list[float] = []
    timed: set[int] = set()
    for t, ev in finals:
        speech_end = ev.end_s - pad_after_s
        near = [i for i, e in enumerate(ends) if e - lo <= speech_end <= e + hi]
        inside = [i for i, e in enumerate(ends) if ev.start_s < e < speech_end - lo]
        merges += len(inside)
        if not near:
            splits += 1
            continue
        i = near[0]
        if i not in timed:
            timed.add(i)
            ttf.append(t - (t0 + ends[i]))
    return {"splits": splits, "merges": merges, "ttf": ttf}


def _aligner_passes() -> tuple[int, int]:
    """Windows the word aligner ran and skipped so far (all aligners of the process)."""
    from engine.aligner import _aligners

    workers = [a.worker for a in _aligners.values()]
    return sum(w.aligned for w in workers), sum(w.skipped for w in workers)


async def run_config(engine, conv: Conversation, name: str, streams: int, stagger_s: float) -> dict:
    from streaming.harness import simulate
    from streaming.session import SessionOptions
    from streaming.turns import eagerness_of, shared_detector

    options = SessionOptions(**CONFIGS[name])
    passes0 = _aligner_passes()
    detector = shared_detector()
    rows0, busy0 = detector.stats.rows, detector.stats.busy_s
    logs: dict[int, list[tuple[float, TranscriptEvent]]] = {k: [] for k in range(streams)}

    def on_event(k: int, ev, t: float) -> None:
        if isinstance(ev, TranscriptEvent) and ev.type == "final":
            logs[k].append((t, ev))

    reference = " ".join(text for _, _, text in conv.turns)
    summary = await simulate(
        engine, conv.audio, realtime=True, streams=streams, options=options, reference=reference,
        on_event=on_event, stagger_s=stagger_s,
    )
    passes = [now - before for now, before in zip(_aligner_passes(), passes0)]
    splits = merges = 0
    ttf: list[float] = []
    for k in range(streams):
        s = score(logs[k], k * stagger_s, conv.turns, options.pad_after_ms / 1000)
        splits += s["splits"]
        merges += s["merges"]
        ttf += s["ttf"]
    n_turns = len(conv.turns) * streams
    rows = detector.stats.rows - rows0
    busy = detector.stats.busy_s - busy0
    audio_s = len(conv.audio) / SAMPLE_RATE
    pct = lambda q: round(float(np.percentile(ttf, q)), 3) if ttf else None
    return {
        "config": name,
        "min_silence_ms": options.effective_min_silence_ms(),
        "turn_threshold": eagerness_of(options.eagerness).threshold if options.turn_detection == "semantic" else None,
        "streams": streams,
        "stagger_s": stagger_s,
        "turns": n_turns,
        "ttf_p50_s": pct(50),
        "ttf_p95_s": pct(95),
        "timed_turns": len(ttf),
        "splits_per_100": round(100 * splits / n_turns, 2),
        "merges_per_100": round(100 * merges / n_turns, 2),
        "wer": summary.get("wer"),
        "finals": summary.get("finals"),
        "finals_with_words": sum(1 for k in range(streams) for _, ev in logs[k] if ev.words),
        "aligner_passes": passes[0],  # speculative finals' included
        "aligner_skipped": passes[1],  # cancelled before their turn
        "max_lag_s": summary.get("max_lag_s"),
        "partials_per_stream_s": round((summary.get("partials") or 0) / audio_s, 3),
        "turn_calls": rows,
        "turn_ms_per_call": round(1000 * busy / rows, 1) if rows else None,
        "turn_core_share_per_stream": round(busy / (audio_s * streams), 4) if rows else None,
        "audio_s": round(audio_s, 1),
    }


async def main_async(args: argparse.Namespace) -> list[dict]:
    from engine.factory import create_engine
    from settings import Settings

    conv = build_conversation(args.turns, args.seed)
    print(f"conversation: {len(conv.turns)} turns, {conv.mid_pauses} with a mid-sentence pause, "
          f"{len(conv.audio) / SAMPLE_RATE:.0f} s", file=sys.stderr, flush=True)
    settings = Settings.from_env()
    settings.engine = "vllm"
    settings.model = args.model
    engine = await asyncio.to_thread(create_engine, settings)
    from streaming.turns import shared_detector

    shared_detector().load()
    if any(CONFIGS[name].get("word_times") for name in args.configs.split(",")):
        # The aligner loads on the first request for word times: load it before timing.
        from engine.base import DecodeRequest

        await engine.transcribe(DecodeRequest(conv.audio[: 5 * SAMPLE_RATE], language="en", word_timestamps=True))
    results = []
    try:
        if args.load:  # issue 20's load figures (bench.turn_load), instead of the A/B below
            from bench.turn_load import run_load

            return await run_load(engine, conv, [int(s) for s in args.load_streams.split(",")], args.stagger, args.out)
        for streams in [int(s) for s in args.streams.split(",")]:
            for name in args.configs.split(","):
                t = time.monotonic()
                rec = await run_config(engine, conv, name, streams, args.stagger if streams > 1 else 0.0)
                rec["wall_s"] = round(time.monotonic() - t, 1)
                print(json.dumps(rec), flush=True)
                results.append(rec)
                if args.out:
                    Path(args.out).write_text(json.dumps({"turns": len(conv.turns), "mid_pauses": conv.mid_pauses,
                                                          "model": args.model, "results": results}, indent=1))
    finally:
        runner = getattr(engine, "_runner", None)
        if runner is not None:
            runner.shutdown()
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.turns", description=__doc__.splitlines()[0])
    p.add_argument("--turns", type=int, default=40)
    p.add_argument("--seed", type=int, default=20)
    p.add_argument("--configs", default="silence500,silence200,semantic")
    p.add_argument("--streams", default="1", help="comma-separated stream counts")
    p.add_argument("--stagger", type=float, default=2.5, help="seconds between stream starts")
    p.add_argument("--model", default="embedded:tiny.en")
    p.add_argument("--out", default=None, help="JSON file for the results")
    p.add_argument("--load", action="store_true", help="load figures with the turn model on (bench.turn_load): "
                   "streams that keep up, partial rate vs one stream, peak RSS")
    p.add_argument("--load-streams", default="1,8,16", help="--load: comma-separated stream counts (1 first: the rate's base)")
    asyncio.run(main_async(p.parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
