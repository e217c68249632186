"""What the first partial of an utterance costs: half a second of speech in a short window.

`python -m bench.first_partials [--limit N] [--out JSON]` decodes, for every English
speech clip of the evaluation set, what a live session sends as an utterance's first
partial (`streaming.options.SessionOptions.first_partial_s`: 0.1 s of the quiet before
the speech and 0.4 s of it) as a draft, on our engine, one at a time, and prints:
engine seconds per first partial (mean, p95, max), decodes per partial (a second one is
a redo), and how many first decodes ran to their token budget or were stopped as stuck.

Why: in the browser test a first partial of "Print..." looped one word in its 10 s
encoder window ("printing printing ...") to the token budget and was then redone on
the full window: 1.2-1.4 s of engine instead of ~0.2 s, for the decode every stream
sends first. The streaming benches' short-utterance set (trimmed TTS-like prompts)
rarely shows that shape, so it is measured here on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import numpy as np

SR = 16_000
PRE_ROLL_S = 0.1
SPEECH_S = 0.4


def first_partial_audio(audio: np.ndarray) -> np.ndarray:
    """0.1 s before the speech onset (silence where the clip has none) and 0.4 s of speech."""
    from bench.coverage import loud_span

    onset = loud_span(audio)[0]
    before = audio[max(0, onset - int(PRE_ROLL_S * SR)) : onset]
    quiet = np.zeros(int(PRE_ROLL_S * SR) - len(before), np.float32)
    return np.concatenate([quiet, before, audio[onset : onset + int(SPEECH_S * SR)]]).astype(np.float32)


async def run(limit: int | None) -> dict:
    from engine.base import DecodeRequest
    from engine.factory import create_engine
    from evaluation import clips, read_audio
    from settings import Settings

    engine = create_engine(Settings())
    runner = engine._runner
    real_generate = runner.generate
    decodes: list[dict] = []

    async def recording(prompt, params, priority=0):
        record = {"max_tokens": params.max_tokens, "tokens": 0, "finished": False}
        decodes.append(record)
        async for output in real_generate(prompt, params, priority):
            record["tokens"] += len(output.outputs[0].token_ids)
            record["finished"] = output.finished
            yield output

    runner.generate = recording
    chosen = clips(kind="speech", lang="en")[:limit]
    # Warm the engine's shapes first, so the first clip is not charged for it.
    await engine.transcribe(DecodeRequest(first_partial_audio(read_audio(chosen[0].path)), language="en", draft=True))
    rows = []
    for clip in chosen:
        audio = first_partial_audio(read_audio(clip.path))
        decodes.clear()
        t0 = time.perf_counter()
        result = await engine.transcribe(DecodeRequest(audio, language="en", draft=True))
        seconds = time.perf_counter() - t0
        # Audio the engine finds silent is answered without a decode.
        first = decodes[0] if decodes else {"tokens": 0, "max_tokens": 1, "finished": True}
        rows.append(
            {
                "clip": clip.path.stem,
                "seconds": round(seconds, 4),
                "decodes": len(decodes),
                "first_tokens": first["tokens"],
                "first_budget": first["max_tokens"],
                "ran_to_budget": first["tokens"] >= first["max_tokens"],
                "stopped": not first["finished"],
                "text": result.text,
            }
        )
    await engine.close()
    times = [r["seconds"] for r in rows]
    return {
        "clips": len(rows),
        "seconds_mean": round(float(np.mean(times)), 4),
        "seconds_p95": round(float(np.percentile(times, 95)), 4),
        "seconds_max": round(max(times), 4),
        "engine_seconds_total": round(sum(times), 3),
        "redone": sum(r["decodes"] > 1 for r in rows),
        "ran_to_budget": sum(r["ran_to_budget"] for r in rows),
        "stopped_stuck": sum(r["stopped"] for r in rows),
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="only the first N clips")
    parser.add_argument("--out", type=Path, default=Path("bench/results/first_partials.json"))
    args = parser.parse_args()
    summary = asyncio.run(run(args.limit))
    summary["meta"] = {"command": "python -m bench.first_partials", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1))
    print(
        f"{summary['clips']} first partials: engine s mean {summary['seconds_mean']:.3f}, p95 {summary['seconds_p95']:.3f}, "
        f"max {summary['seconds_max']:.3f}, total {summary['engine_seconds_total']:.1f}; redone {summary['redone']}, "
        f"ran to budget {summary['ran_to_budget']}, stopped as stuck {summary['stopped_stuck']}"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
