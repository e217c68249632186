"""Word times: accuracy against constructed truth, agreement with faster-whisper, cost.

`python -m bench.word_times [--limit N] [--eval-dir DIR] [--long FILE]`

Each English speech clip is placed between measured stretches of silence (a faint
seeded noise floor), so where its speech starts and ends in the joined audio is known
from the audio itself (the clip's first and last frame within 30 dB of its peak, plus
the silence before it). Our engine (vLLM + the teacher-forced aligner, engine/aligner.py)
and faster-whisper `word_timestamps=True` on the same tiny.en weights (its CTranslate2
checkpoint, float32) transcribe the same audio in the same run. Printed and saved to
bench/results/word_times.json:

* share of clips whose first word starts within 0.10 s of the onset and whose last
  word ends within 0.15 s of the offset, median |onset error| and |offset error|;
* agreement with faster-whisper: median |Δ start| and |Δ end| over words of clips whose
  word lists match;
* calibration: how often words under `LOW_CONFIDENCE` are wrong (not matched in the
  reference text) against words above it;
* cost: engine seconds per final with word times off and on (each clip decoded both
  ways, alternating), and one long file off and on.
"""

from __future__ import annotations

import os

os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")

import argparse  # noqa: E402
import difflib  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from engine.word_times import LOW_CONFIDENCE  # noqa: E402 - what the page underlines; calibrated here

SR = 16_000
ONSET_TOLERANCE_S = 0.10
OFFSET_TOLERANCE_S = 0.15
#: Speech is where a 10 ms frame is within this many dB of the clip's loudest frame.
SPEECH_BELOW_PEAK_DB = 30.0
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "word_times.json"


def speech_edges(audio: np.ndarray) -> tuple[float, float]:
    """(onset, offset) of the clip's speech in seconds: first and last loud 10 ms frame."""
    hop = SR // 100
    n = len(audio) // hop
    frames = audio[: n * hop].reshape(n, hop).astype(np.float64)
    db = 10 * np.log10((frames**2).mean(axis=1) + 1e-12)
    loud = np.flatnonzero(db > max(db.max() - SPEECH_BELOW_PEAK_DB, -60.0))
    return loud[0] * hop / SR, (loud[-1] + 1) * hop / SR


def constructed(clip: np.ndarray, index: int) -> tuple[np.ndarray, float, float]:
    """The clip between 0.5-1.3 s of silence before and 0.4-1.0 s after (a -70 dBFS noise
    floor, seeded), with the speech's onset and offset in the joined audio."""
    rng = np.random.default_rng(index)
    before, after = 0.5 + 0.2 * (index % 5), 0.4 + 0.15 * (index % 5)
    floor = 10 ** (-70 / 20)
    pad = lambda s: (rng.standard_normal(int(s * SR)) * floor).astype(np.float32)  # noqa: E731
    onset, offset = speech_edges(clip)
    return np.concatenate([pad(before), clip.astype(np.float32), pad(after)]), before + onset, before + offset


def norm(word: str) -> str:
    return re.sub(r"[^\w']", "", word.lower())


def wrong_flags(words: list[str], reference: str) -> list[bool]:
    """For each hypothesis word, whether it is absent from the reference's alignment."""
    hyp = [norm(w) for w in words]
    ref = [norm(w) for w in reference.split()]
    right = [False] * len(hyp)
    for block in difflib.SequenceMatcher(a=hyp, b=ref, autojunk=False).get_matching_blocks():
        for k in range(block.size):
            right[block.a + k] = True
    return [not r for r in right]


