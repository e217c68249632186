"""float32 vs bfloat16 (the encoder alone, or all of it) on this CPU: one process per dtype, same clips, same files.

    python -m bench.cpu_dtype [--dtypes float32,bfloat16-encoder,bfloat16] [--out bench/results/cpu_dtype.json]

Per dtype (`CPU_DTYPE`, engine.vllm_engine.cpu_dtype_for; a CPU without AVX-512 BF16 / AMX
runs float32 whatever is asked, and the record says so): the engine's load time; one final
at a time over the first 40 English clips (ms per clip); all English clips 8 at a time
(RTFx); the first long-form file (RTFx); WER of the clips and of the file. Each dtype runs
in its own process (vLLM's dtype is fixed when the engine starts).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "cpu_dtype.json"


def measure() -> dict:
    """Runs in the child: the engine of this process' CPU_DTYPE."""
    import resource

    from bench.peers import Ours
    from evaluation import clips, longform_files, read_audio, wer

    rows = clips(kind="speech", lang="en")
    audios = [read_audio(c.path) for c in rows]
    t = time.monotonic()
    ours = Ours("tiny.en")
    load_s = time.monotonic() - t
    try:
        ours.one(audios[0])
        ours.batch(audios[:8])
        t = time.monotonic()
        for audio in audios[:40]:
            ours.one(audio)
        one_s = time.monotonic() - t
        texts: list[str] = []
        t = time.monotonic()
        for i in range(0, len(audios), 8):
            texts += ours.batch(audios[i : i + 8])
        batch_s = time.monotonic() - t
        long = longform_files()[0]
        long_audio = read_audio(long.path)
        t = time.monotonic()
        long_text = ours.long(long_audio)
        long_s = time.monotonic() - t
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "dtype": ours.engine.options.dtype,  # type: ignore[attr-defined]
            "encoder_dtype": ours.engine.options.encoder_dtype or ours.engine.options.dtype,  # type: ignore[attr-defined]
            "asked": os.environ.get("CPU_DTYPE", "auto"),
            "load_s": round(load_s, 1),
            "one_final_ms": round(1000 * one_s / 40),
            "conc8_rtfx": round(sum(len(a) for a in audios) / 16000 / batch_s, 2),
            "long_file": long.path.name,
            "long_rtfx": round(len(long_audio) / 16000 / long_s, 2),
            "wer_clips": round(wer([c.text for c in rows], texts), 4),
            "wer_long": round(wer([long.text], [long_text]), 4),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        }
    finally:
        ours.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cpu_dtype", description=__doc__.splitlines()[0])
    p.add_argument("--dtypes", default="float32,bfloat16-encoder,bfloat16")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(measure()), flush=True)
        return 0
    records = []
    for dtype in args.dtypes.split(","):
        env = dict(os.environ, CPU_DTYPE=dtype, VLLM_LOGGING_LEVEL="WARNING")
        out = subprocess.run([sys.executable, "-m", "bench.cpu_dtype", "--child"], env=env, capture_output=True, text=True)
        lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
        if not lines:
            raise SystemExit(f"CPU_DTYPE={dtype}: no result\n{out.stderr[-2000:]}")
        records.append(json.loads(lines[-1][len("RESULT "):]))
        print(json.dumps(records[-1]), flush=True)
    Path(args.out).write_text(json.dumps({"machine": f"{os.cpu_count()} CPU cores (this sandbox)", "runs": records}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
