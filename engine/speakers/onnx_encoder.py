"""Speaker embeddings from a WeSpeaker-style ONNX model (`SPEAKER_ENCODER=hub:...`).

Why: stronger speaker encoders (WeSpeaker's ResNet34 / CAM++ / ECAPA-TDNN exports, 3D-Speaker
CAM++ via sherpa-onnx) ship as ONNX files on the Hugging Face hub, not inside a PyPI package
(BENCHMARKS.md, "Speakers", lists the packages checked). They all take the same input:
80-dim Kaldi log-mel filterbanks (25 ms frames every 10 ms, 16-bit sample scale, Hamming
window as WeSpeaker computes them), mean-normalised over the clip, shaped (batch, frames,
80), and give one embedding per clip (batch, dim). The features come from transformers'
audio_utils (the Kaldi-compatible path its SeamlessM4T extractor uses), not torchaudio
(not installed) or librosa (numba breaks vLLM's start, see encoder.py).

The interface is `VoiceEncoder`'s: 1.6 s windows every `hop_s`, whole-clip utterance
embeddings, unit-length; so diarization and live labels run unchanged on either.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import ClassVar

import numpy as np

from engine.base import SAMPLE_RATE
from engine.speakers.encoder import BATCH, WINDOW_FRAMES, Windows, window_starts

#: Kaldi framing (frame_length 25 ms, frame_shift 10 ms, snip_edges: whole frames only).
FRAME = int(SAMPLE_RATE * 0.025)
SHIFT = int(SAMPLE_RATE * 0.010)
FFT = 512
FBANK_BINS = 80
#: Kaldi's log floor (float32 epsilon) and its 16-bit sample scale.
LOG_FLOOR = 1.192092955078125e-07
SAMPLE_SCALE = 2**15


class FbankFeatures:
    """Kaldi fbank (80 bins, 20 Hz to Nyquist, pre-emphasis 0.97, DC removed per frame) with
    transformers' spectrogram; the filterbank and window are built once."""

    def __init__(self, window_type: str = "hamming") -> None:
        from transformers.audio_utils import mel_filter_bank, window_function

        self._filters = mel_filter_bank(
            num_frequency_bins=FFT // 2 + 1, num_mel_filters=FBANK_BINS, min_frequency=20,
            max_frequency=SAMPLE_RATE // 2, sampling_rate=SAMPLE_RATE, norm=None,
            mel_scale="kaldi", triangularize_in_mel_space=True,
        )
        self._window = window_function(FRAME, window_type, periodic=False)

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """(frames, 80) log-mel energies, frames = 1 + (samples - 400) // 160 (audio shorter
        than one frame is zero-padded to one)."""
        from transformers.audio_utils import spectrogram

        audio = np.asarray(audio, dtype=np.float32)
        if len(audio) < FRAME:
            audio = np.pad(audio, (0, FRAME - len(audio)))
        return spectrogram(
            audio * SAMPLE_SCALE, self._window, frame_length=FRAME, hop_length=SHIFT, fft_length=FFT,
            power=2.0, center=False, preemphasis=0.97, mel_filters=self._filters, log_mel="log",
            mel_floor=LOG_FLOOR, remove_dc_offset=True,
        ).T.astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)).astype(np.float32)


class OnnxEncoder:
    """An ONNX speaker model run by onnxruntime on the CPU; calls are serialized and
    synchronous, like `VoiceEncoder`'s (callers use a worker thread)."""

    kind: ClassVar[str] = "onnx"

    def __init__(self, path: Path | str) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 3 or inputs[0].shape[-1] not in (FBANK_BINS, "feat_dim", None):
            raise ValueError(f"{path}: expected one input of (batch, frames, {FBANK_BINS}) filterbanks, got "
                             f"{[(i.name, i.shape) for i in inputs]}")
        self._input, self._output = inputs[0].name, outputs[0].name
        dim = outputs[0].shape[-1]
        self._dim = dim if isinstance(dim, int) else 0
        self._features = FbankFeatures()
        self._lock = threading.Lock()

    def _embed(self, feats: np.ndarray) -> np.ndarray:
        """(n, frames, 80) mean-normalised features -> (n, dim) unit-length embeddings."""
        out = []
        with self._lock:
            for i in range(0, len(feats), BATCH):
                chunk = np.ascontiguousarray(feats[i : i + BATCH], dtype=np.float32)
                out.append(np.asarray(self._session.run([self._output], {self._input: chunk})[0], dtype=np.float32))
        return _unit(np.concatenate(out).reshape(len(feats), -1))

    def windows(self, audio: np.ndarray, hop_s: float = 0.4) -> Windows:
        """Embeddings of 1.6 s windows (160 frames, each mean-normalised) every `hop_s`
        (the last ends at the audio's end; shorter audio is zero-padded to one window)."""
        need = FRAME + (WINDOW_FRAMES - 1) * SHIFT
        audio = np.asarray(audio, dtype=np.float32)
        if len(audio) < need:
            audio = np.pad(audio, (0, need - len(audio)))
        feats = self._features(audio)
        starts = window_starts(len(feats), max(1, round(hop_s * SAMPLE_RATE / SHIFT)))
        batch = np.stack([feats[s : s + WINDOW_FRAMES] for s in starts])
        batch -= batch.mean(axis=1, keepdims=True)
        # A window's frames span samples [s * SHIFT, (s + 159) * SHIFT + FRAME).
        centers = (np.asarray(starts) * SHIFT + ((WINDOW_FRAMES - 1) * SHIFT + FRAME) / 2) / SAMPLE_RATE
        return Windows(centers=centers, embeddings=self._embed(batch))

    def utterance(self, audio: np.ndarray) -> np.ndarray:
        """One unit-length embedding of a whole clip (the model pools over all its frames)."""
        need = FRAME + (WINDOW_FRAMES - 1) * SHIFT
        audio = np.asarray(audio, dtype=np.float32)
        feats = self._features(np.pad(audio, (0, max(0, need - len(audio)))))
        return self._embed((feats - feats.mean(axis=0))[None])[0]

    def utterances(self, clips: list[np.ndarray]) -> np.ndarray:
        """(len(clips), dim): each clip's utterance embedding."""
        if not clips:
            return np.zeros((0, self._dim), np.float32)
        return np.stack([self.utterance(c) for c in clips])
