"""`python -m engine transcribe`: the command line as a user runs it, bad files included."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests.datasets import TEST_DATA
from evaluation import clips, normalize, read_audio, wer
from engine.audio import load_audio
from engine.base import SAMPLE_RATE, DecodeRequest

ROOT = Path(__file__).resolve().parents[2]
JFK_TEXT = "and so my fellow americans ask not what your country can do for you ask what you can do for your country"


def jfk_path() -> Path:
    return next(c.path for c in clips(kind="speech", lang="en", base=TEST_DATA) if "jfk" in c.name)


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, ENFORCE_EAGER="true")  # a 10 s start instead of a 40 s compile
    return subprocess.run(
        [sys.executable, "-m", "engine", "transcribe", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_cli_prints_jfk_sentence():
    proc = run_cli(str(jfk_path()))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert normalize(proc.stdout) == JFK_TEXT
    assert len(proc.stdout.strip().splitlines()) == 1  # only the transcript on stdout, logs on stderr


def test_cli_json_and_srt(tmp_path):
    proc = run_cli(str(jfk_path()), "--format", "json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout)
    assert normalize(data["text"]) == JFK_TEXT
    assert data["language"] == "en" and data["duration"] == pytest.approx(11.0, abs=0.01)
    assert data["segments"] and all(s["end"] > s["start"] for s in data["segments"])
    assert data["segments"][-1]["end"] <= 11.0 + 1e-6


def test_cli_word_timestamps_give_short_word_timed_cues():
    """Issue 18: `--word-timestamps` with srt: cues of at most --cue-words words, in order,
    inside the audio (one segment of 11 s was one cue before)."""
    proc = run_cli(str(jfk_path()), "--format", "srt", "--word-timestamps", "--cue-words", "4")
    assert proc.returncode == 0, proc.stderr[-2000:]
    blocks = [b.splitlines() for b in proc.stdout.strip().split("\n\n")]
    assert len(blocks) >= 6, proc.stdout  # 22 words
    times = [[_srt_seconds(t) for t in block[1].split(" --> ")] for block in blocks]
    assert all(len(block[2].split()) <= 4 for block in blocks)
    assert all(0.0 <= a <= b <= 11.0 for a, b in times) and times == sorted(times)
    assert normalize(" ".join(block[2] for block in blocks)) == JFK_TEXT


def _srt_seconds(stamp: str) -> float:
    h, m, s = stamp.replace(",", ".").split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("empty.wav", b"", "empty"),
        ("notes.wav", b"This is a text file, not audio.\n" * 20, "audio"),
        ("noise.flac", bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), "audio"),
    ],
)
def test_cli_bad_files_fail_clearly(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    proc = run_cli(str(path), timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert message in proc.stderr.lower()


def test_cli_missing_file(tmp_path):
    proc = run_cli(str(tmp_path / "nope.wav"), timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


async def test_8khz_stereo_file(engine, tmp_path):
    audio = read_audio(jfk_path())
    import soxr

    low = soxr.resample(audio, SAMPLE_RATE, 8000)
    stereo = np.stack([low, low * 0.5], axis=1)
    path = tmp_path / "jfk8k.wav"
    soundfile.write(path, stereo, 8000, subtype="PCM_16")
    loaded = load_audio(path)
    assert loaded.ndim == 1 and abs(len(loaded) - len(audio)) < 0.01 * SAMPLE_RATE  # mono, back at 16 kHz
    result = await engine.transcribe(DecodeRequest(loaded))
    # Telephone bandwidth costs tiny.en a plural ("america"); the sentence must survive.
    assert wer([JFK_TEXT], [result.text]) <= 0.1


@pytest.mark.slow
async def test_two_hour_file(engine, tmp_path):
    """Two hours of near-silence with speech in the middle: the speech is found, quickly enough."""
    jfk = read_audio(jfk_path())
    rng = np.random.default_rng(1)
    total = 2 * 3600 * SAMPLE_RATE
    path = tmp_path / "two_hours.flac"
    with soundfile.SoundFile(path, "w", SAMPLE_RATE, 1, subtype="PCM_16") as f:
        block = 600 * SAMPLE_RATE
        for start in range(0, total, block):
            chunk = (rng.standard_normal(block) * 1e-4).astype(np.float32)
            middle = total // 2
            if start <= middle < start + block:
                off = middle - start
                chunk[off : off + len(jfk)] += jfk
            f.write(chunk)
    audio = load_audio(path)
    assert len(audio) == total
    result = await engine.transcribe(DecodeRequest(audio))
    assert JFK_TEXT in normalize(result.text)
    # Whisper starts its first segment at the start of the piece it was given (a quiet
    # point cut up to a few seconds earlier), so the time is checked against that range.
    assert 3600 - 29 < result.segments[0].start <= 3600.5
    assert result.segments[-1].end == pytest.approx(3600 + len(jfk) / SAMPLE_RATE, abs=2.0)


def test_cli_diarize_labels_two_voices(tmp_path):
    """Issue 19: `--diarize` on LJ Speech's reader then JFK: text lines start with the
    speaker, the reader's 'A: ', JFK's 'B: '; json segments carry `speaker`."""
    lj = read_audio(next(c.path for c in clips(kind="speech", lang="en", base=TEST_DATA) if c.name.endswith("LJ001-0001")))
    path = tmp_path / "two.wav"
    soundfile.write(path, np.concatenate([lj, np.zeros(SAMPLE_RATE // 2, np.float32), read_audio(jfk_path())]), SAMPLE_RATE)
    proc = run_cli(str(path), "--diarize")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("A: Printing") and lines[-1].startswith("B: "), lines
    assert {line.split(":")[0] for line in lines} == {"A", "B"}
    assert "americans" in normalize(" ".join(line for line in lines if line.startswith("B: ")))


def test_cli_cpu_dtype_bfloat16_where_the_cpu_can_and_a_clear_refusal_where_it_cannot():
    """`--cpu-dtype bfloat16` (CPU_DTYPE): on a CPU with AVX-512 BF16 / AMX the engine runs
    bf16 and still gets the words right, word times included; elsewhere it says why it runs
    float32 instead, and still transcribes."""
    from engine.vllm_engine import BF16_CPU_FLAGS, cpu_flags

    proc = run_cli(str(jfk_path()), "--cpu-dtype", "bfloat16", "--format", "json", "--word-timestamps", "-v")
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout)
    assert wer([JFK_TEXT], [normalize(data["text"])]) <= 0.05, data["text"]
    words = data["words"]
    assert words and all(0 <= w["start"] <= w["end"] <= 11.0 for w in words)
    if cpu_flags() & BF16_CPU_FLAGS:
        assert "CPU: bfloat16 (CPU_DTYPE=bfloat16" in proc.stderr
    else:
        assert "CPU_DTYPE=bfloat16 refused" in proc.stderr and "CPU: float32" in proc.stderr
