"""Silero VAD v6 speech probabilities, run with onnxruntime: per stream, or over a whole recording.

It lives in `engine/` because both the live pipeline (`streaming/`, one `SileroVAD` per
connection) and the engine's own coverage check (`engine/coverage.py`: did the decoder's
segments cover every stretch the VAD heard?) use it, and `engine/` imports nothing above it.

Why not `import silero_vad`: that package imports torch at import time (seconds, and a
second copy of torch in the worker). The pip package is only used as a carrier of the
ONNX file `silero_vad/data/silero_vad.onnx`, located with `importlib.util.find_spec`,
which finds a package's directory without executing its `__init__`.

The model is recurrent: every 512-sample window (32 ms at 16 kHz) is run together with
the 64 samples that preceded it (the "context" Silero v5/v6 prepends) and the previous
hidden state (2, 1, 128). Both belong to one audio stream, so each connection has its
own small `SileroVAD` object, while the `InferenceSession` (weights, ~2 MB, and the
graph) is shared process-wide: `InferenceSession.run` is thread-safe, and one intra-op
thread per call is the right size for a 576-sample input (more threads only add
synchronisation cost and fight the engine for cores).
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from engine.base import SAMPLE_RATE

__all__ = [
    "CONTEXT_SAMPLES",
    "SAMPLE_RATE",
    "WINDOW_SAMPLES",
    "SileroVAD",
    "VadWindow",
    "model_path",
    "shared_session",
    "speech_probabilities",
    "speech_probabilities_of",
    "regions_of",
    "speech_regions",
    "speech_regions_of",
]


WINDOW_SAMPLES = 512
CONTEXT_SAMPLES = 64
_STATE_SHAPE = (2, 1, 128)

_session_lock = threading.Lock()
_sessions: dict[Path, ort.InferenceSession] = {}


def model_path() -> Path:
    """Path of the Silero VAD ONNX model shipped in the `silero-vad` pip package.

    `SILERO_VAD_ONNX` overrides it (`settings.vad_model_override`).
    """
    from settings import vad_model_override

    override = vad_model_override()
    if override is not None:
        path = override
    else:
        spec = importlib.util.find_spec("silero_vad")
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError(
                "the silero-vad package is not installed; it carries the VAD model "
                "(pip install --no-deps silero-vad==6.2.3)"
            )
        path = (
            Path(next(iter(spec.submodule_search_locations)))
            / "data"
            / "silero_vad.onnx"
        )
    if not path.is_file():
        raise RuntimeError(f"Silero VAD model not found at {path}")
    return path


def shared_session(path: Path | None = None) -> ort.InferenceSession:
    """The process-wide InferenceSession for the VAD model (created once, on first use)."""
    path = (path or model_path()).resolve()
    with _session_lock:
        session = _sessions.get(path)
        if session is None:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            session = ort.InferenceSession(
                str(path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
            names = {i.name for i in session.get_inputs()}
            if names != {"input", "state", "sr"}:
                raise RuntimeError(
                    f"unexpected Silero VAD model inputs {sorted(names)} in {path}; "
                    "expected input, state, sr (Silero v5/v6)"
                )
            _sessions[path] = session
        return session


@dataclass(frozen=True)
class VadWindow:
    """One analysed 32 ms window: its audio, its speech probability and its start sample."""

    audio: np.ndarray
    prob: float
    start: int


@dataclass
class SileroVAD:
    """Per-connection Silero VAD state; feed 16 kHz mono float32 audio of any length.

    Audio that does not fill a whole window is kept until the next call, so results
    do not depend on how the stream was chopped into chunks. One object per stream, used
    from one thread at a time; the shared session underneath serves all of them.
    """

    session: ort.InferenceSession | None = None
    _state: np.ndarray = field(init=False, repr=False)
    _context: np.ndarray = field(init=False, repr=False)
    _pending: np.ndarray = field(init=False, repr=False)
    _windows_done: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.session is None:
            self.session = shared_session()
        self.reset()

    def reset(self) -> None:
        """Forget the stream: zero state and context, drop buffered samples."""
        self._state = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self._windows_done = 0

    def copy(self) -> SileroVAD:
        """An independent clone (same shared session), e.g. to look ahead without committing."""
        clone = SileroVAD.__new__(SileroVAD)
        clone.session = self.session
        clone._state = self._state.copy()
        clone._context = self._context.copy()
        clone._pending = self._pending.copy()
        clone._windows_done = self._windows_done
        return clone

    @property
    def pending_samples(self) -> int:
        """Samples waiting for the next window to fill."""
        return int(self._pending.size)

    @property
    def samples_done(self) -> int:
        """Samples consumed by completed windows (the VAD's position on the audio clock)."""
        return self._windows_done * WINDOW_SAMPLES

    def process(self, chunk: np.ndarray) -> list[float]:
        """Speech probability of every window completed by this chunk (possibly none)."""
        return [w.prob for w in self.process_windows(chunk)]

    def process_windows(self, chunk: np.ndarray) -> list[VadWindow]:
        """Like `process`, but also returns each window's audio and start sample,
        which is what the segmenter consumes."""
        chunk = np.asarray(chunk)
        if chunk.ndim != 1 or chunk.dtype != np.float32:
            raise ValueError(
                f"VAD input must be a 1-D float32 array at 16 kHz, got {chunk.dtype} {chunk.shape}"
            )
        audio = np.concatenate([self._pending, chunk]) if self._pending.size else chunk
        n_windows = audio.size // WINDOW_SAMPLES
        out: list[VadWindow] = []
        for i in range(n_windows):
            window = audio[i * WINDOW_SAMPLES : (i + 1) * WINDOW_SAMPLES]
            prob = self._run(window)
            out.append(VadWindow(window.copy(), prob, self.samples_done))
            self._windows_done += 1
        self._pending = audio[n_windows * WINDOW_SAMPLES :].copy()
        return out

    def _run(self, window: np.ndarray) -> float:
        x = np.concatenate([self._context, window])[None, :]
        prob, state = self.session.run(  # type: ignore[union-attr]
            None,
            {
                "input": x,
                "state": self._state,
                "sr": np.array(SAMPLE_RATE, dtype=np.int64),
            },
        )
        self._state = state
        self._context = window[-CONTEXT_SAMPLES:].copy()
        return float(prob[0, 0])


def speech_probabilities(audio: np.ndarray) -> np.ndarray:
    """Speech probability of every whole 512-sample window of a recording (fresh state)."""
    return np.asarray(SileroVAD().process(np.ascontiguousarray(audio, dtype=np.float32)), dtype=np.float32)


def speech_probabilities_of(audios: Sequence[np.ndarray]) -> list[np.ndarray]:
    """`speech_probabilities` of several recordings in one batched pass per 32 ms step
    (the same numbers; 8 windows of 30 s took 0.76 s instead of 1.09 s one by one here:
    the word aligner's batch of a long file's windows)."""
    session = shared_session()
    counts = [len(a) // WINDOW_SAMPLES for a in audios]
    steps = max(counts, default=0)
    out = np.zeros((len(audios), steps), dtype=np.float32)
    if steps:
        x = np.zeros((len(audios), steps * WINDOW_SAMPLES), dtype=np.float32)
        for i, (audio, n) in enumerate(zip(audios, counts)):
            x[i, : n * WINDOW_SAMPLES] = np.asarray(audio[: n * WINDOW_SAMPLES], dtype=np.float32)
        state = np.zeros((_STATE_SHAPE[0], len(audios), _STATE_SHAPE[2]), dtype=np.float32)
        context = np.zeros((len(audios), CONTEXT_SAMPLES), dtype=np.float32)
        rate = np.array(SAMPLE_RATE, dtype=np.int64)
        for k in range(steps):
            window = x[:, k * WINDOW_SAMPLES : (k + 1) * WINDOW_SAMPLES]
            prob, state = session.run(None, {"input": np.concatenate([context, window], axis=1), "state": state, "sr": rate})
            out[:, k] = prob[:, 0]
            context = window[:, -CONTEXT_SAMPLES:]
    return [out[i, :n].copy() for i, n in enumerate(counts)]


def speech_regions(
    audio: np.ndarray,
    *,
    threshold: float = 0.5,
    min_speech_s: float = 0.25,
    min_silence_s: float = 0.3,
    pad_s: float = 0.05,
) -> list[tuple[float, float]]:
    """(start, end) seconds of the speech a recording holds, in order, not overlapping.

    The usual hysteresis (Silero's own `get_speech_timestamps`): speech starts where the
    probability reaches `threshold`, ends where it stays below `threshold - 0.15` for
    `min_silence_s`; blips shorter than `min_speech_s` are dropped. Offline use only (a
    whole file or a finished utterance); the live segmenter has its own rules.
    """
    probs = speech_probabilities(audio)
    return regions_of(probs, threshold=threshold, min_speech_s=min_speech_s, min_silence_s=min_silence_s,
                      pad_s=pad_s, duration=len(audio) / SAMPLE_RATE)


def speech_regions_of(audios: Sequence[np.ndarray], *, pad_s: float = 0.05) -> list[list[tuple[float, float]]]:
    """`speech_regions` (default thresholds) of several recordings, the VAD batched."""
    return [
        regions_of(probs, pad_s=pad_s, duration=len(audio) / SAMPLE_RATE)
        for audio, probs in zip(audios, speech_probabilities_of(audios))
    ]


def regions_of(
    probs: np.ndarray,
    *,
    threshold: float = 0.5,
    min_speech_s: float = 0.25,
    min_silence_s: float = 0.3,
    pad_s: float = 0.05,
    duration: float | None = None,
) -> list[tuple[float, float]]:
    """`speech_regions` from precomputed per-window probabilities (pure; unit-tested)."""
    step = WINDOW_SAMPLES / SAMPLE_RATE
    end_limit = duration if duration is not None else len(probs) * step
    low = threshold - 0.15
    regions: list[tuple[float, float]] = []
    start: int | None = None
    quiet = 0
    max_quiet = max(1, int(round(min_silence_s / step)))
    for i, p in enumerate(probs):
        if start is None:
            if p >= threshold:
                start, quiet = i, 0
            continue
        if p < low:
            quiet += 1
            if quiet >= max_quiet:
                regions.append((start * step, (i - quiet + 1) * step))
                start = None
        else:
            quiet = 0
    if start is not None:
        regions.append((start * step, (len(probs) - quiet) * step))
    out: list[tuple[float, float]] = []
    for a, b in regions:
        if b - a < min_speech_s:
            continue
        a, b = max(0.0, a - pad_s), min(end_limit, b + pad_s)
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out
