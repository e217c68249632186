"""Speaker embeddings from Resemblyzer's voice encoder, whose weights ship in its PyPI wheel.

Why this model: it is the one speaker encoder found whose weights come inside a PyPI
package (Apache-2.0, 17 MB), so it runs offline on a CPU with nothing fetched at run time
(BENCHMARKS.md, "Speakers", has its scores and the packages checked). It is the default of
`SPEAKER_ENCODER`; stronger models come from the hub as an option (engine/speakers/choice.py). Only the wheel's `pretrained.pt` is used:
the package's own modules import webrtcvad (a C build) at import time, so the network
(a 3-layer LSTM over 40 power-mel bands, 256-d output) is rebuilt here and its features
are computed with numpy (librosa's values; see `mel_filters` for why not librosa).
"""

from __future__ import annotations

import importlib.util
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

import numpy as np

from engine.base import SAMPLE_RATE

#: The encoder's features: 25 ms windows every 10 ms, 40 mel bands (its training setup).
MEL_WINDOW = int(SAMPLE_RATE * 0.025)
MEL_HOP = int(SAMPLE_RATE * 0.010)
MEL_BANDS = 40
#: One embedding covers 1.6 s of audio (160 frames), as the encoder was trained.
WINDOW_FRAMES = 160
WINDOW_S = WINDOW_FRAMES * MEL_HOP / SAMPLE_RATE
#: Loudness the encoder expects (quieter audio is raised to it, louder left alone).
TARGET_DBFS = -30.0
EMBEDDING_SIZE = 256
#: Windows per forward pass: bounds the memory of a long file's batch.
BATCH = 256


class EncoderMissing(RuntimeError):
    """The chosen encoder cannot be loaded: the resemblyzer wheel (which carries the
    weights) is not installed, or a hub model cannot be fetched (engine/speakers/choice.py).
    The API answers it with 503 `speakers_unavailable` (web/diarized.py)."""


def weights_path() -> Path:
    """Where the resemblyzer wheel put `pretrained.pt`, found without importing the package."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise EncoderMissing("speaker labels need the resemblyzer package (scripts/setup.sh installs it)")
    path = Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"
    if not path.is_file():
        raise EncoderMissing(f"resemblyzer is installed but its weights are missing: {path}")
    return path


def normalize_volume(audio: np.ndarray) -> np.ndarray:
    """Raise quiet audio to TARGET_DBFS (the features are power mels, so level matters)."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if len(audio) else 0.0
    if rms <= 1e-6:
        return audio
    gain_db = TARGET_DBFS - 20 * np.log10(rms)
    return audio * (10 ** (gain_db / 20)) if gain_db > 0 else audio


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (the Auditory Toolbox's; librosa's default): linear below 1 kHz, log above."""
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / (200.0 / 3)
    log = hz >= 1000.0
    return np.where(log, 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) / (np.log(6.4) / 27.0), mel)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel - 15.0)), mel * (200.0 / 3))


def mel_filters() -> np.ndarray:
    """(40, 201) triangular mel filterbank, Slaney-normalised, 0 Hz to Nyquist: the one the
    encoder was trained with (librosa.filters.mel's defaults). Built with numpy rather than
    librosa: librosa imports numba and llvmlite, whose objects break vLLM's kernel scan
    of every loaded module when the engine starts after them (AttributeError in
    vllm/triton_utils/dispatcher.py), and its first call costs seconds.
    tests/unit/test_speakers.py compares it with librosa's, in a subprocess."""
    bins = 1 + MEL_WINDOW // 2
    fft_hz = np.linspace(0.0, SAMPLE_RATE / 2, bins)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), MEL_BANDS + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


