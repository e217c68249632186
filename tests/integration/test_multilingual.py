"""The multilingual embedded model (Whisper base): language detection and translation.

vLLM keeps its parallel state per process, so a second in-process engine can't live
beside the session's tiny.en one: these tests drive the base model through the CLI,
each call its own process, as a user would.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.datasets import require_eval_set
from evaluation import clips

ROOT = Path(__file__).resolve().parents[2]


def _basic_wer(reference: str, hypothesis: str) -> float:
    """WER with Whisper's basic (non-English) normalisation: lowercase, no punctuation."""
    import jiwer
    from whisper_normalizer.basic import BasicTextNormalizer

    norm = BasicTextNormalizer()
    return jiwer.wer(norm(reference), norm(hypothesis))


def _clip(lang: str):
    return next(c for c in clips(kind="speech", lang=lang, base=require_eval_set()) if c.duration < 25)


def _cli_json(path: Path, *args: str) -> dict:
    env = dict(os.environ, ENFORCE_EAGER="true", MODEL="embedded:base", KV_CACHE_MB="128")
    proc = subprocess.run(
        [sys.executable, "-m", "engine", "transcribe", str(path), "--format", "json", "--progress", "never", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.mark.slow
def test_detects_language_and_transcribes_in_it():
    clip = _clip("es")
    result = _cli_json(clip.path)
    assert result["language"] == "es"
    assert _basic_wer(clip.text, result["text"]) < 0.5, result["text"]
    assert result["segments"] and result["segments"][0]["start"] < 1.0


@pytest.mark.slow
def test_translates_to_english():
    clip = _clip("de")
    result = _cli_json(clip.path, "--task", "translate")
    words = re.findall(r"[a-zäöüß']+", result["text"].lower())
    assert result["language"] == "de"  # the source language, detected
    assert len(words) >= 5
    assert {"the", "a", "of", "to", "in", "and", "is", "you", "for"} & set(words), result["text"]
    assert not {"und", "die", "der", "das", "ist"} & set(words), result["text"]


def test_language_codes_are_checked():
    from engine.base import UnsupportedRequest
    from engine.models import resolve_model
    from engine.tokens import WhisperVocabulary
    from settings import Settings

    vocab = WhisperVocabulary.from_model_dir(Path(resolve_model("embedded:base", Path(Settings.from_env().model_cache))))
    assert vocab.multilingual and {"en", "de", "fr", "es", "ja"} <= set(vocab.language_ids)
    with pytest.raises(UnsupportedRequest, match="unsupported language"):
        vocab.language_id("xx")
    german = vocab.decoder_prompt(language="de", task="translate", prompt=None, timestamps=False)
    assert german == [vocab.sot, vocab.language_ids["de"], vocab.translate, vocab.no_timestamps]
