"""Smart Turn v3.2: the probability that a speaker has finished their turn, from the voice.

Why this model: the silence rule ends an utterance `MIN_SILENCE_MS` after the last word
whatever was said, so a final can never come sooner than that, and a shorter silence
splits sentences at every breath. Smart Turn (Pipecat, BSD-2-Clause) is a small Whisper
encoder with a classifier head, trained to tell a finished turn from a pause inside one
from the last <= 8 s of audio (intonation, a trailing "and", the rhythm of the words).
It runs offline on CPU: an 8.7 MB ONNX file, a few tens of ms a call on one thread.

Like the VAD (`engine.vad`) the pip package is only a carrier: `pipecat-ai` is installed
with `--no-deps` and never imported; its directory is found with
`importlib.util.find_spec`, which does not execute its `__init__`.

Input, as Pipecat's own analyzer prepares it (`LocalSmartTurnAnalyzerV3`): 16 kHz mono,
the last 8 s of the utterance, zero-padded *at the front* to exactly 8 s, then Whisper's
log-mel (80 bins, 800 frames, `chunk_length=8`, waveform normalised to zero mean and unit
variance). The mel comes from `transformers`' `WhisperFeatureExtractor`, which the
engine already carries. Output: a sigmoid probability per batch row (the graph's output
is named `logits` but is already squashed). The batch dimension is dynamic, so the
streaming layer can score many streams in one call.
"""

from __future__ import annotations

import functools
import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from engine.base import SAMPLE_RATE

__all__ = ["TURN_WINDOW_S", "TurnModel", "features", "model_path", "shared_model"]

#: Seconds of audio the model sees (the end of the utterance).
TURN_WINDOW_S = 8
_WINDOW = TURN_WINDOW_S * SAMPLE_RATE
_PACKAGE = "pipecat"
_FILE = Path("audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx")
PIP_HINT = "pip install --no-deps pipecat-ai==1.14.0"


def model_path() -> Path:
    """Path of the Smart Turn ONNX file inside the installed `pipecat-ai` package."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the pipecat-ai package is not installed; it carries the turn model ({PIP_HINT})")
    path = Path(next(iter(spec.submodule_search_locations))) / _FILE
    if not path.is_file():
        raise RuntimeError(f"Smart Turn model not found at {path} ({PIP_HINT})")
    return path


@functools.lru_cache(maxsize=1)
def _extractor():
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(chunk_length=TURN_WINDOW_S)


def features(audio: np.ndarray) -> np.ndarray:
    """(80, 800) float32 log-mel of the last 8 s of `audio` (16 kHz), front-padded."""
    x = np.asarray(audio, dtype=np.float32).reshape(-1)[-_WINDOW:]
    if x.size < _WINDOW:
        x = np.pad(x, (_WINDOW - x.size, 0))
    out = _extractor()(
        x,
        sampling_rate=SAMPLE_RATE,
        padding="max_length",
        max_length=_WINDOW,
        truncation=True,
        do_normalize=True,
        return_tensors="np",
    )
    return np.asarray(out.input_features[0], dtype=np.float32)


class TurnModel:
    """The loaded model; `complete_probabilities` is thread-safe (onnxruntime's `run` is).

    One intra-op thread: the streaming layer calls it from one worker thread, next to
    the engine that wants both cores; batching rows is cheaper than more threads.
    """

    def __init__(self, path: Path | None = None) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        self.path = path or model_path()
        self._session = ort.InferenceSession(str(self.path), sess_options=opts, providers=["CPUExecutionProvider"])
        names = [i.name for i in self._session.get_inputs()]
        if names != ["input_features"]:
            raise RuntimeError(f"unexpected Smart Turn inputs {names} in {self.path}")

    def complete_probabilities(self, audios: Sequence[np.ndarray]) -> list[float]:
        """P(turn complete) for each utterance (its audio up to now, 16 kHz float32)."""
        if not audios:
            return []
        batch = np.stack([features(a) for a in audios])
        (probs,) = self._session.run(None, {"input_features": batch})
        return [float(p) for p in np.asarray(probs).reshape(-1)]

    def complete_probability(self, audio: np.ndarray) -> float:
        return self.complete_probabilities([audio])[0]


_lock = threading.Lock()


@functools.lru_cache(maxsize=1)
def _cached() -> TurnModel:
    return TurnModel()


def shared_model() -> TurnModel:
    """The process-wide model (loaded once, on first use; ~9 MB of weights)."""
    with _lock:
        return _cached()
