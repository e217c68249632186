"""The shared evaluation set (`../shared/eval`): clips, references and WER, one way everywhere.

Tests and benchmarks both score with Whisper's English normaliser, so a figure in a test
and the same figure in BENCHMARKS.md mean the same thing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def eval_dir() -> Path:
    return Path(os.environ.get("EVAL_DIR", ROOT.parent / "shared" / "eval"))


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


def clips(*, kind: str | None = None, lang: str | None = None) -> list[Clip]:
    base = eval_dir()
    out = []
    with open(base / "manifest.jsonl") as f:
        for line in f:
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


def longform_files() -> list[LongForm]:
    base = eval_dir()
    out = []
    with open(base / "longform.jsonl") as f:
        for line in f:
            d = json.loads(line)
            segments = d["segments"]
            if isinstance(segments, str):  # a path to <name>.segments.json
                with open(base / segments) as sf:
                    segments = json.load(sf)["segments"]
            out.append(LongForm(base / d["audio"], d["text"], float(d["duration"]), segments))
    return out


def read_audio(path: Path) -> np.ndarray:
    import soundfile

    audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    if rate != 16_000:
        raise ValueError(f"{path}: expected 16 kHz, got {rate}")
    return audio.mean(axis=1).astype(np.float32)


@lru_cache(maxsize=1)
def _normalizer():
    from whisper_normalizer.english import EnglishTextNormalizer

    return EnglishTextNormalizer()


def normalize(text: str) -> str:
    return " ".join(_normalizer()(text).split())


def wer(references: list[str], hypotheses: list[str]) -> float:
    """Corpus WER over normalised texts (pairs whose reference normalises to nothing are skipped)."""
    import jiwer

    pairs = [(normalize(r), normalize(h)) for r, h in zip(references, hypotheses)]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        return 0.0
    return jiwer.wer([r for r, _ in pairs], [h for _, h in pairs])
