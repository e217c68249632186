"""Word error rate after Whisper's English normaliser (`jiwer`, `whisper-normalizer`).

Both libraries are imported only when a score is asked for, so code that merely can
score (the streaming simulator) starts without them; a missing one gives a message
that says what to install.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

MISSING = "{name} is needed to score transcripts (WER): pip install {name} (it comes with requirements/app.txt)"


def _require(module: str, name: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(MISSING.format(name=name)) from exc


@lru_cache(maxsize=1)
def _normalizer() -> Any:
    return _require("whisper_normalizer.english", "whisper-normalizer").EnglishTextNormalizer()


def normalize(text: str) -> str:
    """Whisper's English normalisation (case, punctuation, numbers, spellings), spaces collapsed."""
    return " ".join(_normalizer()(text).split())


def wer(references: list[str], hypotheses: list[str]) -> float:
    """Corpus WER over normalised texts (pairs whose reference normalises to nothing are skipped)."""
    jiwer = _require("jiwer", "jiwer")
    pairs = [(normalize(r), normalize(h)) for r, h in zip(references, hypotheses)]
    pairs = [(r, h) for r, h in pairs if r]
    if not pairs:
        return 0.0
    return jiwer.wer([r for r, _ in pairs], [h for _, h in pairs])


def require_scoring() -> None:
    """Fail now, with what to install, if a WER could not be computed later."""
    _require("jiwer", "jiwer")
    _require("whisper_normalizer.english", "whisper-normalizer")
