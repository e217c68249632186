"""engine.audio: every common format decodes to 16 kHz mono float32; bad input fails clearly.

Test files are made at run time from a real clip of the evaluation set, encoded with PyAV
itself, so nothing binary is committed.
"""

from __future__ import annotations

import io
import logging
import wave
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
import soxr

from evaluation import clips
from tests.datasets import TEST_DATA
from engine.audio import decode_pcm16, load_audio, validate_audio
from engine.base import SAMPLE_RATE, AudioError


@pytest.fixture(scope="module")
def jfk_path() -> Path:
    return next(c.path for c in clips(kind="speech", lang="en", base=TEST_DATA) if "jfk" in c.name)


@pytest.fixture(scope="module")
def speech(jfk_path) -> np.ndarray:
    audio, rate = soundfile.read(jfk_path, dtype="float32")
    assert rate == SAMPLE_RATE and audio.ndim == 1
    return audio


def encode(path: Path, channels: np.ndarray, rate: int, codec: str, layout: str) -> Path:
    """Write `channels` (channels x samples, float) with PyAV; the container comes from the suffix."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        step = 4000  # frames of any size: PyAV re-frames for codecs with a fixed frame size
        for i in range(0, channels.shape[1], step):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(channels[:, i : i + step], dtype=np.float32),
                format="fltp",
                layout=layout,
            )
            frame.sample_rate = rate
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def alignment(decoded: np.ndarray, reference: np.ndarray, max_lag: int) -> tuple[int, float, float]:
    """(lag in samples, Pearson correlation, least-squares gain) of decoded vs reference."""
    nfft = 1 << (len(decoded) + len(reference)).bit_length()
    xc = np.fft.irfft(np.fft.rfft(decoded, nfft) * np.conj(np.fft.rfft(reference, nfft)), nfft)
    lags = np.r_[0 : max_lag + 1, -max_lag:0]
    lag = int(lags[np.argmax(xc[lags])])
    a = decoded[lag:] if lag >= 0 else decoded
    b = reference if lag >= 0 else reference[-lag:]
    n = min(len(a), len(b))
    a, b = a[:n].astype(np.float64), b[:n].astype(np.float64)
    return lag, float(np.corrcoef(a, b)[0, 1]), float(a @ b / (b @ b))


# name, sample rate, codec, layout, lossless
FORMATS = [
    ("int16_8k_stereo.wav", 8000, "pcm_s16le", "stereo", True),
    ("float_44k.wav", 44100, "pcm_f32le", "mono", True),
    ("48k_stereo.flac", 48000, "flac", "stereo", True),
    ("48k_stereo.ogg", 48000, "libopus", "stereo", False),
    ("44k_stereo.mp3", 44100, "libmp3lame", "stereo", False),
    ("44k.m4a", 44100, "aac", "mono", False),
    ("48k.webm", 48000, "libopus", "mono", False),
]


@pytest.mark.parametrize("name,rate,codec,layout,lossless", FORMATS, ids=[f[0] for f in FORMATS])
def test_formats_decode_to_16k_mono(tmp_path, speech, name, rate, codec, layout, lossless):
    signal = soxr.resample(speech, SAMPLE_RATE, rate)
    # Stereo files carry the speech at full level left and half level right: the mono mix is 0.75.
    channels = np.stack([signal, 0.5 * signal]) if layout == "stereo" else signal[None]
    path = encode(tmp_path / name, channels, rate, codec, layout)

    audio = load_audio(path)

    assert audio.dtype == np.float32 and audio.ndim == 1 and audio.flags.c_contiguous
    assert np.abs(audio).max() <= 1.0
    assert abs(len(audio) / SAMPLE_RATE - len(speech) / SAMPLE_RATE) <= 0.05
    lag, corr, gain = alignment(audio, speech, max_lag=int(0.05 * SAMPLE_RATE))  # codec delay tolerance
    assert corr >= (0.995 if lossless else 0.98), (lag, corr)
    assert gain == pytest.approx(0.75 if layout == "stereo" else 1.0, rel=0.05)


def test_16k_flac_is_decoded_exactly(jfk_path, speech):
    audio = load_audio(jfk_path)
    assert len(audio) == len(speech)
    np.testing.assert_allclose(audio, speech, atol=1e-6)


def test_bytes_and_file_objects(tmp_path, jfk_path, speech):
    data = jfk_path.read_bytes()
    from_path = load_audio(str(jfk_path))
    np.testing.assert_array_equal(load_audio(data), from_path)
    np.testing.assert_array_equal(load_audio(bytearray(data)), from_path)
    np.testing.assert_array_equal(load_audio(io.BytesIO(data)), from_path)
    with open(jfk_path, "rb") as f:
        np.testing.assert_array_equal(load_audio(f), from_path)


def test_surround_is_averaged_without_lfe(tmp_path):
    rate = 48000
    levels = np.array([0.5, 0.5, 0.9, 1.0, 0.2, 0.2], dtype=np.float32)  # FL FR FC LFE BL BR
    path = encode(
        tmp_path / "surround.wav",
        np.tile(levels[:, None], (1, rate)),
        rate,
        "pcm_f32le",
        "5.1",
    )
    audio = load_audio(path)
    assert len(audio) == SAMPLE_RATE
    np.testing.assert_allclose(audio[1000:-1000], (0.5 + 0.5 + 0.9 + 0.2 + 0.2) / 5, atol=1e-4)


def test_float_wav_with_nan_and_overs(tmp_path, speech):
    bad = speech.copy()
    bad[[100, 2000, 30000]] = [np.nan, np.inf, -np.inf]
    bad[5000:5010] = 3.0
    path = tmp_path / "bad_samples.wav"
    soundfile.write(path, bad, SAMPLE_RATE, subtype="FLOAT")
    audio = load_audio(path)
    assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0
    assert audio[100] == 0 and audio[2000] == 0 and audio[5005] == 1.0


# -- bad input ---------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="not found"):
        load_audio(tmp_path / "nope.wav")


def test_directory(tmp_path):
    with pytest.raises(AudioError, match="directory"):
        load_audio(tmp_path)


def test_empty_file_and_bytes(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        load_audio(path)
    with pytest.raises(AudioError, match="empty"):
        load_audio(b"")
    with pytest.raises(AudioError, match="empty"):
        load_audio(io.BytesIO())


def test_header_only_wav(tmp_path):
    path = tmp_path / "zero.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
    assert path.stat().st_size == 44
    with pytest.raises(AudioError, match="no audio samples"):
        load_audio(path)


@pytest.mark.parametrize("name", ["noise.wav", "noise.flac", "noise.mp3", "noise.bin"])
def test_random_bytes(tmp_path, name):
    data = np.random.default_rng(0).integers(0, 256, 100_000, dtype=np.uint8).tobytes()
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(AudioError, match="not a readable audio file"):
        load_audio(path)
    with pytest.raises(AudioError, match="not a readable audio file"):
        load_audio(data)


def test_text_file_renamed_wav(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("This is a text file, not audio.\n" * 20)
    with pytest.raises(AudioError, match="notes.wav is not a readable audio file"):
        load_audio(path)


def test_video_without_sound(tmp_path):
    path = tmp_path / "silent_film.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    with pytest.raises(AudioError, match="no audio stream"):
        load_audio(path)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name,rate,codec,layout,lossless", FORMATS, ids=[f[0] for f in FORMATS])
def test_truncated_files_decode_what_is_there_or_fail_clearly(tmp_path, speech, name, rate, codec, layout, lossless):
    signal = soxr.resample(speech, SAMPLE_RATE, rate)
    full = encode(
        tmp_path / name,
        np.stack([signal] * (2 if layout == "stereo" else 1)),
        rate,
        codec,
        layout,
    )
    data = full.read_bytes()
    cut = tmp_path / f"cut_{name}"
    cut.write_bytes(data[: len(data) // 2])
    try:
        audio = load_audio(cut)
    except AudioError as exc:
        assert str(exc)
    else:
        assert 0 < len(audio) <= len(speech) + 0.05 * SAMPLE_RATE
        assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0


@pytest.mark.timeout(60)
def test_truncated_flac_keeps_the_first_half(tmp_path, jfk_path, speech, caplog):
    data = jfk_path.read_bytes()
    cut = tmp_path / "cut.flac"
    cut.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="engine.audio"):
        audio = load_audio(cut)
    assert 0.3 * len(speech) < len(audio) < 0.7 * len(speech)
    np.testing.assert_allclose(audio[: len(audio) - 4096], speech[: len(audio) - 4096], atol=1e-6)
    assert "truncated" in caplog.text


@pytest.mark.timeout(60)
def test_damaged_middle_decodes_or_fails_clearly(tmp_path, jfk_path, speech):
    data = bytearray(jfk_path.read_bytes())
    rng = np.random.default_rng(3)
    start = len(data) // 3
    data[start : start + 5000] = rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()
    try:
        audio = load_audio(bytes(data))
    except AudioError:
        return
    assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0
    assert len(audio) <= len(speech) + SAMPLE_RATE


# -- length limit --------------------------------------------------------------------------


class NonSeekable(io.RawIOBase):
    """A pipe-like reader: no size, no seeking, so no duration from metadata."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_max_seconds(jfk_path):
    with pytest.raises(AudioError, match="too long"):
        load_audio(jfk_path, max_seconds=5)
    assert len(load_audio(jfk_path, max_seconds=11)) == 11 * SAMPLE_RATE  # exactly at the limit
    with pytest.raises(ValueError):
        load_audio(jfk_path, max_seconds=0)