def clips(eval_dir: Path, limit: int | None) -> list[dict]:
    rows = [json.loads(line) for line in (eval_dir / "manifest.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("lang") == "en" and r.get("kind", "speech") == "speech"]
    return rows[:limit] if limit else rows


def edge_scores(results: list[dict], key: str) -> dict:
    onset = [abs(r[key]["first_start"] - r["onset"]) for r in results if r[key]["first_start"] is not None]
    offset = [abs(r[key]["last_end"] - r["offset"]) for r in results if r[key]["last_end"] is not None]
    both = [
        r[key]["first_start"] is not None
        and abs(r[key]["first_start"] - r["onset"]) <= ONSET_TOLERANCE_S
        and abs(r[key]["last_end"] - r["offset"]) <= OFFSET_TOLERANCE_S
        for r in results
    ]
    return {
        "clips": len(results),
        "share_both_edges_within_tolerance": round(sum(both) / max(1, len(both)), 3),
        "share_onset_within_0.10": round(sum(e <= ONSET_TOLERANCE_S for e in onset) / max(1, len(results)), 3),
        "share_offset_within_0.15": round(sum(e <= OFFSET_TOLERANCE_S for e in offset) / max(1, len(results)), 3),
        "median_onset_error_s": round(statistics.median(onset), 3) if onset else None,
        "median_offset_error_s": round(statistics.median(offset), 3) if offset else None,
    }


def summary_of(words: list[tuple[str, float, float, float]]) -> dict:
    return {
        "words": words,
        "first_start": words[0][1] if words else None,
        "last_end": words[-1][2] if words else None,
    }


def unsnapped(engine: object, audio: np.ndarray, words: list) -> list:
    """The same words aligned again without snapping to the VAD's speech edges (what
    the snap is measured against); outside the timed passes."""
    from engine.aligner import AlignJob, aligner_for

    if not words:
        return []
    vocab = engine.vocab  # type: ignore[attr-defined]
    aligner = aligner_for(engine._model_dir, vocab.tokenizer.decode, vocab.eot, "cpu")  # type: ignore[attr-defined]
    tokens = vocab.tokenizer.encode("".join(w.word for w in words), add_special_tokens=False).ids
    prefix = vocab.decoder_prompt(language="en", task="transcribe", prompt=None, timestamps=False)
    window_s = engine._window.seconds_for(len(audio))  # type: ignore[attr-defined]
    return aligner.align([AlignJob(audio, prefix, tokens, 0.0, "en", window_s, snap=False)])[0]


def cost_ab(ours, audios: list[np.ndarray], long_audio: np.ndarray) -> dict:
    """Engine seconds with word times off, on with the aligner's own encoder pass, and on
    reusing vLLM's encoder output (engine/encoder_outputs.py), the three in rotating order
    per clip so drift on a shared machine hits all alike; then the long file three ways."""
    from engine.base import DecodeRequest
    from engine.encoder_outputs import SHARED

    from engine.aligner import _aligners

    modes = ("off", "own_encoder", "reuse")

    def timed(audio: np.ndarray, mode: str) -> float:
        SHARED.enabled = mode == "reuse"
        SHARED.clear()
        # Each mode decodes a copy scaled by its own 1e-4 (the same words), so vLLM's caches
        # of an earlier mode's identical audio (processor, encoder) cannot serve it.
        audio = audio * np.float32(1.0 + 1e-4 * modes.index(mode))
        t = time.perf_counter()
        ours.run(ours.engine.transcribe(DecodeRequest(audio, language="en", word_timestamps=mode != "off")))
        return time.perf_counter() - t

    per_clip: dict[str, list[float]] = {m: [] for m in modes}
    for i, audio in enumerate(audios):
        for k in range(3):
            mode = modes[(i + k) % 3]
            per_clip[mode].append(timed(audio, mode))
    minutes = len(long_audio) / SR / 60
    per_file = {mode: timed(long_audio, mode) / minutes for mode in modes}
    SHARED.enabled = True
    aligner = next(iter(_aligners.values()))
    out: dict = {"clips": len(audios), "windows_reused": aligner.reused, "windows_encoded": aligner.encoded}
    for mode in modes:
        out[f"final_median_s_{mode}"] = round(statistics.median(per_clip[mode]), 3)
        out[f"long_s_per_minute_{mode}"] = round(per_file[mode], 2)
    for mode in modes[1:]:
        out[f"final_extra_share_{mode}"] = round(sum(per_clip[mode]) / sum(per_clip["off"]) - 1, 3)
        out[f"long_extra_share_{mode}"] = round(per_file[mode] / per_file["off"] - 1, 3)
    return out


def main() -> None:
    from bench.peers import FasterWhisper, Ours
    from engine.audio import load_audio
    from engine.base import DecodeRequest
    from tests.datasets import eval_set_missing  # the shared set when present, else the repository's own

    parser = argparse.ArgumentParser(prog="python -m bench.word_times", description=__doc__.split("\n\n")[0])
    parser.add_argument("--eval-dir", default=None, help="manifest.jsonl + clips (default ../shared/eval, else tests/data)")
    parser.add_argument("--limit", type=int, default=None, help="first N English clips only")
    parser.add_argument("--long", default=None, help="a long file for the per-file cost (default: the set's first long-form file)")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument(
        "--cost-only", action="store_true",
        help="only the cost A/B: off, on with the aligner's own encoder, on reusing vLLM's encoder output",
    )
    args = parser.parse_args()
    eval_dir = Path(args.eval_dir) if args.eval_dir else (ROOT / "tests" / "data" if eval_set_missing() else ROOT.parent / "shared" / "eval")
    rows = clips(eval_dir, args.limit)
    print(f"{len(rows)} English clips from {eval_dir}", flush=True)

    ours = Ours("tiny.en")
    if args.cost_only:
        long_file = Path(args.long) if args.long else eval_dir / json.loads((eval_dir / "longform.jsonl").read_text().splitlines()[0])["audio"]
        ours.one(np.zeros(SR, dtype=np.float32) + 1e-3)  # warm-up
        ours.run(ours.engine.transcribe(DecodeRequest(np.zeros(SR, dtype=np.float32) + 1e-3, language="en", word_timestamps=True)))
        audios = [constructed(load_audio(str(eval_dir / row["audio"])), i)[0] for i, row in enumerate(rows)]
        report = {"machine": f"{os.cpu_count()} CPU cores (this sandbox)", "long_file": long_file.name,
                  "cost_ab": cost_ab(ours, audios, load_audio(str(long_file)))}
        ours.close()
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1))
        print(json.dumps(report, indent=1))
        return
    fw = FasterWhisper("tiny.en", "float32")
    results, cost_off, cost_on = [], [], []
    ours.one(np.zeros(SR, dtype=np.float32) + 1e-3)  # warm-up
    for i, row in enumerate(rows):
        audio, onset, offset = constructed(load_audio(str(eval_dir / row["audio"])), i)
        t0 = time.perf_counter()
        ours.run(ours.engine.transcribe(DecodeRequest(audio, language="en")))
        t1 = time.perf_counter()
        result = ours.run(ours.engine.transcribe(DecodeRequest(audio, language="en", word_timestamps=True)))
        t2 = time.perf_counter()
        cost_off.append(t1 - t0)
        cost_on.append(t2 - t1)
        segments, _ = fw.model.transcribe(audio, language="en", beam_size=1, vad_filter=False, word_timestamps=True)
        fw_words = [(w.word, round(w.start, 3), round(w.end, 3), round(w.probability, 4)) for s in segments for w in s.words]
        our_words = [(w.word, w.start, w.end, w.probability) for w in result.words]
        raw_words = [(w.word, w.start, w.end, w.probability) for w in unsnapped(ours.engine, audio, result.words)]
        results.append(
            {
                "audio": row["audio"],
                "onset": round(onset, 3),
                "offset": round(offset, 3),
                "reference": row["text"],
                "ours": summary_of(our_words),
                "ours_unsnapped": summary_of(raw_words),
                "faster_whisper": summary_of(fw_words),
            }
        )
        if (i + 1) % 10 == 0:
            print(f"  {i + 1}/{len(rows)} clips", flush=True)

    # Agreement with faster-whisper where both gave the same words.
    d_start, d_end = [], []
    for r in results:
        a, b = r["ours"]["words"], r["faster_whisper"]["words"]
        if [norm(w[0]) for w in a] == [norm(w[0]) for w in b]:
            d_start += [abs(x[1] - y[1]) for x, y in zip(a, b)]
            d_end += [abs(x[2] - y[2]) for x, y in zip(a, b)]
    # Calibration: wrong-word rate under and over the threshold.
    low, high = [], []
    for r in results:
        words = r["ours"]["words"]
        for w, wrong in zip(words, wrong_flags([w[0] for w in words], r["reference"])):
            (low if w[3] < LOW_CONFIDENCE else high).append(wrong)
    rate = lambda xs: sum(xs) / len(xs) if xs else None  # noqa: E731

    long_file = Path(args.long) if args.long else eval_dir / json.loads((eval_dir / "longform.jsonl").read_text().splitlines()[0])["audio"]
    long_audio = load_audio(str(long_file))
    t0 = time.perf_counter()
    ours.run(ours.engine.transcribe(DecodeRequest(long_audio, language="en")))
    t1 = time.perf_counter()
    long_result = ours.run(ours.engine.transcribe(DecodeRequest(long_audio, language="en", word_timestamps=True)))
    t2 = time.perf_counter()
    minutes = len(long_audio) / SR / 60
    ours.close()

    report = {
        "machine": f"{os.cpu_count()} CPU cores (this sandbox)",
        "eval_dir": str(eval_dir),
        "ours": edge_scores(results, "ours"),
        "ours_unsnapped": edge_scores(results, "ours_unsnapped"),
        "faster_whisper": edge_scores(results, "faster_whisper"),
        "agreement_with_faster_whisper": {
            "clips_with_same_words": sum(
                [norm(w[0]) for w in r["ours"]["words"]] == [norm(w[0]) for w in r["faster_whisper"]["words"]] for r in results
            ),
            "median_abs_delta_start_s": round(statistics.median(d_start), 3) if d_start else None,
            "median_abs_delta_end_s": round(statistics.median(d_end), 3) if d_end else None,
        },
        "calibration": {
            "threshold": LOW_CONFIDENCE,
            "words_below": len(low),
            "words_above": len(high),
            "wrong_rate_below": rate(low),
            "wrong_rate_above": rate(high),
            "ratio": (rate(low) / rate(high)) if low and high and rate(high) else None,
        },
        "cost": {
            "final_median_s_off": round(statistics.median(cost_off), 3),
            "final_median_s_on": round(statistics.median(cost_on), 3),
            "final_extra_share": round(sum(cost_on) / sum(cost_off) - 1, 3),
            "long_file": str(long_file.name),
            "long_file_minutes": round(minutes, 2),
            "long_s_per_minute_off": round((t1 - t0) / minutes, 2),
            "long_s_per_minute_on": round((t2 - t1) / minutes, 2),
            "long_extra_share": round((t2 - t1) / (t1 - t0) - 1, 3),
            "long_words": len(long_result.words),
        },
        "clips": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1, ensure_ascii=False))
    print(json.dumps({k: v for k, v in report.items() if k != "clips"}, indent=1))
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
