"""Silero VAD for the live pipeline: the ONNX wrapper itself lives in `engine/vad.py`.

It moved down because the engine's coverage check (every stretch the VAD heard must come
back as text) needs it too, and `engine/` may not import `streaming/`. This module keeps
the old import path for the session, the segmenter and their tests.
"""

from __future__ import annotations

from engine.vad import (  # noqa: F401  (re-exported)
    CONTEXT_SAMPLES,
    SAMPLE_RATE,
    WINDOW_SAMPLES,
    SileroVAD,
    VadWindow,
    model_path,
    shared_session,
    speech_probabilities,
    speech_regions,
)

__all__ = [
    "CONTEXT_SAMPLES",
    "SAMPLE_RATE",
    "WINDOW_SAMPLES",
    "SileroVAD",
    "VadWindow",
    "model_path",
    "shared_session",
    "speech_probabilities",
    "speech_regions",
]