def test_max_seconds_without_metadata_is_enforced_while_decoding(tmp_path, speech):
    path = encode(
        tmp_path / "speech.ogg",
        soxr.resample(speech, SAMPLE_RATE, 48000)[None],
        48000,
        "libopus",
        "mono",
    )
    data = path.read_bytes()
    assert len(load_audio(NonSeekable(data))) == pytest.approx(len(speech), abs=0.05 * SAMPLE_RATE)
    with pytest.raises(AudioError, match="too long"):
        load_audio(NonSeekable(data), max_seconds=5)


# -- arrays ----------------------------------------------------------------------------


def test_validate_valid_array_is_returned_as_is():
    audio = np.linspace(-1, 1, SAMPLE_RATE, dtype=np.float32)
    assert validate_audio(audio) is audio


def test_validate_converts_dtype_and_shape():
    pcm = np.array([0, 16384, -32768, 32767], dtype=np.int16)
    np.testing.assert_allclose(validate_audio(pcm), [0, 0.5, -1, 32767 / 32768])
    np.testing.assert_allclose(validate_audio(np.array([0, 255, 128], dtype=np.uint8)), [-1, 127 / 128, 0])
    out = validate_audio(np.array([0.25, -0.5], dtype=np.float64))
    assert out.dtype == np.float32
    stereo = np.array([[0.5, 0.1], [0.3, -0.3], [1.0, 0.0]])  # (samples, channels), as soundfile reads
    np.testing.assert_allclose(validate_audio(stereo), [0.3, 0.0, 0.5])
    np.testing.assert_allclose(validate_audio(stereo.T.copy()), [0.3, 0.0, 0.5])  # (channels, samples)
    assert validate_audio([0.0, 0.5]).dtype == np.float32  # a plain list