def mel_frames(audio: np.ndarray, filters: np.ndarray) -> np.ndarray:
    """(frames, 40) power-mel features, one frame every 10 ms: librosa.feature.melspectrogram's
    values (centred frames, periodic Hann window) with numpy's FFT, milliseconds per minute."""
    padded = np.pad(np.asarray(audio, dtype=np.float32), (MEL_WINDOW // 2, MEL_WINDOW // 2))
    count = 1 + (len(padded) - MEL_WINDOW) // MEL_HOP
    index = np.arange(MEL_WINDOW)[None, :] + MEL_HOP * np.arange(count)[:, None]
    window = np.hanning(MEL_WINDOW + 1)[:-1].astype(np.float32)
    power = np.abs(np.fft.rfft(padded[index] * window, axis=1)) ** 2
    return (power @ filters.T).astype(np.float32)


@dataclass(frozen=True)
class Windows:
    """Embeddings of 1.6 s windows: `centers[i]` (seconds) is where `embeddings[i]` sits."""

    centers: np.ndarray
    embeddings: np.ndarray


class SpeakerEncoder(Protocol):
    """What diarization and live labels need of a voice encoder (`VoiceEncoder` here, the
    hub's ONNX models in engine/speakers/onnx_encoder.py); `kind` keys its clustering
    thresholds (engine/speakers/choice.py, THRESHOLDS)."""

    kind: ClassVar[str]

    def windows(self, audio: np.ndarray, hop_s: float = 0.4) -> Windows: ...

    def utterance(self, audio: np.ndarray) -> np.ndarray: ...

    def utterances(self, clips: list[np.ndarray]) -> np.ndarray: ...


def window_starts(frames: int, hop: int) -> list[int]:
    """First frame of each WINDOW_FRAMES window every `hop` frames over `frames` (at least
    WINDOW_FRAMES), the last one ending at the last frame."""
    starts = list(range(0, frames - WINDOW_FRAMES + 1, hop))
    if starts[-1] != frames - WINDOW_FRAMES:
        starts.append(frames - WINDOW_FRAMES)
    return starts


class VoiceEncoder:
    """The network, loaded once; calls are serialized (one forward at a time) and
    synchronous: callers run them in a worker thread (`asyncio.to_thread`)."""

    kind: ClassVar[str] = "resemblyzer"

    def __init__(self, path: Path | None = None) -> None:
        import torch
        from torch import nn

        self._torch = torch
        self._lstm = nn.LSTM(MEL_BANDS, EMBEDDING_SIZE, 3, batch_first=True)
        self._linear = nn.Linear(EMBEDDING_SIZE, EMBEDDING_SIZE)
        state = torch.load(path or weights_path(), map_location="cpu", weights_only=False)["model_state"]
        self._lstm.load_state_dict({k[len("lstm."):]: v for k, v in state.items() if k.startswith("lstm.")})
        self._linear.load_state_dict({k[len("linear."):]: v for k, v in state.items() if k.startswith("linear.")})
        self._lstm.eval()
        self._linear.eval()
        self._filters = mel_filters()
        self._lock = threading.Lock()

    def _forward(self, mels: np.ndarray) -> np.ndarray:
        """(n, frames, 40) -> (n, 256) unit-length embeddings."""
        torch = self._torch
        out = []
        with self._lock, torch.inference_mode():
            for i in range(0, len(mels), BATCH):
                _, (hidden, _) = self._lstm(torch.from_numpy(np.ascontiguousarray(mels[i : i + BATCH])))
                raw = torch.relu(self._linear(hidden[-1]))
                out.append((raw / raw.norm(dim=1, keepdim=True).clamp_min(1e-9)).numpy())
        return np.concatenate(out) if out else np.zeros((0, EMBEDDING_SIZE), np.float32)

    def windows(self, audio: np.ndarray, hop_s: float = 0.4) -> Windows:
        """Embeddings of 1.6 s windows every `hop_s` over the whole audio (the last window
        ends at the audio's end; audio shorter than a window is zero-padded to one)."""
        mel = mel_frames(normalize_volume(audio), self._filters)
        if len(mel) < WINDOW_FRAMES:
            mel = np.pad(mel, ((0, WINDOW_FRAMES - len(mel)), (0, 0)))
        starts = window_starts(len(mel), max(1, round(hop_s * SAMPLE_RATE / MEL_HOP)))
        batch = np.stack([mel[s : s + WINDOW_FRAMES] for s in starts])
        centers = (np.asarray(starts) + WINDOW_FRAMES / 2) * MEL_HOP / SAMPLE_RATE
        return Windows(centers=centers, embeddings=self._forward(batch))

    def utterance(self, audio: np.ndarray) -> np.ndarray:
        """One unit-length embedding of a whole utterance: the mean of its windows'."""
        mean = self.windows(audio, hop_s=0.8).embeddings.mean(axis=0)
        return mean / max(float(np.linalg.norm(mean)), 1e-9)

    def utterances(self, clips: list[np.ndarray]) -> np.ndarray:
        """(len(clips), 256): each clip's utterance embedding."""
        if not clips:
            return np.zeros((0, EMBEDDING_SIZE), np.float32)
        return np.stack([self.utterance(c) for c in clips])


_shared: SpeakerEncoder | None = None
_shared_lock = threading.Lock()
#: After a failed load the same error is raised without trying again for this long: a hub
#: that cannot be reached takes ~40 s to say so, which every live final would otherwise wait.
RETRY_AFTER_S = 60.0
_failed: tuple[float, EncoderMissing] | None = None
_clock = time.monotonic


def shared_encoder() -> SpeakerEncoder:
    """The process's one encoder, the one `SPEAKER_ENCODER` names, loaded at first use
    (under a second; a hub model's first download takes longer). A failed load raises
    EncoderMissing, again at once for RETRY_AFTER_S, then tries again (the network may be back)."""
    global _shared, _failed
    with _shared_lock:
        if _shared is None:
            if _failed is not None and _clock() - _failed[0] < RETRY_AFTER_S:
                raise _failed[1]
            from engine.speakers.choice import load_encoder

            try:
                _shared = load_encoder()
            except EncoderMissing as exc:
                _failed = (_clock(), exc)
                raise
            _failed = None
        return _shared
