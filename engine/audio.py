"""Audio in: files and bytes of any common format, raw PCM16, and arrays handed over directly.

Everything leaves this module as the engine's one input type: a contiguous 1-D float32
array of 16 kHz mono samples in [-1, 1]. Anything that cannot become that raises
`AudioError` with a message meant for the user as is ("notes.wav is not a readable audio
file ..."), never an FFmpeg traceback.

Files are decoded with PyAV, which bundles FFmpeg: wav, flac, ogg/opus/vorbis, mp3,
m4a/aac, webm, mp4/mkv sound tracks, at any sample rate and channel count.

Choices worth knowing:

- Channels are resampled as they are and averaged here: stereo becomes (L + R) / 2, and
  more channels their mean without the LFE (subwoofer) channel. FFmpeg's own float
  downmix is not normalised (stereo sums at 0.707 each, 5.1 at a gain of 3.4), which
  the clip to [-1, 1] would distort; its `rematrix_maxval` fix needs PyAV's newest
  `AudioResampler(options=...)`, and requirements allow av>=14.
- `max_seconds` is checked twice: up front from the container's metadata (generously,
  since some formats only estimate it), so a 10-hour file is refused without decoding
  it, and exactly while decoding, so a file whose header lies or says nothing (a
  stream, an ogg without an index) is refused after at most `max_seconds` of work.
- Damaged data: packets the decoder rejects are skipped (as the `ffmpeg` command line
  does); a file cut short decodes up to where it ends, with a warning in the log. Only
  data of which nothing at all decodes raises `AudioError`.
- NaN / Inf samples (float wav files, arrays from callers): up to 1 % of the samples are
  replaced with 0 and logged as a warning (a few bad samples are a glitch; dropping the
  whole request for them helps nobody); more than that, or nothing finite at all,
  raises `AudioError` (the audio is garbage, e.g. a gain normalisation divided by zero).
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import BinaryIO, Union

import av
import av.error
import numpy as np

from engine.base import SAMPLE_RATE, AudioError

log = logging.getLogger(__name__)

AudioSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO]

#: Above this fraction of NaN/Inf samples the audio is refused instead of repaired.
MAX_NONFINITE_FRACTION = 0.01
#: Most channels a 2-D array may have (see `downmix`).
MAX_CHANNELS = 8
#: Decoded audio may run this far past `max_seconds` (codec padding) before it is refused.
DECODE_SLACK_S = 0.5
#: The up-front check trusts container metadata only this far (estimated durations).
METADATA_SLACK = 1.05
#: This many packets in a row that fail to decode means the data is not audio after all.
MAX_CONSECUTIVE_BAD_PACKETS = 32
#: Largest buffer reserved up front from (possibly wrong) metadata; beyond it, it grows.
_MAX_PREALLOC_SAMPLES = 6 * 3600 * SAMPLE_RATE


# -- files and bytes -------------------------------------------------------------------


def load_audio(source: AudioSource, *, max_seconds: float | None = None) -> np.ndarray:
    """Decode a file, its bytes or an open binary file to 16 kHz mono float32 in [-1, 1].

    `source` is a path (str or Path), the file's contents (bytes), or a binary file
    object (read, and seeked where it can be; left open). `max_seconds` refuses longer
    audio. Raises `AudioError` for anything unusable: missing or empty file, not audio,
    no audio stream, corrupt data, no samples, too long.
    """
    if max_seconds is not None and not max_seconds > 0:
        raise ValueError(f"max_seconds must be positive, got {max_seconds!r}")
    target, label = _prepare_source(source)
    try:
        container = av.open(target, mode="r", metadata_errors="ignore")
    except av.error.FileNotFoundError as exc:  # removed between the check and the open
        raise AudioError(f"audio file not found: {label}") from exc
    except av.error.EOFError as exc:
        raise AudioError(f"{label} is not a readable audio file (it ends before any audio: truncated?)") from exc
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise AudioError(f"{label} is not a readable audio file (unknown format or corrupt data)") from exc
    with container:
        if not container.streams.audio:
            raise AudioError(f"{label} has no audio stream")
        stream = container.streams.best("audio") or container.streams.audio[0]
        if stream.codec_context is None:
            raise AudioError(f"{label} uses an audio codec that cannot be decoded")
        announced = _metadata_duration(container, stream)
        if max_seconds is not None and announced is not None and announced > max_seconds * METADATA_SLACK + 1.0:
            raise AudioError(
                f"{label} is too long: about {_describe(announced)} of audio, the limit is {_describe(max_seconds)}"
            )
        audio = _decode(container, stream, label, announced, max_seconds)
        if len(audio) == 0:
            if not stream.codec_context.sample_rate:  # the demuxer guessed from the name alone
                raise AudioError(f"{label} is not a readable audio file (no valid audio stream found)")
            raise AudioError(f"{label} contains no audio samples (zero length)")
    if announced is not None and len(audio) / SAMPLE_RATE < 0.9 * announced - 1.0:
        log.warning(
            "%s: decoded %s of the %s its header announces; the file may be truncated",
            label,
            _describe(len(audio) / SAMPLE_RATE),
            _describe(announced),
        )
    return _sanitize(audio, owned=True)


def _prepare_source(source: AudioSource) -> tuple[str | BinaryIO, str]:
    """What to hand av.open, and how to name the source in messages."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise AudioError("the audio data is empty (0 bytes)")
        return io.BytesIO(source), "the audio data"
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        label = path.name or str(path)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise AudioError(f"audio file not found: {path}") from None
        except OSError as exc:
            raise AudioError(f"cannot read audio file {path}: {exc.strerror or exc}") from exc
        if path.is_dir():
            raise AudioError(f"{path} is a directory, not an audio file")
        if st.st_size == 0 and path.is_file():
            raise AudioError(f"{label} is empty (0 bytes)")
        if not os.access(path, os.R_OK):
            raise AudioError(f"cannot read audio file {path}: permission denied")
        # "file:" so that FFmpeg never reads a name like "concat:a|b" or "pipe:0" as a protocol.
        return f"file:{path.resolve()}", label
    if hasattr(source, "read"):
        label = Path(str(getattr(source, "name", ""))).name or "the audio data"
        if _remaining_bytes(source) == 0:
            raise AudioError(f"{label} is empty (0 bytes)")
        return source, label
    raise TypeError(f"load_audio takes a path, bytes or a binary file, not {type(source).__name__}")


