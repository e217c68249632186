"""The engines compared offline, behind one small synchronous interface.

Each engine gets the same weights (the CTranslate2 tiny.en checkpoint shipped with the
app, and its Hugging Face conversion) and greedy decoding, and is driven three ways:

* `one(audio)`: a single request of at most 30 s (the batch-1 figure);
* `batch(audios)`: 8 requests at once (the concurrent figure), each engine's own way:
  - ours: 8 concurrent `transcribe()` calls; vLLM batches them (continuous batching);
  - transformers: one batched `generate()` over the 8 clips' padded features;
  - faster-whisper: one CTranslate2 `generate()` over the 8 clips' features (what its
    `BatchedInferencePipeline` does with the chunks of one file; its `WhisperModel.transcribe`
    from 8 threads would only queue on one worker);
* `long(audio)`: a whole long-form file, each engine's own long-form path:
  - ours: `transcribe()` (cuts at pauses, decodes the pieces in one batch);
  - transformers: its sequential long-form `generate()` (30 s windows, timestamps);
  - faster-whisper: `WhisperModel.transcribe()` (sequential 30 s windows, no VAD).

Threads: 2 (this machine's cores) for every engine: `torch.set_num_threads(2)` for
transformers, `cpu_threads=2` for faster-whisper, vLLM's own CPU worker (both cores).
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from engine.base import DecodeRequest

SR = 16_000
THREADS = int(os.environ.get("BENCH_THREADS", "2"))

# name -> one-line description used in the table and BENCHMARKS.md
ENGINES = {
    "ours": "this app: vLLM in-process engine, fp32, greedy",
    "transformers": "Hugging Face transformers WhisperForConditionalGeneration, fp32, greedy",
    "faster-whisper-int8": "faster-whisper (CTranslate2) int8, beam_size=1",
    "faster-whisper-fp32": "faster-whisper (CTranslate2) float32, beam_size=1",
}


def model_dirs(model: str) -> tuple[Path, Path]:
    """(Hugging Face dir, CTranslate2 dir) of an embedded model, converted once."""
    from engine.convert import base_ct2_dir, tiny_en_ct2_dir
    from engine.models import resolve_model
    from settings import Settings

    cache = Path(Settings.from_env().model_cache)
    hf = Path(resolve_model(f"embedded:{model}", cache))
    ct2 = tiny_en_ct2_dir() if model == "tiny.en" else base_ct2_dir(cache)
    return hf, ct2


class Ours:
    """The app's engine, driven from a private event loop in a background thread."""

    def __init__(self, model: str, *, eager: bool | None = None, spec: str | None = None) -> None:
        from engine.factory import create_engine
        from settings import Settings

        s = Settings.from_env()
        s.engine = "vllm"
        s.model = spec or f"embedded:{model}"
        if eager is not None:
            s.enforce_eager = "true" if eager else "false"
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="bench-loop", daemon=True)
        self._thread.start()
        self.engine = create_engine(s)
        self.settings = dict(self.engine.info.settings)
        self.language = None if self.engine.info.multilingual else "en"

    def run(self, coro: Any, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def one(self, audio: np.ndarray) -> str:
        return self.run(self.engine.transcribe(DecodeRequest(audio, language=self.language))).text

    def batch(self, audios: list[np.ndarray]) -> list[str]:
        async def go() -> list[str]:
            results = await asyncio.gather(*(self.engine.transcribe(DecodeRequest(a, language=self.language)) for a in audios))
            return [r.text for r in results]

        return self.run(go())

    def long(self, audio: np.ndarray) -> str:
        return self.one(audio)

    def close(self) -> None:
        try:
            self.run(self.engine.close(), timeout=60)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)


class Transformers:
    def __init__(self, model: str, *, device: str = "cpu", dtype: str = "float32", hf_dir: str | None = None) -> None:
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        if device == "cpu":
            torch.set_num_threads(THREADS)
        path = hf_dir or str(model_dirs(model)[0])
        self.torch = torch
        self.device = device
        self.dtype = getattr(torch, dtype)
        self.processor = WhisperProcessor.from_pretrained(path)
        self.model = WhisperForConditionalGeneration.from_pretrained(path, torch_dtype=self.dtype).to(device).eval()
        self.english_only = not self.model.generation_config.is_multilingual
        self.settings = {"dtype": dtype, "threads": THREADS if device == "cpu" else None, "device": device}

    def _gen_kwargs(self) -> dict:
        kw: dict[str, Any] = {"do_sample": False, "num_beams": 1}
        if not self.english_only:
            kw.update(language="en", task="transcribe")
        return kw

    def _decode(self, ids: Any) -> list[str]:
        return [t.strip() for t in self.processor.batch_decode(ids, skip_special_tokens=True)]

    def batch(self, audios: list[np.ndarray]) -> list[str]:
        inputs = self.processor(audios, sampling_rate=SR, return_tensors="pt")
        feats = inputs.input_features.to(self.device, self.dtype)
        with self.torch.inference_mode():
            ids = self.model.generate(feats, **self._gen_kwargs())
        return self._decode(ids)

    def one(self, audio: np.ndarray) -> str:
        return self.batch([audio])[0]

    def long(self, audio: np.ndarray) -> str:
        if len(audio) <= 30 * SR:
            return self.one(audio)
        inputs = self.processor(
            audio, sampling_rate=SR, return_tensors="pt", truncation=False, padding="longest", return_attention_mask=True
        )
        feats = inputs.input_features.to(self.device, self.dtype)
        with self.torch.inference_mode():
            ids = self.model.generate(
                feats, attention_mask=inputs.attention_mask.to(self.device), return_timestamps=True, **self._gen_kwargs()
            )
        return self._decode(ids)[0]

    def close(self) -> None:
        pass


