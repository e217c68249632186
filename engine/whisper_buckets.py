"""Encoder windows that follow the audio: which window a clip gets, and how vLLM is told.

Stock Whisper pads every clip to 30 s, so a 2 s utterance costs the encoder work (and
cross-attention width) of 30 s. In `bucketed` mode the mel is padded only up to the
clip's length rounded up to a bucket (a few fixed sizes keep the number of encoder
shapes small), and the encoder's placeholder count follows per request; the vLLM side
lives in `engine.whisper_bucketed_model`, registered from here in this process and, for
engine cores in child processes, by vLLM itself through our entry point (pyproject.toml).

`ENCODER_WINDOW` (settings.py) is `bucketed` (the default buckets below), `full` (30 s
for every clip: stock vLLM, the comparison and fallback mode), or an explicit list of
bucket sizes in seconds such as `5,10,30`, optionally with `+P`: at least P seconds of
padding after the audio (`5,10,30+1`), as Whisper only learnt to end a transcript where
the speech is followed by some silence (used by `python -m bench encoder-windows`).

This module imports nothing from vLLM: the bucket rule is a pure function.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Any

from engine.base import SAMPLE_RATE, WINDOW_S

log = logging.getLogger(__name__)

HOP_LENGTH = 160  # Whisper's mel hop: 100 mel frames per second
MEL_FRAMES_PER_ENCODER_FRAME = 2  # conv2 has stride 2: 3000 mel frames -> 1500 encoder frames
FULL_WINDOW_S = WINDOW_S  # Whisper's own window
#: Chosen with `python -m bench encoder-windows` (see BENCHMARKS.md): the smallest set
#: whose WER stays within 1.02x of the full window on every eval set. A 5 s window made
#: tiny.en start over on 0-5 s clips (WER x1.9 even with the full-window retry), and a
#: clip that fills its window to the end loses words; 1 s of silence after it does not.
DEFAULT_BUCKETS_S: tuple[float, ...] = (10.0, 15.0, 20.0, 30.0)
ARCHITECTURE = "WhisperBucketedForConditionalGeneration"
DEFAULT_PAD_S = 1.0
#: The attributes carrying the bucket sizes, padding and encoder dtype on the model's
#: Hugging Face config (hf_overrides).
CONFIG_KEY = "encoder_buckets_s"
PAD_KEY = "encoder_bucket_pad_s"
ENCODER_DTYPE_KEY = "encoder_dtype"


@dataclass(frozen=True)
class EncoderWindow:
    """How the encoder window is chosen: `buckets` is empty in full-window mode."""

    mode: str  # "bucketed" or "full"
    buckets: tuple[float, ...] = ()
    pad_s: float = 0.0
    reason: str = ""
    #: The encoder's dtype where it differs from the model's (CPU_DTYPE=bfloat16-encoder):
    #: only this module's architecture can run it, so only in bucketed mode.
    encoder_dtype: str | None = None

    def seconds_for(self, num_samples: int) -> float:
        """The encoder window (seconds) a clip of `num_samples` gets: 30 s in full mode."""
        return bucket_seconds(num_samples, self.buckets, self.pad_s) if self.mode == "bucketed" else FULL_WINDOW_S

    def describe(self) -> str:
        if self.mode == "full":
            return "full (30 s for every clip)" + (f": {self.reason}" if self.reason else "")
        pad = f", >= {self.pad_s:g} s padding" if self.pad_s else ""
        dtype = f", {self.encoder_dtype} encoder" if self.encoder_dtype else ""
        return "bucketed " + "/".join(f"{b:g}" for b in self.buckets) + " s" + pad + dtype


def parse_window(value: str) -> EncoderWindow:
    """`bucketed`, `full` or a comma list of seconds (each in (0, 30], 30 added if missing), `+P` padding."""
    text = (value or "bucketed").strip().lower()
    if text == "full":
        return EncoderWindow("full")
    if text == "bucketed":
        return EncoderWindow("bucketed", DEFAULT_BUCKETS_S, DEFAULT_PAD_S)
    text, _, pad_text = text.partition("+")
    try:
        sizes = sorted({float(x) for x in text.split(",") if x.strip()})
        pad_s = float(pad_text) if pad_text.strip() else 0.0
    except ValueError:
        raise ValueError(f"ENCODER_WINDOW={value!r}: use 'bucketed', 'full' or seconds like '5,10,30'") from None
    if not sizes or sizes[0] <= 0 or sizes[-1] > FULL_WINDOW_S or not 0 <= pad_s < FULL_WINDOW_S:
        raise ValueError(f"ENCODER_WINDOW={value!r}: bucket sizes must lie in (0, 30] seconds")
    for size in sizes:
        if (size * SAMPLE_RATE) % (HOP_LENGTH * MEL_FRAMES_PER_ENCODER_FRAME):
            raise ValueError(f"ENCODER_WINDOW={value!r}: {size:g} s is not a multiple of 20 ms (one encoder frame)")
    if sizes[-1] < FULL_WINDOW_S:
        sizes.append(FULL_WINDOW_S)  # a clip longer than every bucket still gets Whisper's window
    if sizes == [FULL_WINDOW_S]:
        return EncoderWindow("full")
    return EncoderWindow("bucketed", tuple(sizes), pad_s)


def bucket_seconds(num_samples: int, buckets: tuple[float, ...], pad_s: float = 0.0) -> float:
    """The smallest bucket that holds the clip and `pad_s` after it; the largest one (30 s) otherwise."""
    if not buckets:
        return FULL_WINDOW_S
    duration = num_samples / SAMPLE_RATE + pad_s
    for size in buckets:
        if duration <= size + 1e-9:
            return size
    return buckets[-1]


def bucket_samples(num_samples: int, buckets: tuple[float, ...], pad_s: float = 0.0) -> int:
    """Samples the clip is padded to (the feature extractor's `max_length`)."""
    return round(bucket_seconds(num_samples, buckets, pad_s) * SAMPLE_RATE)


def window_features(extractor: Any, audio: Any, window_samples: int) -> Any:
    """One clip's log-mel padded (or cut) to its encoder window of `window_samples`: what
    vLLM's processor feeds the bucketed encoder (engine/whisper_bucketed_model.py) and what
    the word aligner computes to find that encoder's output (engine/encoder_outputs.py is
    keyed by these features, so both must come from here). Straight to the feature
    extractor: the HF processor would also pad the (dummy) text to `max_length` tokens."""
    out = extractor(
        audio, sampling_rate=extractor.sampling_rate, padding="max_length", max_length=window_samples,
        truncation=True, return_tensors="pt",
    )
    return out["input_features"][0]


def mel_frames(window_samples: int) -> int:
    """Mel frames of a window: Whisper drops the last STFT frame, so 480000 samples -> 3000."""
    return window_samples // HOP_LENGTH


def encoder_frames(num_samples: int, buckets: tuple[float, ...], pad_s: float = 0.0) -> int:
    """Encoder positions (= cross-attention width, = placeholder tokens) of a clip."""
    return math.ceil(mel_frames(bucket_samples(num_samples, buckets, pad_s)) / MEL_FRAMES_PER_ENCODER_FRAME)


#: The entry point (pyproject.toml) that registers ARCHITECTURE in each vLLM process.
PLUGIN_GROUP = "vllm.general_plugins"
PLUGIN_NAME = "rt_whisper_bucketed_encoder"


def plugin_installed() -> str | None:
    """None when vLLM will load our plugin in the processes it starts; else why not."""
    import os
    from importlib.metadata import entry_points

    if not any(ep.name == PLUGIN_NAME for ep in entry_points(group=PLUGIN_GROUP)):
        return f"the {PLUGIN_GROUP} entry point {PLUGIN_NAME!r} is not installed (pip install --no-deps -e .)"
    allowed = os.environ.get("VLLM_PLUGINS")
    if allowed is not None and PLUGIN_NAME not in [name.strip() for name in allowed.split(",")]:
        return f"VLLM_PLUGINS={allowed!r} leaves out {PLUGIN_NAME!r}"
    return None


def _register_here() -> None:
    """Register ARCHITECTURE in this process's vLLM (imports vLLM: kept out of the rule above)."""
    from engine.whisper_bucketed_model import register

    register()


def engine_kwargs(
    window: EncoderWindow, *, runner: str, encoder_dtype: str | None = None
) -> tuple[dict[str, Any], EncoderWindow]:
    """Extra `EngineArgs` for the chosen window (and encoder dtype, where it differs from
    the model's), and the window that will really run.

    The in-process runner's engine core is this process: registering here is enough.
    `AsyncLLM` (the GPU runner) spawns its engine core in a child process, where the
    architecture is known only through the `vllm.general_plugins` entry point that
    `pip install -e .` installs (pyproject.toml); without it that runner gets the full
    window, with the reason in the log and /health.
    """
    if window.mode == "full":
        if encoder_dtype:
            log.warning("encoder dtype %s needs the bucketed encoder window: the encoder runs the model's dtype", encoder_dtype)
        log.info("encoder window: %s", window.describe())
        return {}, window
    if runner != "inprocess":
        missing = plugin_installed()
        if missing is not None:
            window = EncoderWindow("full", reason=f"runner {runner!r} has its engine core in a child process and {missing}")
            log.warning("encoder window: %s", window.describe())
            return {}, window
    _register_here()
    window = replace(window, encoder_dtype=encoder_dtype)
    log.info("encoder window: %s", window.describe())
    overrides = {"architectures": [ARCHITECTURE], CONFIG_KEY: list(window.buckets), PAD_KEY: window.pad_s}
    if encoder_dtype:
        overrides[ENCODER_DTYPE_KEY] = encoder_dtype
    return {"hf_overrides": overrides}, window
