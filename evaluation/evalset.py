"""An evaluation set on disk: clips with references (`manifest.jsonl`) and long-form files
(`longform.jsonl`), 16 kHz audio.

Two sets share this format: the small one inside the repository (`tests/data`, used by the
default test run) and the larger optional one, `../shared/eval` beside the checkout or
`EVAL_DIR` (benchmarks and the tests that need more audio). `eval_dir()` names the larger
one; every reader takes `base=` for another set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.base import SAMPLE_RATE


def eval_dir() -> Path:
    """The larger evaluation set: `EVAL_DIR`, else `../shared/eval` beside the checkout (it may not exist)."""
    from settings import eval_dir as configured

    return configured()


#: The small set inside the repository (a fresh clone always has it).
REPOSITORY_SET = Path(__file__).resolve().parents[1] / "tests" / "data"


def available_set() -> Path:
    """The larger set where it exists, else the repository's own: for benches that need some
    real speech and must also run in a fresh clone without ../shared (CI may be one)."""
    larger = eval_dir()
    return larger if (larger / "manifest.jsonl").is_file() else REPOSITORY_SET


@dataclass(frozen=True)
class Clip:
    path: Path
    text: str
    lang: str
    duration: float
    kind: str

    @property
    def name(self) -> str:
        return self.path.stem


def clips(*, kind: str | None = None, lang: str | None = None, base: Path | None = None) -> list[Clip]:
    """The clips of a set's manifest, optionally only one kind (`speech`, `nonspeech`, ...) or language."""
    base = eval_dir() if base is None else Path(base)
    out = []
    with open(base / "manifest.jsonl") as f:
        for line in f:
            if not line.strip():
                continue
            d = json.loads(line)
            clip = Clip(base / d["audio"], d["text"], d["lang"], float(d["duration"]), d["kind"])
            if (kind is None or clip.kind == kind) and (lang is None or clip.lang == lang):
                out.append(clip)
    return out


@dataclass(frozen=True)
class LongForm:
    path: Path
    text: str
    duration: float
    segments: list[dict]


def longform_files(base: Path | None = None) -> list[LongForm]:
    """A set's long-form files with their reference and timed segments (speech and inserts)."""
    base = eval_dir() if base is None else Path(base)
    out = []
    with open(base / "longform.jsonl") as f:
        for line in f:
            if not line.strip():
                continue
            d = json.loads(line)
            segments = d["segments"]
            if isinstance(segments, str):  # a path to <name>.segments.json
                with open(base / segments) as sf:
                    segments = json.load(sf)["segments"]
            out.append(LongForm(base / d["audio"], d["text"], float(d["duration"]), segments))
    return out


def read_audio(path: Path) -> np.ndarray:
    """A set's 16 kHz file as mono float32 (a set holds 16 kHz audio only; anything else is an error)."""
    import soundfile

    audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    if rate != SAMPLE_RATE:
        raise ValueError(f"{path}: expected {SAMPLE_RATE} Hz, got {rate}")
    return audio.mean(axis=1).astype(np.float32)
