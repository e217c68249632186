"""Live speaker labels: each final's voice, "Speaker 1", "Speaker 2", ... (issue 19).

A stream's finals are embedded one by one (the utterance's audio, engine/speakers'
voice encoder, in a worker thread while the final decodes) and assigned online: the
nearest speaker heard so far when close enough, else a new one. Labels are given in
order of first appearance and never change, so a label once shown stays.

A short utterance (under MIN_NEW_SPEAKER_S of audio) embeds too little voice to be told
apart reliably: it joins the nearest speaker heard so far and never starts a new one,
which keeps a one-voice stream one speaker.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field

import numpy as np

from engine.base import SAMPLE_RATE
from engine.speakers.cluster import LIVE_SIMILARITY, OnlineSpeakers

log = logging.getLogger(__name__)

#: Audio an utterance needs before its voice may count as a new speaker (seconds).
MIN_NEW_SPEAKER_S = 1.5


def speaker_label(index: int) -> str:
    """What the page and the events show for speaker `index` (0-based)."""
    return f"Speaker {index + 1}"


def embed(audio: np.ndarray) -> np.ndarray:
    """One utterance's voice embedding (the process's shared encoder; synchronous)."""
    from engine.speakers.encoder import shared_encoder

    return shared_encoder().utterance(np.asarray(audio, dtype=np.float32))


def _load() -> None:
    from engine.speakers.encoder import shared_encoder

    try:
        shared_encoder()
    except Exception as exc:  # noqa: BLE001 -- said once here; each final then goes without a label
        log.warning("speaker labels are off: %s", exc)


def preload() -> None:
    """Load the encoder (seconds, once per process) while the stream's first words are
    spoken, so the first final does not wait for it."""
    threading.Thread(target=_load, name="speaker-encoder-load", daemon=True).start()


@dataclass
class LiveSpeakers:
    """One stream's speakers. `start(audio)` early (the embedding runs while the final
    decodes), then `label(task, seconds)` in utterance order."""

    similarity: float = LIVE_SIMILARITY
    _online: OnlineSpeakers = field(init=False)

    def __post_init__(self) -> None:
        self._online = OnlineSpeakers(self.similarity)
        preload()

    def start(self, audio: np.ndarray) -> asyncio.Task:
        """The utterance's embedding, computed in a worker thread."""
        return asyncio.ensure_future(asyncio.to_thread(embed, np.array(audio, dtype=np.float32, copy=True)))

    async def label(self, task: asyncio.Task, seconds: float) -> str | None:
        """The final's label (None when the embedding failed: the final is shown without one)."""
        try:
            embedding = await task
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 -- a missing encoder never costs the final its text
            return None
        return speaker_label(self._online.assign(embedding, may_create=seconds >= MIN_NEW_SPEAKER_S))
