"""Offline comparison: one engine per subprocess, so peak memory figures do not mix.

The parent (`bench.__main__`) writes a plan (JSON) and starts
`python -m bench.offline PLAN ENGINE`; the child loads the engine, measures, and prints
one `BENCH {...}` line per finished section on stdout (logs go to stderr), so a section
that finished survives a later crash or timeout.

Figures of one engine:

* `rtfx_bs1`: audio seconds / wall seconds over the batch-1 clip subset, one request
  at a time;
* `rtfx_conc8`: the same over all English clips, in groups of 8 concurrent requests;
* `rtfx_longform`: the long-form files, one at a time, each engine's long-form path;
* `wer`: corpus WER (Whisper English normaliser) over the English clips (texts of the
  concurrent pass) and the long-form files together; `wer_clips`, `wer_longform` apart;
* `peak_rss_mb`: peak resident memory of the process and its live children
  (`bench.memory`: counted once), read after the offline passes.
"""

from __future__ import annotations

import os

os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from bench.memory import PeakMemory, peak_rss_mb  # noqa: E402

SR = 16_000
CONCURRENCY = 8


def emit(section: str, data: dict) -> None:
    print("BENCH " + json.dumps({"section": section, **data}, ensure_ascii=False), flush=True)


def load_items(items: list[dict]) -> list[tuple[np.ndarray, str, float]]:
    from evaluation import read_audio

    out = []
    for it in items:
        audio = read_audio(Path(it["path"]))
        if it.get("cut_s"):
            audio = audio[: int(it["cut_s"] * SR)]
        out.append((np.ascontiguousarray(audio), it["text"], len(audio) / SR))
    return out


def words(text: str) -> int:
    from evaluation import normalize

    return len(normalize(text).split())


def measure_offline(engine, plan: dict) -> dict:
    from evaluation import wer

    clips = load_items(plan["clips"])
    longs = load_items(plan["longform"])
    bs1 = [clips[i] for i in plan["bs1_indices"]]

    # Warm-up: first decodes allocate, and a compiled engine meets its batch shapes.
    t = time.monotonic()
    engine.one(clips[0][0])
    engine.batch([c[0] for c in clips[:CONCURRENCY]])
    warmup_s = time.monotonic() - t

    t = time.monotonic()
    for audio, _, _ in bs1:
        engine.one(audio)
    bs1_wall = time.monotonic() - t
    bs1_audio = sum(c[2] for c in bs1)

    texts: list[str] = []
    t = time.monotonic()
    for i in range(0, len(clips), CONCURRENCY):
        texts += engine.batch([c[0] for c in clips[i : i + CONCURRENCY]])
    conc_wall = time.monotonic() - t
    conc_audio = sum(c[2] for c in clips)

    long_texts: list[str] = []
    t = time.monotonic()
    for audio, _, _ in longs:
        long_texts.append(engine.long(audio))
    long_wall = time.monotonic() - t
    long_audio = sum(c[2] for c in longs)

    refs = [c[1] for c in clips] + [c[1] for c in longs]
    hyps = texts + long_texts
    return {
        "rtfx_bs1": round(bs1_audio / bs1_wall, 2),
        "rtfx_conc8": round(conc_audio / conc_wall, 2),
        "rtfx_longform": round(long_audio / long_wall, 2) if longs else None,
        "wer": round(wer(refs, hyps), 4),
        "wer_clips": round(wer([c[1] for c in clips], texts), 4),
        "wer_longform": round(wer([c[1] for c in longs], long_texts), 4) if longs else None,
        "peak_rss_mb": peak_rss_mb(),
        "audio_s": {"bs1": round(bs1_audio, 1), "conc8": round(conc_audio, 1), "longform": round(long_audio, 1)},
        "wall_s": {"warmup": round(warmup_s, 1), "bs1": round(bs1_wall, 1), "conc8": round(conc_wall, 1), "longform": round(long_wall, 1)},
        "clips": len(clips),
        "bs1_clips": len(bs1),
        "longform_files": len(longs),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    plan = json.loads(Path(argv[0]).read_text())
    name = argv[1]
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench import peers

    PeakMemory.start()
    t = time.monotonic()
    if name.startswith("gpu:"):
        engine = peers.gpu_engine(name, plan)
    else:
        engine = peers.load(name, plan["model"], eager=plan.get("eager"))
    load_s = time.monotonic() - t
    rss_loaded = peak_rss_mb()
    try:
        if "offline" in plan["sections"]:
            result = measure_offline(engine, plan)
            result.update(load_s=round(load_s, 1), rss_after_load_mb=rss_loaded, settings=getattr(engine, "settings", {}))
            emit("offline", {"engine": name, **result})
        if name == "ours" and "hallucination" in plan["sections"]:
            from bench.hallucination import measure_hallucination

            try:
                emit("hallucination", measure_hallucination(engine, plan))
            except Exception as exc:  # report it and go on with streaming
                emit("error", {"engine": "ours/hallucination", "error": f"{type(exc).__name__}: {exc}"[:400]})
        if name == "ours" and "streaming" in plan["sections"]:
            from bench.streaming_bench import measure_streaming

            try:
                for run in measure_streaming(engine, plan):
                    emit("streaming", run)
            except Exception as exc:
                emit("error", {"engine": "ours/streaming", "error": f"{type(exc).__name__}: {exc}"[:400]})
    finally:
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
