"""Silero VAD v6 via onnxruntime: shared session, per-connection state."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from streaming.vad import (
    CONTEXT_SAMPLES,
    WINDOW_SAMPLES,
    SileroVAD,
    model_path,
    shared_session,
)

ROOT = Path(__file__).resolve().parents[2]
from tests.datasets import TEST_DATA

SPEECH_CLIP = TEST_DATA / "clips" / "ljspeech_coqui__LJ001-0001.flac"


def load(path: Path) -> np.ndarray:
    audio, rate = sf.read(path, dtype="float32")
    assert rate == 16_000 and audio.ndim == 1
    return audio


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return load(SPEECH_CLIP)


def test_model_file_and_input_names() -> None:
    path = model_path()
    assert path.name == "silero_vad.onnx" and path.is_file()
    session = shared_session()
    inputs = {i.name: i for i in session.get_inputs()}
    assert set(inputs) == {"input", "state", "sr"}
    assert inputs["state"].shape[0] == 2 and inputs["state"].shape[2] == 128
    assert session is shared_session()  # one per process
    assert WINDOW_SAMPLES == 512 and CONTEXT_SAMPLES == 64


def test_an_air_gapped_copy_of_the_model_is_used_when_named(tmp_path, monkeypatch) -> None:
    import shutil

    copy = tmp_path / "vad.onnx"
    shutil.copy(model_path(), copy)
    monkeypatch.setenv("SILERO_VAD_ONNX", str(copy))
    assert model_path() == copy
    session = shared_session()
    assert {i.name for i in session.get_inputs()} == {"input", "state", "sr"}
    monkeypatch.setenv("SILERO_VAD_ONNX", str(tmp_path / "missing.onnx"))
    with pytest.raises(RuntimeError, match="missing.onnx"):
        model_path()


def test_does_not_import_torch_or_silero_package() -> None:
    code = (
        "import sys, numpy as np\n"
        "from streaming.vad import SileroVAD\n"
        "p = SileroVAD().process(np.zeros(1600, np.float32))\n"
        "assert len(p) == 3\n"
        "print(sorted(m for m in ('torch', 'silero_vad') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"


def test_speech_is_speech_and_silence_is_not(speech) -> None:
    probs = np.array(SileroVAD().process(speech))
    assert len(probs) == len(speech) // WINDOW_SAMPLES
    assert np.mean(probs > 0.5) > 0.7
    silence = load(TEST_DATA / "clips" / "nonspeech__silence_10s.flac")
    assert max(SileroVAD().process(silence)) < 0.1


def test_matches_the_reference_implementation(speech) -> None:
    """Same probabilities as silero-vad's own OnnxWrapper (context + state handling)."""
    torch = pytest.importorskip("torch")
    from silero_vad.utils_vad import OnnxWrapper

    n = len(speech) // WINDOW_SAMPLES * WINDOW_SAMPLES
    ref = OnnxWrapper(str(model_path()), force_onnx_cpu=True)
    expected = ref.audio_forward(torch.from_numpy(speech[:n].copy()), 16_000).numpy()[0]
    ours = np.array(SileroVAD().process(speech[:n]))
    assert np.max(np.abs(ours - expected)) < 1e-5


def test_chunking_does_not_change_results(speech) -> None:
    whole = SileroVAD().process(speech)
    vad = SileroVAD()
    rng = np.random.default_rng(0)
    got: list[float] = []
    i = 0
    while i < len(speech):
        step = int(rng.integers(1, 1500))
        got += vad.process(speech[i : i + step])
        i += step
    assert np.allclose(got, whole, atol=1e-6)
    assert vad.pending_samples == len(speech) % WINDOW_SAMPLES
    assert vad.samples_done == len(whole) * WINDOW_SAMPLES


def test_process_windows_returns_audio_and_position(speech) -> None:
    vad = SileroVAD()
    vad.process(speech[:100])
    windows = vad.process_windows(speech[100:2000])
    assert [w.start for w in windows] == [0, 512, 1024]
    assert np.array_equal(windows[1].audio, speech[512:1024])
    assert vad.pending_samples == 2000 - 3 * 512


def test_copy_and_reset(speech) -> None:
    vad = SileroVAD()
    first = vad.process(speech[: 16_000 + 100])
    clone = vad.copy()
    rest = speech[16_000 + 100 : 48_000]
    assert np.allclose(vad.process(rest), clone.process(rest))
    vad.reset()
    assert vad.pending_samples == 0 and vad.samples_done == 0
    assert np.allclose(vad.process(speech[: 16_000 + 100]), first)


def test_sessions_are_shared_safely_across_threads() -> None:
    clips = [
        load(TEST_DATA / "clips" / name)
        for name in (
            "ljspeech_coqui__LJ001-0001.flac",
            "ljspeech_coqui__LJ001-0002.flac",
            "ljspeech_coqui__LJ001-0003.flac",
            "nonspeech__pink_noise_m20dBFS_10s.flac",
        )
    ]
    expected = [SileroVAD().process(c) for c in clips]
    results: list[list[float] | None] = [None] * len(clips)

    def work(i: int) -> None:
        vad = SileroVAD()
        out: list[float] = []
        for k in range(0, len(clips[i]), 960):
            out += vad.process(clips[i][k : k + 960])
        results[i] = out

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(clips))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected):
        assert got is not None and np.allclose(got, want, atol=1e-6)


@pytest.mark.parametrize(
    "chunk",
    [
        np.zeros(512, np.int16),
        np.zeros((1, 512), np.float32),
        np.zeros(512, np.float64),
    ],
)
def test_rejects_non_float32_mono(chunk) -> None:
    with pytest.raises(ValueError, match="1-D float32"):
        SileroVAD().process(chunk)


def test_english_clips_are_mostly_speech() -> None:
    """Every English clip of the test set has at least a quarter second of confident speech."""
    lines = [
        json.loads(line) for line in (TEST_DATA / "manifest.jsonl").read_text().splitlines()
    ]
    clips = [m for m in lines if m["kind"] == "speech" and m["lang"] == "en"]
    weak = []
    for m in clips:
        probs = np.array(SileroVAD().process(load(TEST_DATA / m["audio"])))
        if np.sum(probs > 0.5) * 0.032 < 0.25:
            weak.append(m["audio"])
    assert not weak


def test_recordings_batched_get_the_same_probabilities_and_regions_as_one_by_one(speech) -> None:
    """The word aligner runs the VAD over a batch of windows at once: the same numbers as
    each recording alone, whatever their lengths (shorter than one window included)."""
    from engine.vad import speech_probabilities, speech_probabilities_of, speech_regions, speech_regions_of

    audios = [speech, np.zeros(16000, np.float32), speech[: len(speech) // 3], np.zeros(100, np.float32), np.concatenate([speech, speech])]
    batched = speech_probabilities_of(audios)
    for audio, probs in zip(audios, batched):
        assert np.array_equal(probs, speech_probabilities(audio))
    assert speech_regions_of(audios, pad_s=0.0) == [speech_regions(a, pad_s=0.0) for a in audios]
    assert speech_probabilities_of([]) == []