class FasterWhisper:
    def __init__(self, model: str, compute_type: str, *, device: str = "cpu", ct2_dir: str | None = None) -> None:
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer

        path = ct2_dir or str(model_dirs(model)[1])
        kw = {"cpu_threads": THREADS} if device == "cpu" else {}
        self.model = WhisperModel(path, device=device, compute_type=compute_type, num_workers=1, **kw)
        self.multilingual = self.model.model.is_multilingual
        self.tokenizer = Tokenizer(
            self.model.hf_tokenizer, self.multilingual, task="transcribe", language="en" if self.multilingual else None
        )
        self.prompt = self.model.get_prompt(self.tokenizer, [], without_timestamps=True)
        self.settings = {"compute_type": compute_type, "cpu_threads": THREADS if device == "cpu" else None, "device": device}

    def _opts(self) -> dict:
        return {"beam_size": 1, "language": "en" if self.multilingual else None, "vad_filter": False}

    def one(self, audio: np.ndarray) -> str:
        segments, _ = self.model.transcribe(audio, **self._opts(), without_timestamps=True)
        return " ".join(s.text.strip() for s in segments)

    def batch(self, audios: list[np.ndarray]) -> list[str]:
        import ctranslate2

        n = self.model.feature_extractor.nb_max_frames
        feats = []
        for a in audios:
            f = self.model.feature_extractor(a)[:, :n]
            feats.append(np.pad(f, ((0, 0), (0, n - f.shape[1]))))
        batch = np.ascontiguousarray(np.stack(feats).astype(np.float32))
        encoded = self.model.encode(batch) if hasattr(self.model, "encode") else self.model.model.encode(
            ctranslate2.StorageView.from_array(batch)
        )
        results = self.model.model.generate(
            encoded,
            [list(self.prompt) for _ in audios],
            beam_size=1,
            max_length=self.model.max_length,
            suppress_blank=True,
            suppress_tokens=[-1],
        )
        return [self.tokenizer.decode([t for t in r.sequences_ids[0] if t < self.tokenizer.eot]).strip() for r in results]

    def long(self, audio: np.ndarray) -> str:
        segments, _ = self.model.transcribe(audio, **self._opts())
        return " ".join(s.text.strip() for s in segments)

    def close(self) -> None:
        pass


def load(name: str, model: str, *, eager: bool | None = None) -> Any:
    if name == "ours":
        return Ours(model, eager=eager)
    if name == "transformers":
        return Transformers(model)
    if name == "faster-whisper-int8":
        return FasterWhisper(model, "int8")
    if name == "faster-whisper-fp32":
        return FasterWhisper(model, "float32")
    raise ValueError(f"unknown engine {name!r}: one of {', '.join(ENGINES)}")


# -- GPU mode (only where torch sees CUDA) --------------------------------------------------

GPU_MODEL = "openai/whisper-large-v3-turbo"


def gpu_configs() -> list[str]:
    """Engine names of the GPU comparison: ours with CUDA graphs and fp8 KV on and off, and the peers."""
    return [
        "gpu:ours:graphs=on:kv=fp8",
        "gpu:ours:graphs=on:kv=auto",
        "gpu:ours:graphs=off:kv=fp8",
        "gpu:ours:graphs=off:kv=auto",
        "gpu:transformers",
        "gpu:faster-whisper-fp16",
    ]


def gpu_engine(name: str, plan: dict) -> Any:
    model = plan.get("gpu_model", GPU_MODEL)
    parts = name.split(":")
    if parts[1] == "ours":
        opts = dict(p.split("=") for p in parts[2:])
        os.environ["KV_CACHE_DTYPE"] = opts.get("kv", "auto")
        os.environ["DEVICE"] = "cuda"
        return Ours(model, eager=opts.get("graphs") == "off", spec=model)
    if parts[1] == "transformers":
        return Transformers(model, device="cuda", dtype="float16", hf_dir=model)
    if parts[1] == "faster-whisper-fp16":
        # faster-whisper resolves "large-v3-turbo" to its CTranslate2 conversion on the hub.
        return FasterWhisper(model, "float16", device="cuda", ct2_dir="large-v3-turbo")
    raise ValueError(name)
