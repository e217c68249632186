"""engine.audio on a two-hour file (seconds to minutes: a 230 MB decode): refused from its
header when too long, decoded fully and fast enough when allowed. The rest of
engine.audio: tests/unit/test_audio.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from engine.audio import load_audio
from engine.base import SAMPLE_RATE, AudioError


TWO_HOURS = 2 * 3600


@pytest.fixture(scope="module")
def two_hour_flac(tmp_path_factory) -> Path:
    """Two hours of a 440 Hz tone at 16 kHz, like `sox -n -r 16000 -c 1 x.flac synth 7200 sine 440`."""
    path = tmp_path_factory.mktemp("long") / "two_hours.flac"
    block = 600 * SAMPLE_RATE  # 10 minutes, a whole number of periods of 440 Hz
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(block) / SAMPLE_RATE)).astype(np.float32)
    with soundfile.SoundFile(path, "w", SAMPLE_RATE, 1, subtype="PCM_16") as f:
        for _ in range(TWO_HOURS * SAMPLE_RATE // block):
            f.write(tone)
    return path


def test_two_hour_file_is_refused_without_decoding_it(two_hour_flac):
    start = time.perf_counter()
    with pytest.raises(AudioError, match="too long") as info:
        load_audio(two_hour_flac, max_seconds=3600)
    assert time.perf_counter() - start < 1.0  # from the header, not by decoding an hour first
    assert "7200 s (2:00:00)" in str(info.value) and "3600 s (1:00:00)" in str(info.value)


@pytest.mark.slow
def test_two_hour_file_decodes_fully(two_hour_flac):
    start = time.perf_counter()
    audio = load_audio(two_hour_flac, max_seconds=4 * 3600)
    elapsed = time.perf_counter() - start
    assert len(audio) == TWO_HOURS * SAMPLE_RATE
    assert audio.dtype == np.float32
    assert elapsed < 30, f"decoding two hours took {elapsed:.1f} s"
    for t in (0, 3600, TWO_HOURS - 1):  # the tone is there from start to end
        piece = audio[t * SAMPLE_RATE : (t + 1) * SAMPLE_RATE]
        assert np.sqrt(np.mean(piece**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.01)