def _remaining_bytes(f: BinaryIO) -> int | None:
    try:
        if not f.seekable():
            return None
        pos = f.tell()
        end = f.seek(0, io.SEEK_END)
        f.seek(pos)
        return end - pos
    except (AttributeError, OSError, ValueError):
        return None


def _metadata_duration(container: av.container.InputContainer, stream: av.audio.AudioStream) -> float | None:
    """The duration the container announces, in seconds, or None when it doesn't say."""
    seconds = None
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        seconds = container.duration / av.time_base
    return seconds if seconds is not None and seconds > 0 else None


def _new_resampler() -> av.AudioResampler:
    # Planar float at 16 kHz, channels kept (layout=None): one row per channel to average.
    return av.AudioResampler(format="fltp", rate=SAMPLE_RATE, frame_size=SAMPLE_RATE)


def _downmix_weights(layout: av.AudioLayout) -> np.ndarray | None:
    """Per-channel weights summing to 1, or None for mono (or a plain mean for stereo)."""
    names = [channel.name for channel in layout.channels]
    if len(names) <= 2:
        return None
    weights = np.array([0.0 if name == "LFE" else 1.0 for name in names], dtype=np.float32)
    if not weights.any():
        weights[:] = 1.0
    return weights / weights.sum()


def _decode(
    container: av.container.InputContainer,
    stream: av.audio.AudioStream,
    label: str,
    announced: float | None,
    max_seconds: float | None,
) -> np.ndarray:
    limit = None if max_seconds is None else int((max_seconds + DECODE_SLACK_S) * SAMPLE_RATE)
    expected = int(announced * SAMPLE_RATE * 1.01) + SAMPLE_RATE if announced else 60 * SAMPLE_RATE
    buffer = _Buffer(min(expected, limit or _MAX_PREALLOC_SAMPLES, _MAX_PREALLOC_SAMPLES))
    resampler = _new_resampler()
    setup: tuple | None = None
    weights: np.ndarray | None = None
    bad_in_a_row = bad_total = 0

    def push(frames: list) -> None:
        for out in frames:
            if out is None:  # PyAV's passthrough resampler flushes to [None]
                continue
            planes = out.to_ndarray()  # (channels, samples)
            if len(planes) == 1:
                buffer.append(planes[0])
            elif weights is None:
                buffer.append(planes.mean(axis=0, dtype=np.float32))
            else:
                buffer.append(weights @ planes)
        if limit is not None and buffer.n > limit:
            raise AudioError(f"{label} is too long: it runs past the limit of {_describe(max_seconds)}")

    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError as exc:
                bad_in_a_row += 1
                bad_total += 1
                if bad_in_a_row >= MAX_CONSECUTIVE_BAD_PACKETS:
                    raise _corrupt(label, buffer.n) from exc
                continue
            bad_in_a_row = 0
            for frame in frames:
                # A resampler is set up for its first frame's format; streams may change it.
                key = (frame.format.name, frame.layout.name, frame.sample_rate)
                if key != setup:
                    if setup is not None:
                        push(resampler.resample(None))
                        resampler = _new_resampler()
                    setup = key
                    weights = _downmix_weights(frame.layout)
                push(resampler.resample(frame))
    except av.error.FFmpegError as exc:  # the demuxer gave up (truncated or damaged file)
        if buffer.n == 0:
            raise _corrupt(label, 0) from exc
        log.warning(
            "%s: stopped decoding at %s: %s",
            label,
            _describe(buffer.n / SAMPLE_RATE),
            exc,
        )
    if bad_total:
        log.warning("%s: skipped %d damaged packet(s)", label, bad_total)
    try:
        push(resampler.resample(None))
    except av.error.FFmpegError as exc:
        log.warning("%s: resampler flush failed: %s", label, exc)
    if buffer.n == 0 and bad_total:
        raise _corrupt(label, 0)
    return buffer.result()


