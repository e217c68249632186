"""Per-connection conversion of incoming audio frames to 16 kHz mono float32.

Why a stateful stream and not `soxr.resample` per frame: resampling each 20 ms frame on
its own restarts the filter at every frame edge, which leaves a click (a discontinuity
of the filter's transient) 50 times a second. `soxr.ResampleStream` keeps the filter
history between calls, so frame-by-frame output equals a one-shot resample of the
whole stream (up to float rounding).

FastRTC delivers `(sample_rate, int16 ndarray of shape (1, n))`, 48 kHz, 20 ms frames
(its track already mixes the browser's audio down to mono, packed s16). Other callers
(files, tests, the realtime WebSocket) may send other rates, dtypes and layouts, so the
converter accepts the common ones and refuses the rest with a clear `ValueError`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr

from engine.audio import AudioError, downmix
from settings import SAMPLE_RATE

__all__ = ["FrameResampler", "ResamplerOptions", "to_mono_float32"]

_INT_SCALE = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0}
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True)
class ResamplerOptions:
    """How frames are converted.

    `quality` is soxr's quality name ("VHQ", "HQ", "MQ", "LQ", "QQ"); "HQ" is transparent
    for speech and costs a few microseconds per 20 ms frame.
    """

    out_rate: int = SAMPLE_RATE
    quality: str = "HQ"


def to_mono_float32(frame: np.ndarray) -> np.ndarray:
    """Convert one frame of any supported layout and dtype to a mono float32 vector.

    Accepted shapes: (n,), (1, n), (n, 1), (channels, n) and (n, channels); channels are
    averaged by the rule every audio input follows (`engine.audio.downmix`: the short
    axis, at most 8). Integers are scaled to [-1, 1). Non-finite samples (NaN/inf) are
    replaced by 0 because a single NaN inside the resampler's filter history would
    poison every later sample of the connection.
    """
    if not isinstance(frame, np.ndarray):
        raise ValueError(  # noqa: TRY004 - one exception type for every bad frame
            f"audio frame must be a numpy array, got {type(frame).__name__}"
        )
    dtype = frame.dtype
    if dtype in _INT_SCALE:
        audio = frame.astype(np.float32) / np.float32(_INT_SCALE[dtype])
    elif dtype in _FLOAT_DTYPES:
        audio = frame.astype(np.float32, copy=False)
    else:
        raise ValueError(
            f"unsupported audio dtype {dtype}; expected int16, int32, float32 or float64"
        )

    if audio.ndim == 1:
        mono = audio
    elif audio.ndim == 2:
        try:
            mono = downmix(audio)
        except AudioError as exc:
            raise ValueError(str(exc)) from None  # one exception type for every bad frame
    else:
        raise ValueError(
            f"audio frame must have 1 or 2 dimensions, got shape {audio.shape}"
        )

    mono = np.ascontiguousarray(mono, dtype=np.float32)
    if not np.isfinite(mono).all():
        mono = np.nan_to_num(mono, nan=0.0, posinf=0.0, neginf=0.0)
    return mono


class FrameResampler:
    """Stateful converter: frames of any rate/layout/dtype in, 16 kHz mono float32 out.

    One instance per connection (the filter state belongs to one audio stream). The
    output is a continuous stream: sample k of the concatenated output is at time
    k / out_rate on the connection's audio clock. soxr holds back a few milliseconds of
    output until it has seen enough future input; `flush()` releases it at the end.

    If the input rate changes mid-stream (a renegotiated track), the old resampler is
    drained and a new one is started, so no audio is lost or duplicated.
    """

    def __init__(self, options: ResamplerOptions | None = None) -> None:
        self.options = options or ResamplerOptions()
        if self.options.out_rate <= 0:
            raise ValueError(f"out_rate must be positive, got {self.options.out_rate}")
        self._in_rate: int | None = None
        self._stream: soxr.ResampleStream | None = None
        self._samples_out = 0

    @property
    def in_rate(self) -> int | None:
        """Sample rate of the frames seen last (None before the first frame)."""
        return self._in_rate

    @property
    def samples_out(self) -> int:
        """Total samples produced so far: the connection's audio clock in output samples."""
        return self._samples_out

    def process(self, frame: np.ndarray, sample_rate: int) -> np.ndarray:
        """Convert one frame; returns the (possibly empty) 16 kHz mono float32 output."""
        rate = _check_rate(sample_rate)
        mono = to_mono_float32(frame)
        out: list[np.ndarray] = []
        if rate != self._in_rate:
            out.append(self._drain())
            self._in_rate = rate
            self._stream = (
                None
                if rate == self.options.out_rate
                else soxr.ResampleStream(
                    rate,
                    self.options.out_rate,
                    1,
                    dtype="float32",
                    quality=self.options.quality,
                )
            )
        if self._stream is None:
            out.append(mono.copy())
        elif mono.size:
            out.append(self._stream.resample_chunk(mono, last=False))
        return self._emit(out)

    def flush(self) -> np.ndarray:
        """Release the samples soxr still holds (end of stream). The next frame starts fresh."""
        out = self._drain()
        self._in_rate = None
        return self._emit([out])

    def reset(self) -> None:
        """Forget all state, including the audio clock (a new stream on the same object)."""
        self._in_rate = None
        self._stream = None
        self._samples_out = 0

    def _drain(self) -> np.ndarray:
        stream, self._stream = self._stream, None
        if stream is None:
            return np.zeros(0, dtype=np.float32)
        return stream.resample_chunk(np.zeros(0, dtype=np.float32), last=True)

    def _emit(self, parts: list[np.ndarray]) -> np.ndarray:
        parts = [p for p in parts if p.size]
        if not parts:
            return np.zeros(0, dtype=np.float32)
        result = parts[0] if len(parts) == 1 else np.concatenate(parts)
        result = np.ascontiguousarray(result, dtype=np.float32).reshape(-1)
        self._samples_out += result.size
        return result


def _check_rate(sample_rate: object) -> int:
    if isinstance(sample_rate, (bool, np.bool_)) or not isinstance(
        sample_rate, (int, np.integer)
    ):
        if (
            isinstance(sample_rate, (float, np.floating))
            and float(sample_rate).is_integer()
        ):
            sample_rate = int(sample_rate)
        else:
            raise ValueError(
                f"sample rate must be a positive integer, got {sample_rate!r}"
            )
    rate = int(sample_rate)
    if not 1_000 <= rate <= 768_000:
        raise ValueError(f"unsupported sample rate {rate} Hz (expected 1000..768000)")
    return rate
