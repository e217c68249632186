"""bench.first_partials cuts what a live session sends as an utterance's first partial."""

from __future__ import annotations

import numpy as np

from bench.first_partials import PRE_ROLL_S, SPEECH_S, SR, first_partial_audio


def _tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_the_cut_is_the_quiet_before_the_onset_and_the_first_of_the_speech() -> None:
    quiet = np.full(SR, 1e-5, np.float32)
    audio = first_partial_audio(np.concatenate([quiet, _tone(2.0)]))
    assert len(audio) == int((PRE_ROLL_S + SPEECH_S) * SR)
    pre = int(PRE_ROLL_S * SR)
    assert np.abs(audio[: pre - 200]).max() < 1e-3  # the room's quiet (onset within 20 ms)
    assert np.abs(audio[pre + 200 :]).max() > 0.2  # then speech


def test_speech_from_the_first_sample_gets_silence_before_it() -> None:
    audio = first_partial_audio(_tone(2.0))
    pre = int(PRE_ROLL_S * SR)
    assert len(audio) == int((PRE_ROLL_S + SPEECH_S) * SR)
    assert not audio[:pre].any() and np.abs(audio[pre:]).max() > 0.2
