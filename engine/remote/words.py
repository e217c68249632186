"""Word times for the remote engine: the endpoint's own, else ours from local weights, else none.

An endpoint asked for `timestamp_granularities=["word"]` may answer `words` (OpenAI,
faster-whisper servers, this app's API): they are read in `parsing.py` and passed on.
Where it answers none (vLLM's server gives none for Whisper), the words are timed here
by the same teacher-forced aligner the in-process engine uses (engine/aligner.py), on
the text the endpoint returned, if that model's weights are on this machine:
`REMOTE_ALIGN_MODEL` (a directory, an embedded name, or a hub id already in the local
cache; nothing is downloaded). Otherwise the words stay empty and the result says why
(`WORDS_UNAVAILABLE`): never times that nobody measured.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import numpy as np

from engine.base import Word

log = logging.getLogger(__name__)

#: What a response says when the endpoint gave no word times and none could be computed here.
WORDS_UNAVAILABLE = (
    "word times unavailable: the remote endpoint returned none and no local copy of its model's weights "
    "is configured (REMOTE_ALIGN_MODEL)"
)
#: The encoder window the local aligner uses for a remote window (what the endpoint's Whisper sees).
REMOTE_WINDOW_S = 30.0


def local_model_dir(spec: str, cache_dir: Path) -> Path | None:
    """The local Whisper directory (weights and tokenizer) for `spec`, or None when its
    weights are not on this machine. Never downloads."""
    spec = (spec or "").strip()
    if not spec:
        return None
    from engine.models import embedded_ct2_dir, resolve_model

    try:
        if embedded_ct2_dir(spec, cache_dir) is not None or Path(spec).expanduser().is_dir():
            path = Path(resolve_model(spec, cache_dir))
        else:
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(spec, local_files_only=True))
    except Exception as exc:  # noqa: BLE001 - not in the cache, not a Whisper directory: no local words
        log.info("no local weights for %r to time remote words: %s", spec, exc)
        return None
    has_weights = any(path.glob("*.safetensors")) or any(path.glob("pytorch_model*.bin"))
    return path if has_weights and (path / "tokenizer.json").exists() else None


class LocalWordTimer:
    """Times the words of a text the endpoint returned for a window, on local weights."""

    def __init__(self, model_dir: Path) -> None:
        from engine.tokens import WhisperVocabulary

        self.model_dir = model_dir
        self.vocab = WhisperVocabulary.from_model_dir(model_dir)

    async def words(self, audio: np.ndarray, text: str, *, language: str | None, task: str, offset: float) -> list[Word]:
        from engine.aligner import AlignJob, aligner_for

        text = text.strip()
        if not text:
            return []
        vocab = self.vocab
        aligner = await asyncio.to_thread(aligner_for, self.model_dir, vocab.tokenizer.decode, vocab.eot, "cpu")
        if vocab.multilingual and language is None:
            return []  # the endpoint did not say which language: no prefix to align with
        prefix = vocab.decoder_prompt(language=language, task=task, prompt=None, timestamps=False)  # type: ignore[arg-type]
        tokens = vocab.tokenizer.encode(" " + text, add_special_tokens=False).ids
        job = AlignJob(audio, prefix, tokens, offset, language, REMOTE_WINDOW_S)
        return await aligner.words(job)
