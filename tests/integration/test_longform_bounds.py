"""Issue 12: every piece of a long file went to the engine at once (~500 for 4 hours: ~0.9 GB
of encoder features on top of the audio). Now at most MAX_WINDOWS_IN_FLIGHT at a time, and
the frame energy of the split is float32, block by block (was a float64 copy and its square)."""

from __future__ import annotations

import asyncio

import numpy as np

from engine.base import SAMPLE_RATE, DecodeRequest, EngineInfo, Segment, Transcription
from engine.longform import MAX_WINDOWS_IN_FLIGHT, _frame_energy_db, transcribe_long


class _CountingDecoder:
    info = EngineInfo(model="m", engine="fake", device="cpu", multilingual=False)

    def __init__(self) -> None:
        self.in_flight = 0
        self.most = 0
        self.calls = 0

    async def transcribe_window(self, request: DecodeRequest, offset: float = 0.0) -> Transcription:
        self.in_flight += 1
        self.calls += 1
        self.most = max(self.most, self.in_flight)
        await asyncio.sleep(0.001)
        self.in_flight -= 1
        d = request.duration
        return Transcription("word", "en", d, [Segment(offset, offset + d, "word")])

    async def detect_language(self, audio: np.ndarray, priority: int = 0) -> str:
        return "en"


async def test_a_long_file_keeps_a_bounded_number_of_windows_in_the_engine():
    rng = np.random.default_rng(0)
    # 15 minutes of noise bursts with pauses: ~35 pieces.
    second = np.concatenate([0.1 * rng.standard_normal(SAMPLE_RATE // 2), np.zeros(SAMPLE_RATE // 2)]).astype(np.float32)
    audio = np.tile(second, 15 * 60)
    decoder = _CountingDecoder()
    result = await transcribe_long(decoder, DecodeRequest(audio, language="en"))
    assert decoder.calls > MAX_WINDOWS_IN_FLIGHT
    assert decoder.most <= MAX_WINDOWS_IN_FLIGHT
    assert len(result.segments) == decoder.calls


def test_frame_energy_is_float32_and_matches_the_float64_formula():
    rng = np.random.default_rng(1)
    audio = (0.05 * rng.standard_normal(SAMPLE_RATE * 90)).astype(np.float32)
    energy = _frame_energy_db(audio)
    hop = 320
    frames = audio[: len(audio) // hop * hop].reshape(-1, hop).astype(np.float64)
    reference = 20 * np.log10(np.sqrt(np.mean(frames**2, axis=1) + 1e-12))
    assert energy.dtype == np.float32
    assert np.abs(energy - reference).max() < 1e-3
    assert _frame_energy_db(np.zeros(SAMPLE_RATE, np.float32)).max() < -100