def test_validate_clips_without_touching_the_input():
    audio = np.array([0.5, 1.5, -2.0], dtype=np.float32)
    np.testing.assert_array_equal(validate_audio(audio), [0.5, 1.0, -1.0])
    np.testing.assert_array_equal(audio, [0.5, 1.5, -2.0])


def test_validate_nan(caplog):
    with pytest.raises(AudioError, match="NaN"):
        validate_audio(np.full(SAMPLE_RATE, np.nan, dtype=np.float32))
    many = np.zeros(1000, dtype=np.float32)
    many[:50] = np.nan  # 5 %
    with pytest.raises(AudioError, match="NaN"):
        validate_audio(many)
    few = np.full(SAMPLE_RATE, 0.1, dtype=np.float32)
    few[[3, 500]] = [np.nan, np.inf]
    with caplog.at_level(logging.WARNING, logger="engine.audio"):
        out = validate_audio(few)
    assert out[3] == 0 and out[500] == 0 and np.isfinite(out).all()
    assert np.isnan(few[3])  # the caller's array is left alone
    assert "NaN" in caplog.text


@pytest.mark.parametrize(
    "bad",
    [
        np.array([], dtype=np.float32),
        np.zeros((0, 2)),
        np.float32(0.5),
        np.zeros((2, 2, 2)),
        np.array(["a", "b"]),
    ],
    ids=["empty", "empty-2d", "scalar", "3-d", "strings"],
)
def test_validate_refuses(bad):
    with pytest.raises(AudioError):
        validate_audio(bad)


def test_decode_pcm16():
    data = np.array([0, 16384, -32768, 32767], dtype="<i2").tobytes()
    out = decode_pcm16(data)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [0, 0.5, -1, 32767 / 32768])
    assert len(decode_pcm16(b"")) == 0
    np.testing.assert_array_equal(decode_pcm16(bytearray(data)), out)
    with pytest.raises(AudioError, match="even number of bytes"):
        decode_pcm16(b"\x00\x01\x02")


def test_is_silent_needs_one_sounding_frame():
    from engine.longform import is_silent

    rng = np.random.default_rng(0)
    assert is_silent(np.zeros(16000, np.float32))
    assert is_silent((rng.standard_normal(16000) * 3e-5).astype(np.float32))  # dither, about -90 dBFS
    quiet_word = np.zeros(16000, np.float32)
    quiet_word[8000:8320] = (rng.standard_normal(320) * 0.003).astype(np.float32)  # 20 ms at -50 dBFS
    assert not is_silent(quiet_word)