def _corrupt(label: str, decoded: int) -> AudioError:
    if decoded == 0:
        return AudioError(f"{label} is not a readable audio file (the audio data is corrupt and could not be decoded)")
    return AudioError(f"{label} is corrupt: decoding failed after {_describe(decoded / SAMPLE_RATE)}")


class _Buffer:
    """A float32 array filled in place: never more than one copy of the audio in memory.

    Reserved up front from the container's duration when it is known. When it is not
    (or the header was wrong), the array grows in place with `ndarray.resize`: realloc,
    which on Linux moves a large block's pages with mremap instead of copying them, so
    growing never holds the old and the new array at once. The slack at the end is given
    back the same way.
    """

    def __init__(self, capacity: int) -> None:
        self.data = np.empty(max(capacity, 4096), dtype=np.float32)
        self.n = 0

    def append(self, samples: np.ndarray) -> None:
        end = self.n + len(samples)
        if end > len(self.data):
            self.data.resize(max(end, 2 * len(self.data)), refcheck=False)  # no views of it exist
        self.data[self.n : end] = samples
        self.n = end

    def result(self) -> np.ndarray:
        if len(self.data) - self.n > max(self.n // 64, SAMPLE_RATE):
            self.data.resize(max(self.n, 1), refcheck=False)  # don't keep a much larger buffer alive
            return self.data[: self.n]
        return self.data[: self.n]


def _describe(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return f"{whole} s ({h}:{m:02d}:{s:02d})"


# -- raw PCM ---------------------------------------------------------------------------


def decode_pcm16(data: bytes | bytearray | memoryview) -> np.ndarray:
    """Little-endian signed 16-bit mono PCM at 16 kHz (what the page streams) to float32.

    Empty input gives an empty array (an empty chunk is not an error on a stream); an odd
    number of bytes raises `AudioError`, since the samples would be misaligned.
    """
    n = memoryview(data).nbytes
    if n % 2:
        raise AudioError(f"PCM16 audio must have an even number of bytes (2 per sample), got {n}")
    samples = np.frombuffer(data, dtype="<i2").astype(np.float32)
    samples *= np.float32(1.0 / 32768.0)
    return samples


# -- arrays ----------------------------------------------------------------------------


def validate_audio(audio: np.ndarray) -> np.ndarray:
    """Check and normalise an array handed over directly; returns 1-D float32 in [-1, 1].

    - dtype: float16/float64 become float32; integer PCM is scaled to [-1, 1)
      (int16 / 32768, int32 / 2**31, uint8 centred on 128); anything else is refused.
    - shape: 1-D is mono; 2-D is averaged over its channel axis, which is the short one
      (at most 8), channels last when both could be (soundfile's (samples, channels)).
    - NaN / Inf: replaced with 0 and logged when they are at most 1 % of the samples,
      `AudioError` otherwise (see the module docstring).
    - values are clipped to [-1, 1].
    - empty audio raises `AudioError`.

    The input is never modified; it is returned as is (no copy) when already valid.
    """
    a = np.asarray(audio)
    owned = a is not audio
    kind = a.dtype.kind
    if kind not in "fiu":
        raise AudioError(f"audio must be an array of numbers, got dtype {a.dtype}")
    if a.ndim == 0 or a.ndim > 2:
        raise AudioError(f"audio must be 1-D (mono) or 2-D (channels), got shape {a.shape}")
    if a.size == 0:
        raise AudioError("audio is empty (0 samples)")
    if kind in "iu":
        bits = a.dtype.itemsize * 8
        a = a.astype(np.float32)
        if kind == "u":
            a -= np.float32(2 ** (bits - 1))
        a *= np.float32(1.0 / 2 ** (bits - 1))
        owned = True
    elif a.dtype != np.float32:
        a = a.astype(np.float32)
        owned = True
    if a.ndim == 2:
        a = downmix(a)
        owned = True
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
        owned = True
    return _sanitize(a, owned=owned)


def downmix(a: np.ndarray) -> np.ndarray:
    """A 2-D array's channels averaged to mono float32 (files, arrays and live frames alike).

    The channel axis is the short one, at most `MAX_CHANNELS` long (a longer short axis
    is a mis-shaped array, refused rather than guessed); channels last when both could be.
    """
    rows, cols = a.shape
    if rows == 1:  # (1, n), also an empty frame (1, 0)
        return a[0].astype(np.float32)
    if 0 < cols <= MAX_CHANNELS and cols <= rows:
        return a.mean(axis=1, dtype=np.float32) if cols > 1 else a[:, 0].astype(np.float32)
    if rows <= MAX_CHANNELS:
        return a.mean(axis=0, dtype=np.float32) if rows > 1 else a[0].astype(np.float32)
    raise AudioError(
        f"cannot tell the channel axis of audio of shape {a.shape}; "
        f"expected (channels, n) or (n, channels) with at most {MAX_CHANNELS} channels"
    )


def _sanitize(a: np.ndarray, *, owned: bool) -> np.ndarray:
    """Repair or refuse non-finite samples and clip to [-1, 1]; copies only if it must."""
    lo, hi = float(a.min()), float(a.max())  # NaN propagates, so this also finds NaN
    if not (np.isfinite(lo) and np.isfinite(hi)):
        bad = ~np.isfinite(a)
        n_bad = int(np.count_nonzero(bad))
        if n_bad == a.size:
            raise AudioError("audio contains only NaN/Inf samples")
        if n_bad > MAX_NONFINITE_FRACTION * a.size:
            raise AudioError(
                f"audio contains {n_bad} NaN/Inf samples out of {a.size} "
                f"(more than {MAX_NONFINITE_FRACTION:.0%}); the signal is unusable"
            )
        log.warning("audio: replaced %d NaN/Inf sample(s) out of %d with 0", n_bad, a.size)
        if not owned:
            a = a.copy()
            owned = True
        a[bad] = 0.0
        lo, hi = float(a.min()), float(a.max())
    if lo < -1.0 or hi > 1.0:
        peak = max(-lo, hi)
        (log.warning if peak > 2.0 else log.debug)(
            "audio: clipping samples to [-1, 1] (peak %.3g)%s",
            peak,
            "; was integer PCM passed as float?" if peak > 2.0 else "",
        )
        if not owned:
            a = a.copy()
        np.clip(a, -1.0, 1.0, out=a)
    return a
