"""Live speaker labels: each final's voice, "Speaker 1", "Speaker 2", ... (issue 19).

A stream's finals are embedded one by one (1.6 s windows of the utterance's audio, the
voice encoder of engine/speakers, in a worker thread while the final decodes) and labelled
in utterance order by `StableSpeakers`: all the stream's windows so far are clustered as a
file's are, and the final takes the label its cluster was shown with before, or the next
one. Labels are given in order of first appearance and never change once shown. A new
voice gets its own label once it has spoken LIVE_MIN_SPEAKER_S; before that it takes the
nearest voice's, which also keeps a one-voice stream one speaker.

Two voices in one utterance (no pause between them long enough to end it): where the final
has word times (`LIVE_WORD_TIMES`), its windows are labelled one by one and each word takes
the voice around it (`Voices.label_words`); the page, the History and the exports then show
one part per speaker (`engine.speakers.parts`). Without word times the utterance gets its
main voice's label.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from engine.base import Word
from engine.speakers.choice import configured_thresholds
from engine.speakers.cluster import LIVE_MIN_SPEAKER_S, LIVE_SPLIT_MIN_SPEAKER_S, StableSpeakers
from engine.speakers.diarize import Turn, speaker_at, window_turns
from engine.speakers.encoder import Windows

log = logging.getLogger(__name__)

#: Step between the embedding windows of an utterance (seconds), as for files.
HOP_S = 0.4


def speaker_label(index: int) -> str:
    """What the page and the events show for speaker `index` (0-based)."""
    return f"Speaker {index + 1}"


def embed(audio: np.ndarray) -> Windows:
    """One utterance's 1.6 s windows (centres in utterance time, embeddings), by the shared
    encoder (synchronous)."""
    from engine.speakers.encoder import shared_encoder

    return shared_encoder().windows(np.asarray(audio, dtype=np.float32), HOP_S)


@dataclass(frozen=True)
class Voices:
    """Who spoke in one utterance: `speaker` its main voice (the voice of its first words
    once `words` are labelled), `turns` each voice's stretch in utterance time."""

    speaker: str
    turns: tuple[Turn, ...]

    def label_words(self, words: Sequence[Word], offset_s: float) -> tuple[Word, ...]:
        """The final's words (session time; the utterance starts at `offset_s`) with their
        speaker, where the utterance holds two voices or more; unchanged otherwise."""
        if len({t.speaker for t in self.turns}) < 2:
            return tuple(words)
        return tuple(replace(w, speaker=speaker_at(self.turns, w.start - offset_s, w.end - offset_s)) for w in words)


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
    decodes), then `label(task)` in utterance order. `split`: the stream's finals have
    word times, so a voice change inside one is kept (a speaker then needs
    LIVE_SPLIT_MIN_SPEAKER_S, measured for that mode)."""

    split: bool = False
    _speakers: StableSpeakers = field(init=False)

    def __post_init__(self) -> None:
        min_speaker_s = LIVE_SPLIT_MIN_SPEAKER_S if self.split else LIVE_MIN_SPEAKER_S
        # The distance cut of the encoder SPEAKER_ENCODER names (each has its own).
        self._speakers = StableSpeakers(configured_thresholds().live, min_speaker_s, HOP_S)
        preload()

    def start(self, audio: np.ndarray) -> asyncio.Task:
        """The utterance's window embeddings, computed in a worker thread."""
        return asyncio.ensure_future(asyncio.to_thread(embed, np.array(audio, dtype=np.float32, copy=True)))

    async def label(self, task: asyncio.Task, has_words: bool = False) -> Voices | None:
        """The final's voices (None when the embedding failed: the final is shown without a
        label). In a `split` stream, a final with words (`has_words`) has each window
        labelled, so a voice change inside it is kept (its words then carry their
        speakers); else the utterance gets one label.
        The clustering runs in a worker thread too (tens of ms after an hour of speech)."""
        try:
            windows = await task
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 -- a missing encoder never costs the final its text
            return None
        if self.split and has_words:
            indices = await asyncio.to_thread(self._speakers.assign_windows, windows.embeddings)
            labels = [speaker_label(int(i)) for i in indices]
        else:
            labels = [speaker_label(await asyncio.to_thread(self._speakers.assign, windows.embeddings))] * len(windows.centers)
        return Voices(labels[0], tuple(window_turns(windows.centers, labels)))
