"""Speech coverage of long recordings: the constructed list case, the coverage figure, dropped runs.

`python -m bench.coverage [--engines ours,faster-whisper-int8] [--out JSON]` transcribes
every long-form file of the evaluation set and the constructed phone-menu case (built here
from the set's clips) with each engine's own long-form path and prints, per file:
WER, speech coverage (Silero VAD speech seconds inside some returned segment / all VAD
speech seconds; segments widened by 0.5 s, Whisper's timestamps being guesses) and the runs
of 5 or more reference words that faster-whisper transcribes and we drop.

The list case is what issue 11 describes: ~28 s of phone-menu options joined with 150 ms
gaps (a window the decoder may end early), inside a longer file with speech and pauses
before and after. Tests build it at test time with `list_case()`.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SR = 16_000
#: (clip name or pause seconds): sentences, pauses, then the continuous list, then more.
LIST_CASE_LAYOUT: tuple[str | float, ...] = (
    0.5, "agent-user", 1.0, "invalid", 1.0, "auth-incorrect", 1.5,
    "conf-adminmenu-menu8", 0.15, "play_help",  # ~27.7 s of list with a 150 ms gap
    1.5, "dir-instr", 1.0, "demo-thanks", 0.5,
)


@dataclass(frozen=True)
class Case:
    """A constructed recording with its reference sentences (start, end, text)."""

    name: str
    audio: np.ndarray = field(repr=False)
    sentences: list[tuple[float, float, str]]

    @property
    def text(self) -> str:
        return " ".join(t for _, _, t in self.sentences)


def loud_span(audio: np.ndarray, floor_db: float = 45.0) -> tuple[int, int]:
    """First and one-past-last sample within `floor_db` of the clip's loudest 20 ms."""
    power = np.convolve(audio.astype(np.float64) ** 2, np.ones(320) / 320, "same")
    level = 10 * np.log10(power + 1e-12)
    loud = np.flatnonzero(level > level.max() - floor_db)
    return (int(loud[0]), int(loud[-1]) + 1) if len(loud) else (0, len(audio))


def trimmed(audio: np.ndarray, floor_db: float = 45.0) -> np.ndarray:
    """The clip without its quiet edges, so the joins are as short as the gaps say."""
    start, end = loud_span(audio, floor_db)
    return audio[start:end]


def list_case(eval_dir: Path | None = None, layout: tuple[str | float, ...] = LIST_CASE_LAYOUT) -> Case:
    """Build the phone-menu case from the evaluation set's asterisk_en clips."""
    from evaluation.evalset import clips, read_audio

    by_name = {c.path.stem.split("__", 1)[-1]: c for c in clips(base=eval_dir) if c.path.stem.startswith("asterisk_en__")}
    parts, sentences, t = [], [], 0.0
    for item in layout:
        if isinstance(item, (int, float)):
            parts.append(np.zeros(int(item * SR), np.float32))
            t += float(item)
            continue
        clip = by_name[item]
        audio = trimmed(read_audio(clip.path))
        sentences.append((round(t, 3), round(t + len(audio) / SR, 3), clip.text))
        parts.append(audio)
        t += len(audio) / SR
    return Case("constructed_phone_menu_list", np.concatenate(parts).astype(np.float32), sentences)


def speech_coverage(audio: np.ndarray, segments: list, collar: float = 0.5) -> float:
    """VAD speech seconds inside some segment (widened by `collar`) / all VAD speech seconds."""
    from engine.coverage import coverage
    from engine.vad import speech_regions

    return coverage(speech_regions(audio), segments, collar=collar)


def dropped_runs(reference: str, ours: str, theirs: str, min_run: int = 5) -> list[str]:
    """Runs of >= `min_run` reference words that `theirs` transcribes and `ours` drops.

    Words are compared after Whisper's English normaliser; a reference word counts as
    transcribed when it is matched in the alignment (difflib) of the reference with the
    hypothesis. A word both engines miss is not our loss.
    """
    from evaluation.text import normalize

    ref = normalize(reference).split()

    def matched(hyp: str) -> set[int]:
        sm = difflib.SequenceMatcher(None, ref, normalize(hyp).split(), autojunk=False)
        return {b.a + k for b in sm.get_matching_blocks() for k in range(b.size)}

    ours_ok, theirs_ok = matched(ours), matched(theirs)
    runs, run = [], []
    for i, word in enumerate(ref):
        if i in theirs_ok and i not in ours_ok:
            run.append(word)
            continue
        if i not in theirs_ok and i not in ours_ok and run:
            continue  # both missed it: neither breaks nor extends our run
        if len(run) >= min_run:
            runs.append(" ".join(run))
        run = []
    if len(run) >= min_run:
        runs.append(" ".join(run))
    return runs


# -- the benchmark -------------------------------------------------------------------------


def _files() -> list[tuple[str, np.ndarray, str]]:
    from evaluation.evalset import longform_files, read_audio

    out = [(lf.path.stem, read_audio(lf.path), lf.text) for lf in longform_files()]
    case = list_case()
    out.append((case.name, case.audio, case.text))
    return out


def _ours(files: list) -> list[dict]:
    from bench.peers import Ours
    from engine.base import DecodeRequest

    eng = Ours("tiny.en", eager=True)
    rows = []
    try:
        for name, audio, _ in files:
            t0 = time.perf_counter()
            r = eng.run(eng.engine.transcribe(DecodeRequest(audio, language="en")))
            rows.append({"file": name, "text": r.text, "seconds": time.perf_counter() - t0,
                         "segments": [(s.start, s.end, s.text, s.kind) for s in r.segments]})
    finally:
        eng.close()
    return rows


def _faster_whisper(files: list) -> list[dict]:
    from bench.peers import FasterWhisper

    fw = FasterWhisper("tiny.en", "int8")
    rows = []
    for name, audio, _ in files:
        t0 = time.perf_counter()
        segments, _ = fw.model.transcribe(audio, **fw._opts())
        segs = [(s.start, s.end, s.text.strip(), "speech") for s in segments]
        rows.append({"file": name, "text": " ".join(s[2] for s in segs), "seconds": time.perf_counter() - t0,
                     "segments": segs})
    return rows


def main(argv: list[str] | None = None) -> int:
    from engine.base import Segment
    from evaluation.text import wer

    p = argparse.ArgumentParser(prog="python -m bench.coverage", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "coverage.json")
    args = p.parse_args(argv)
    files = _files()
    results = {"ours": _ours(files), "faster-whisper-int8": _faster_whisper(files)}
    table = []
    for i, (name, audio, ref) in enumerate(files):
        row: dict = {"file": name, "duration_s": round(len(audio) / SR, 1)}
        for engine, rows in results.items():
            segs = [Segment(a, b, t, k) for a, b, t, k in rows[i]["segments"]]
            row[engine] = {
                "wer": round(wer([ref], [rows[i]["text"]]), 4),
                "coverage": round(speech_coverage(audio, segs), 4),
                "gaps": sum(1 for s in segs if s.kind == "gap"),
                "seconds": round(rows[i]["seconds"], 1),
            }
        row["dropped_runs"] = dropped_runs(ref, results["ours"][i]["text"], results["faster-whisper-int8"][i]["text"])
        table.append(row)
        print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"files": table, "texts": results}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
