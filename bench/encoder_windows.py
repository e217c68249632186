"""`python -m bench encoder-windows`: WER and speed of encoder bucket sets against the full 30 s window.

Each configuration runs in its own child process (`--child`), one after the other in one
run, so their figures share the machine's state and peak memory does not mix:

* `full`: stock Whisper, every clip padded to 30 s (ENCODER_WINDOW=full);
* bucket sets such as `5,10,15,20,30` (ENCODER_WINDOW=<set>);
* `faster-whisper-int8` (bench.peers), for speed only.

Per configuration: WER over all English clips of ../shared/eval (decoded 8 at a time)
and over the long-form files (the app's long-form path), also per duration band; RTFx
at batch 1 on clips of at most 10 s, RTFx 8-concurrent over all clips, peak RSS. WER
ratios are taken against `full` of the same run. Prints a table, writes JSON
(bench/results/encoder_windows.json by default).

Run it through /tmp/coord/engine-slot on the shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
SR = 16_000
CONCURRENCY = 8
SHORT_S = 10.0
#: Duration bands for the per-band WER (upper bounds, seconds).
BANDS = (5.0, 10.0, 15.0, 20.0, 30.0, float("inf"))
DEFAULT_CONFIGS = "full,5:10:15:20:30+1,10:15:20:30,faster-whisper-int8"
#: A bucket set passes when its WER is within this factor of the full window's.
WER_TOLERANCE = 1.02


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench encoder-windows", description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", default=DEFAULT_CONFIGS, help="comma list: full, bucket sets as 5:10:30, faster-whisper-int8")
    p.add_argument("--eager", action="store_true", help="our engine without torch.compile")
    p.add_argument("--quick", action="store_true", help="every 6th clip, long-form files cut at 60 s")
    p.add_argument("--longform-max-s", type=float, default=0.0, help="cut each long-form file after this many seconds (0: whole)")
    p.add_argument("--bs1-step", type=int, default=3, help="batch-1 pass: every Nth clip of at most 10 s")
    p.add_argument("--out", type=Path, default=RESULTS / "encoder_windows.json")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--plan", type=Path, help=argparse.SUPPRESS)
    return p


# -- the plan (what every child measures) ----------------------------------------------------


def make_plan(args: argparse.Namespace) -> dict:
    from evaluation.evalset import clips, longform_files

    en = clips(kind="speech", lang="en")
    if args.quick:
        en = en[::6]
    short = [i for i, c in enumerate(en) if c.duration <= SHORT_S]
    max_s = args.longform_max_s or (60.0 if args.quick else 0.0)
    longs = []
    for lf in longform_files():
        item = {"path": str(lf.path), "text": lf.text, "name": lf.path.stem}
        if max_s and lf.duration > max_s:
            item["cut_s"], item["text"] = _cut(lf, max_s)
        longs.append(item)
    return {
        "clips": [{"path": str(c.path), "text": c.text, "name": c.name, "duration": c.duration} for c in en],
        "bs1_indices": short[:: max(1, args.bs1_step)],
        "longform": longs,
        "eager": args.eager,
    }


def _cut(lf, max_s: float) -> tuple[float, str]:
    """End a long-form file in the pause after its last speech segment ending by `max_s`."""
    speech = [s for s in lf.segments if s.get("kind", "speech") == "speech"]
    done = [s for s in speech if s["end"] <= max_s] or speech[:1]
    last_end = max(s["end"] for s in done)
    later = [s["start"] for s in lf.segments if s["start"] >= last_end]
    cut = max(last_end, min(last_end + 0.8, min(later, default=lf.duration) - 0.05, lf.duration))
    return round(cut, 3), " ".join(s["text"] for s in done)


# -- one child: one configuration ------------------------------------------------------------


def _load(items: list[dict]) -> list:
    import numpy as np

    from evaluation.evalset import read_audio

    out = []
    for it in items:
        audio = read_audio(Path(it["path"]))
        if it.get("cut_s"):
            audio = audio[: int(it["cut_s"] * SR)]
        out.append(np.ascontiguousarray(audio))
    return out


def run_child(name: str, plan: dict) -> dict:
    from bench import peers
    from bench.memory import PeakMemory, peak_rss_mb

    PeakMemory.start()
    if name == "faster-whisper-int8":
        engine = peers.FasterWhisper("tiny.en", "int8")
    else:
        os.environ["ENCODER_WINDOW"] = "full" if name == "full" else name.replace(":", ",")
        engine = peers.Ours("tiny.en", eager=plan["eager"])
    rss_loaded = peak_rss_mb()
    try:
        clips = _load(plan["clips"])
        longs = _load(plan["longform"])
        # Warm-up: one clip per bucket size met later, then a batch.
        for seconds in (3, 8, 13, 18, 25):
            engine.one(clips[min(range(len(clips)), key=lambda i: abs(len(clips[i]) / SR - seconds))])
        engine.batch(clips[:CONCURRENCY])

        bs1 = [clips[i] for i in plan["bs1_indices"]]
        t = time.monotonic()
        for audio in bs1:
            engine.one(audio)
        bs1_wall = time.monotonic() - t

        texts: list[str] = []
        t = time.monotonic()
        for i in range(0, len(clips), CONCURRENCY):
            texts += engine.batch(clips[i : i + CONCURRENCY])
        conc_wall = time.monotonic() - t

        long_texts: list[str] = []
        t = time.monotonic()
        if name != "faster-whisper-int8":  # speed peer only: its long-form path is another algorithm
            for audio in longs:
                long_texts.append(engine.long(audio))
        long_wall = time.monotonic() - t
    finally:
        engine.close()
    return {
        "config": name,
        "settings": getattr(engine, "settings", {}),
        "texts": texts,
        "long_texts": long_texts,
        "rtfx_bs1_short": round(_seconds(bs1) / bs1_wall, 2),
        "rtfx_conc8": round(_seconds(clips) / conc_wall, 2),
        "rtfx_longform": round(_seconds(longs) / long_wall, 2) if long_texts else None,
        "wall_s": {"bs1": round(bs1_wall, 1), "conc8": round(conc_wall, 1), "longform": round(long_wall, 1)},
        "rss_after_load_mb": rss_loaded,
        "peak_rss_mb": peak_rss_mb(),
    }


# -- the parent: run every child, score, compare -------------------------------------------


def _seconds(audios: list) -> float:
    return sum(len(a) for a in audios) / SR


def score(plan: dict, rec: dict) -> dict:
    from evaluation.text import wer

    refs = [c["text"] for c in plan["clips"]]
    out = {"wer_clips": round(wer(refs, rec["texts"]), 4)}
    if rec["long_texts"]:
        out["wer_longform"] = {
            it["name"]: round(wer([it["text"]], [hyp]), 4) for it, hyp in zip(plan["longform"], rec["long_texts"])
        }
    bands = {}
    low = 0.0
    for high in BANDS:
        idx = [i for i, c in enumerate(plan["clips"]) if low < c["duration"] <= high]
        if idx:
            key = f"{low:g}-{high:g}s" if high != float("inf") else f">{low:g}s"
            bands[key] = {"clips": len(idx), "wer": round(wer([refs[i] for i in idx], [rec["texts"][i] for i in idx]), 4)}
        low = high
    out["wer_bands"] = bands
    return out


def compare(results: dict[str, dict]) -> dict:
    """WER ratios against `full` of the same run, and which bucket sets pass on every set."""
    full = results.get("full")
    if not full or "error" in full:
        return {}
    verdicts = {}
    for name, r in results.items():
        if name in ("full", "faster-whisper-int8") or "error" in r:
            continue
        ratios = {"clips": _ratio(r["wer_clips"], full["wer_clips"])}
        for lf, w in (r.get("wer_longform") or {}).items():
            ratios[lf] = _ratio(w, full["wer_longform"][lf])
        bands = {b: _ratio(v["wer"], full["wer_bands"][b]["wer"]) for b, v in r["wer_bands"].items()}
        verdicts[name] = {
            "wer_ratio": ratios,
            "wer_ratio_bands": bands,
            "passes": all(x <= WER_TOLERANCE for x in ratios.values()),
        }
    return verdicts


def _ratio(a: float, b: float) -> float:
    if b == 0:
        return 1.0 if a == 0 else float("inf")
    return round(a / b, 3)


def table(results: dict[str, dict], verdicts: dict) -> str:
    rows = [
        "| config | WER clips | WER long-form | ratio vs full (clips / long) | RTFx bs1 <=10 s | RTFx 8-conc | peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        if "error" in r:
            rows.append(f"| {name} | error: {r['error'][:80]} | | | | | |")
            continue
        longs = " / ".join(f"{v:.4f}" for v in (r.get("wer_longform") or {}).values()) or "-"
        v = verdicts.get(name)
        ratio = (
            " / ".join(f"{x:.3f}" for x in v["wer_ratio"].values()) + (" pass" if v["passes"] else " FAIL")
            if v
            else "-"
        )
        rows.append(
            f"| {name} | {r.get('wer_clips', '-')} | {longs} | {ratio} | {r['rtfx_bs1_short']} | {r['rtfx_conc8']} | {r['peak_rss_mb']} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sys.path.insert(0, str(ROOT))
    if args.child:
        plan = json.loads(args.plan.read_text())
        print("RESULT " + json.dumps(run_child(args.child, plan)), flush=True)
        return 0
    plan = make_plan(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plan_path = args.out.with_suffix(".plan.json")
    plan_path.write_text(json.dumps(plan))
    started = time.monotonic()
    results: dict[str, dict] = {}
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    for name in [c.strip() for c in args.configs.split(",") if c.strip()]:
        print(f"[encoder-windows] {name} ...", file=sys.stderr, flush=True)
        t = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "bench.encoder_windows", "--child", name, "--plan", str(plan_path)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800, check=False,
        )
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            results[name] = {"config": name, "error": f"exit {proc.returncode}: " + " | ".join(proc.stderr.strip().splitlines()[-3:])[:400]}
        else:
            rec = json.loads(line[7:])
            rec.update(score(plan, rec))
            rec["child_wall_s"] = round(time.monotonic() - t, 1)
            results[name] = rec
        print(f"[encoder-windows] {name}: {({k: v for k, v in results[name].items() if k not in ('texts', 'long_texts')})}", file=sys.stderr, flush=True)
        _write(args, argv, plan, results, started)  # a later config that dies keeps the earlier ones
    plan_path.unlink(missing_ok=True)
    out = _write(args, argv, plan, results, started)
    print(table(results, out["verdicts"]))
    print(f"\npassing (WER within {WER_TOLERANCE}x of full on clips and every long-form file): {', '.join(out['passing']) or 'none'}")
    print(f"wrote {args.out}")
    return 0


def _write(args: argparse.Namespace, argv: list[str] | None, plan: dict, results: dict, started: float) -> dict:
    verdicts = compare(results)
    passing = [n for n, v in verdicts.items() if v["passes"]]
    out = {
        "meta": {
            "command": "python -m bench encoder-windows " + " ".join(sys.argv[1:] if argv is None else argv),
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "compiled": not args.eager,
            "clips": len(plan["clips"]),
            "bs1_clips": len(plan["bs1_indices"]),
            "longform": [it["name"] + (f" (first {it['cut_s']} s)" if it.get("cut_s") else "") for it in plan["longform"]],
            "load_avg_at_end": [round(x, 2) for x in os.getloadavg()],
            "duration_s": round(time.monotonic() - started, 1),
            "wer_tolerance": WER_TOLERANCE,
        },
        "results": results,
        "verdicts": verdicts,
        "passing": passing,
    }
    args.out.write_text(json.dumps(out, indent=1, ensure_ascii=False))
    return out


if __name__ == "__main__":
    sys.exit(main())
