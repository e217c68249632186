"""The in-process vLLM Whisper engine shared by every session of the app."""

from __future__ import annotations

import asyncio
import logging
import threading
from contextlib import aclosing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import numpy as np

from engine.audio import validate_audio
from engine.base import (
    PRIORITY_DEFAULT,
    SAMPLE_RATE,
    WINDOW_S,
    DecodeRequest,
    EngineInfo,
    Segment,
    TokenLogprob,
    Transcription,
    Word,
    check_task,
)
from engine.encoder_outputs import SHARED as ENCODER_OUTPUTS
from engine.gpu import GpuProbe, plan_for, usable_gpu
from engine.longform import transcribe_any
from engine.quality import compression_ratio, is_loop, is_low_confidence, overruns_audio, stuck_in_loop
from engine.tokens import TIMESTAMP_STEP_S, WhisperVocabulary

log = logging.getLogger(__name__)

MAX_DECODER_TOKENS = 448
# A loop costs a whole 448-token decode; real speech needs a few tokens per second.
TOKENS_PER_SECOND = 10
WINDOW_SAMPLES = int(WINDOW_S * SAMPLE_RATE)
MIN_TOKENS = 32
#: Tokens between two looks for a loop while a decode runs (`engine.quality.stuck_in_loop`).
LOOP_CHECK_TOKENS = 8
#: Speech rarely needs more tokens than this per second of audio (English ~3): the first
#: look waits until a decode has gone past that, so ordinary decodes are never checked.
USUAL_TOKENS_PER_SECOND = 4


@dataclass(frozen=True)
class VllmOptions:
    """How vLLM is started; `choose_options` fills it for the machine at hand."""

    device: str
    dtype: str
    enforce_eager: bool
    kv_cache_dtype: str
    max_num_seqs: int
    kv_cache_memory_bytes: int | None
    gpu_memory_utilization: float
    runner: str  # "inprocess" or "asyncllm"
    reasons: tuple[str, ...] = ()
    #: vLLM's attention backend for decoder self- and cross-attention (None: vLLM's choice, the CPU's).
    attention_backend: str | None = None
    #: The GPU as NVML described it ("" on the CPU): name, compute capability, driver.
    gpu: str = ""
    #: The encoder's dtype where it differs from `dtype` (CPU_DTYPE=bfloat16-encoder); None: `dtype`.
    encoder_dtype: str | None = None


#: The logits processor that keeps a window's decode going to its last speech (vLLM loads it by name).
KEEP_DECODING_PROCESSOR = "engine.keep_decoding:KeepDecodingUntilSound"

#: CPU flags with native bfloat16 matrix instructions (Linux /proc/cpuinfo names).
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags (empty where /proc/cpuinfo cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


#: `CPU_DTYPE` values.
CPU_DTYPES = ("float32", "bfloat16-encoder", "bfloat16", "auto")


@dataclass(frozen=True)
class CpuDtype:
    """The dtypes a CPU engine runs: the model's (the decoder's) and the encoder's, and why."""

    dtype: str
    encoder_dtype: str
    reason: str


def cpu_dtype_for(requested: str, flags: frozenset[str]) -> CpuDtype:
    """The CPU dtypes for `CPU_DTYPE` on a CPU with these flags, and why.

    bfloat16 is faster only with native bf16 instructions (AVX-512 BF16 or AMX; on AVX2 it
    is 3-4x slower, so it is refused there whatever was asked). `bfloat16-encoder` runs the
    encoder (two thirds of a long file's engine time, all matrix products and attention
    over 1500 frames) in bf16 and keeps the decoder, which picks every token, in float32:
    `python -m bench.cpu_dtype` on a 2-core EPYC with AVX-512 BF16 gives the same WER as
    float32 at most of bf16's speed (BENCHMARKS.md); it is what `auto`, the default, takes
    on such a CPU. `bfloat16` throughout is a little faster still and changes more text
    (the clips' WER 0.0432 -> 0.0457)."""
    if requested not in CPU_DTYPES:
        raise ValueError(f"CPU_DTYPE={requested!r}: use one of {', '.join(CPU_DTYPES)}")
    native = bool(flags & BF16_CPU_FLAGS)
    have = "/".join(sorted(flags & BF16_CPU_FLAGS))
    if requested == "float32":
        return CpuDtype("float32", "float32", "CPU: float32 (CPU_DTYPE=float32)")
    if not native:
        why = "no AVX-512 BF16 / AMX" if requested == "auto" else f"CPU_DTYPE={requested} refused: this CPU has no AVX-512 BF16 / AMX"
        return CpuDtype("float32", "float32", f"CPU: float32 ({why}; bf16 without native instructions is 3-4x slower)")
    if requested == "bfloat16":
        return CpuDtype("bfloat16", "bfloat16", f"CPU: bfloat16 (CPU_DTYPE=bfloat16; {have}: faster decodes, slightly higher WER)")
    return CpuDtype(
        "float32", "bfloat16", f"CPU: bfloat16 encoder, float32 decoder (CPU_DTYPE={requested}; {have}: faster encoder, same text)"
    )


def choose_options(
    *,
    device: str = "auto",
    enforce_eager: str = "auto",
    kv_cache_dtype: str = "auto",
    max_num_seqs: int = 0,
    kv_cache_mb: int = 0,
    gpu_memory_utilization: float = 0.85,
    cpu_dtype: str = "auto",
    find_gpu: Callable[[str], GpuProbe | None] = usable_gpu,
    find_cpu_flags: Callable[[], frozenset[str]] = cpu_flags,
) -> VllmOptions:
    """Pick vLLM settings: measured-best on this 2-core CPU; on a GPU, what its compute
    capability runs with precompiled kernels (`engine.gpu.plan_for`).

    `find_gpu(device)` is the GPU to use or None for the CPU; it raises `GpuUnavailable`
    with the cause where CUDA was asked for (or the CUDA build of vLLM is installed) and
    no GPU is usable. Injected so the tests can fake a GPU."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"DEVICE={device!r}: use 'auto', 'cpu' or 'cuda'")
    gpu = find_gpu(device)
    reasons: list[str] = []
    if gpu is not None and gpu.capability is not None:
        plan = plan_for(gpu.capability, kv_cache_dtype=kv_cache_dtype)
        reasons.append(f"GPU {gpu.describe()}")
        reasons += plan.reasons
        eager = enforce_eager == "true"
        reasons.append("CUDA graphs off (ENFORCE_EAGER)" if eager else "CUDA graphs and torch.compile on")
        return VllmOptions(
            device="cuda",
            dtype=plan.dtype,
            enforce_eager=eager,
            kv_cache_dtype=plan.kv_cache_dtype,
            max_num_seqs=max_num_seqs or 64,
            kv_cache_memory_bytes=None,
            gpu_memory_utilization=gpu_memory_utilization,
            runner="asyncllm",
            reasons=tuple(reasons),
            attention_backend=plan.attention_backend,
            gpu=gpu.describe(),
        )
    if kv_cache_dtype not in ("auto", ""):
        reasons.append(f"KV cache dtype {kv_cache_dtype} requested on CPU; fp8 needs AVX-512/AMX, using auto")
    dtypes = cpu_dtype_for(cpu_dtype, find_cpu_flags())
    reasons.append(dtypes.reason)
    eager = enforce_eager == "true"
    reasons.append("CPU: eager (ENFORCE_EAGER)" if eager else "CPU: torch.compile on (faster decode, ~40 s start)")
    reasons.append("CPU: in-process engine loop, both cores for the model")
    return VllmOptions(
        device="cpu",
        dtype=dtypes.dtype,
        encoder_dtype=dtypes.encoder_dtype if dtypes.encoder_dtype != dtypes.dtype else None,
        enforce_eager=eager,
        kv_cache_dtype="auto",
        max_num_seqs=max_num_seqs or 8,
        kv_cache_memory_bytes=(kv_cache_mb or 256) * 1024 * 1024,
        gpu_memory_utilization=gpu_memory_utilization,
        runner="inprocess",
        reasons=tuple(reasons),
    )


class VllmEngine:
    """Whisper on vLLM, in this process. Safe to call from any event loop, concurrently."""

    def __init__(
        self, model: str, options: VllmOptions, *, model_name: str | None = None, encoder_window: str = "bucketed"
    ) -> None:
        from vllm.engine.arg_utils import AsyncEngineArgs, EngineArgs

        from engine.whisper_buckets import engine_kwargs, parse_window

        self.options = options
        for reason in options.reasons:
            log.info("vLLM setting: %s", reason)
        window_args, window = engine_kwargs(
            parse_window(encoder_window), runner=options.runner, encoder_dtype=options.encoder_dtype
        )
        # AsyncLLM reads fields only its own argument class has (enable_log_requests).
        args_class = EngineArgs if options.runner == "inprocess" else AsyncEngineArgs
        args = args_class(
            model=model,
            dtype=options.dtype,
            max_model_len=MAX_DECODER_TOKENS,
            max_num_seqs=options.max_num_seqs,
            # vLLM refuses to start with fewer than 1500 (one encoder's audio tokens).
            max_num_batched_tokens=2048,
            limit_mm_per_prompt={"audio": 1},
            enforce_eager=options.enforce_eager,
            kv_cache_dtype=options.kv_cache_dtype,
            kv_cache_memory_bytes=options.kv_cache_memory_bytes,
            gpu_memory_utilization=options.gpu_memory_utilization,
            disable_log_stats=True,
            seed=0,
            # One encoder pass fits a step (max_num_batched_tokens), so the order of the
            # waiting queue decides who waits: finals before partials (engine.base).
            scheduling_policy="priority",
            # A long file's window may not end before its last speech (engine/keep_decoding.py).
            logits_processors=[KEEP_DECODING_PROCESSOR],
            **({"attention_backend": options.attention_backend} if options.attention_backend else {}),
            **window_args,
        )
        if options.runner == "inprocess":
            from engine.runners import InProcessRunner

            self._runner: Any = InProcessRunner(args)
        else:
            from engine.runners import AsyncLLMRunner

            self._runner = AsyncLLMRunner(args)
        self._model_dir = _local_dir(model)
        self.vocab = WhisperVocabulary.from_model_dir(self._model_dir)
        self.info = EngineInfo(
            model=model_name or model,
            engine="vllm",
            device=options.device,
            multilingual=self.vocab.multilingual,
            settings={
                "dtype": options.dtype,
                "encoder_dtype": window.encoder_dtype or options.dtype,
                "enforce_eager": options.enforce_eager,
                "kv_cache_dtype": options.kv_cache_dtype,
                "max_num_seqs": options.max_num_seqs,
                "runner": options.runner,
                "encoder_window": window.describe(),
                # Pinned on a GPU (engine.gpu.plan_for); vLLM's own choice on the CPU.
                "attention_backend": options.attention_backend or "vLLM default",
                "gpu": options.gpu or None,
                # Why each option was chosen (no paths, no secrets: /health is public).
                "choices": list(options.reasons),
            },
        )
        self._window = window

    # -- public API -------------------------------------------------------------------

    async def transcribe(self, request: DecodeRequest) -> Transcription:
        request = self._checked(request)
        return await transcribe_any(self, request)

    async def transcribe_window(self, request: DecodeRequest, offset: float = 0.0) -> Transcription:
        """Decode at most 30 s; a decode that loops is stopped as soon as it repeats itself
        (`_decode`); a doubtful short-window decode is done again on the full window; one
        that still loops, once more at a higher temperature.

        A draft (a live partial, replaced within a second) gets no second decode: its
        caller strips a loop (streaming.guards). Measured (`python -m bench.first_partials`):
        the first partial of an utterance (0.5 s of speech) sometimes loops in the 10 s
        window ("printing printing ...": 4 of 175 English clips, the browser test's clip
        every time), and redoing it on the full window made that partial cost up to 1.1 s
        of engine instead of 0.17 s, 7 s with two browsers on the same cores."""
        request = request.with_(language=await self._language_for(request))
        result, stuck, tokens = await self._decode(request, offset)
        if request.draft:  # no second decode; its words where asked (LIVE_PARTIAL_WORD_TIMES)
            return await self._with_words(request, result, tokens, offset)
        full_window = False
        if self._short_window(request.audio) and self._doubtful(result, stuck, request):
            # Tiny models sometimes start over when a short window leaves them little
            # silence after the speech, or make words of a bird's whistle that the full
            # window calls "[Squeaking]": 30 s is what they were trained on.
            log.info("short encoder window gave a doubtful decode of %.1f s; decoding on the full window", request.duration)
            full_window = True
            result, stuck, tokens = await self._decode(request, offset, full_window=True)
        if (stuck or is_loop(result.compression_ratio)) and request.temperature == 0.0:
            log.info("decode looped (compression ratio %.1f); retrying at temperature 0.4", result.compression_ratio or 0)
            retry, retry_stuck, retry_tokens = await self._decode(
                request.with_(prompt=None, temperature=0.4), offset, full_window=full_window
            )
            if (retry_stuck, retry.compression_ratio or 0) < (stuck, result.compression_ratio or 0):
                result, tokens = retry, retry_tokens
        return await self._with_words(request, result, tokens, offset)

    async def _with_words(self, request: DecodeRequest, result: Transcription, tokens: list[int], offset: float) -> Transcription:
        """The result with its words' times where the request asks for them."""
        if request.word_timestamps and result.text:
            result = replace(result, words=await self._words(request, tokens, offset))
        return result

    def prepare_words(self) -> None:
        """Start loading the word aligner in the background (a live stream with word times
        began): its first final then does not wait seconds for the load. Idempotent."""
        from engine.aligner import aligner_for

        vocab = self.vocab
        args = (self._model_dir, vocab.tokenizer.decode, vocab.eot, self.options.device)
        threading.Thread(target=aligner_for, args=args, name="word-aligner-load", daemon=True).start()

    async def _words(self, request: DecodeRequest, tokens: list[int], offset: float) -> list[Word]:
        """The words of a decoded window with their times and probabilities: a
        teacher-forced pass of its text tokens beside vLLM (engine/aligner.py), loaded
        on the first request that asks."""
        from engine.aligner import AlignJob, aligner_for

        vocab = self.vocab
        aligner = await asyncio.to_thread(
            aligner_for, self._model_dir, vocab.tokenizer.decode, vocab.eot, self.options.device
        )
        prefix = vocab.decoder_prompt(language=request.language, task=request.task, prompt=None, timestamps=False)
        text_tokens = [t for t in tokens if t < vocab.eot]
        window_s = self._window.seconds_for(len(request.audio))
        return await aligner.words(AlignJob(request.audio, prefix, text_tokens, offset, request.language, window_s))

    async def decode_window(self, request: DecodeRequest, *, full_window: bool = False) -> Transcription:
        """One decode of at most 30 s and nothing else (no language detection, no retry):
        on the clip's own encoder window, or padded to Whisper's full 30 s. What
        `python -m engine doctor` compares: bucketed vs full window, batched vs alone."""
        request = self._checked(request)
        result, _, _ = await self._decode(request.with_(language=await self._language_for(request)), 0.0, full_window=full_window)
        return result

    @staticmethod
    def _doubtful(result: Transcription, stuck: bool, request: DecodeRequest) -> bool:
        """Whether a short-window decode is worth redoing on the full window: it looped,
        ran past its audio, or the decoder was unsure of it (Whisper's own
        log-probability threshold)."""
        return stuck or overruns_audio(result.text, request.duration) or is_low_confidence(result.avg_logprob)

    async def transcribe_stream(self, request: DecodeRequest) -> AsyncIterator[str]:
        request = self._checked(request)
        if request.duration > WINDOW_S:
            result = await transcribe_any(self, request)
            for segment in result.segments:
                yield (" " if segment is not result.segments[0] else "") + segment.text
            return
        language = await self._language_for(request)
        decoder = self.vocab.decoder_prompt(language=language, task=request.task, prompt=request.prompt, timestamps=False)
        params = self._params(request.audio, decoder, request.temperature)
        # Streamed text cannot be taken back, so the full window's safety here (see transcribe_window).
        prompt = self._prompt(request.audio, decoder, full_window=self._short_window(request.audio))
        async for output in self._runner.generate(prompt, params, request.priority):
            delta = output.outputs[0].text
            if delta:
                yield delta

    async def detect_language(self, audio: np.ndarray, priority: int = PRIORITY_DEFAULT) -> str:
        """The most likely language token after <|startoftranscript|>, constrained to languages."""
        if not self.vocab.multilingual:
            return "en"
        from vllm import SamplingParams

        params = SamplingParams(
            temperature=0.0, max_tokens=1, allowed_token_ids=list(self.vocab.language_ids.values()), detokenize=False
        )
        token_ids: list[int] = []
        async for output in self._runner.generate(self._prompt(audio, [self.vocab.sot]), params, priority):
            token_ids += output.outputs[0].token_ids
        return self.vocab.language_of(token_ids[0]) or "en"

    async def close(self) -> None:
        self._runner.shutdown()

    # -- internals --------------------------------------------------------------------

    def _checked(self, request: DecodeRequest) -> DecodeRequest:
        """Once per public call (transcribe, transcribe_stream), before any decode: valid
        audio, a task and language the model can do."""
        request = request.with_(audio=validate_audio(request.audio))
        check_task(self.info, request.language, request.task)
        if self.vocab.multilingual and request.language:
            self.vocab.language_id(request.language)  # raises a clear error for unknown codes
        if request.word_timestamps:
            # Keep the windows' encoder outputs from the first decode on, for the aligner
            # (it loads when the first window's words are asked: windows encoded before
            # that would be encoded a second time). The one place the store is turned on.
            ENCODER_OUTPUTS.enable()
        return request

    async def _language_for(self, request: DecodeRequest) -> str | None:
        if not self.vocab.multilingual:
            return "en"
        if request.language:
            return request.language.lower()
        return await self.detect_language(request.audio, request.priority)

    def _short_window(self, audio: np.ndarray) -> bool:
        """Whether this clip's encoder window is shorter than Whisper's 30 s."""
        return self._window.seconds_for(len(audio)) < WINDOW_S

    def _prompt(self, audio: np.ndarray, decoder_ids: list[int], *, full_window: bool = False) -> dict[str, Any]:
        """The request for vLLM; `full_window` pads the audio with silence to 30 s, which is
        exactly the stock Whisper window whatever the encoder-window setting."""
        if full_window and len(audio) < WINDOW_SAMPLES:
            audio = np.pad(audio, (0, WINDOW_SAMPLES - len(audio)))
        return {
            "encoder_prompt": {"prompt": "", "multi_modal_data": {"audio": (audio, SAMPLE_RATE)}},
            "decoder_prompt": {"prompt_token_ids": decoder_ids},
        }

    def _params(self, audio: np.ndarray, decoder_ids: list[int], temperature: float, *, logprobs: bool = False) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        budget = MAX_DECODER_TOKENS - len(decoder_ids)
        expected = MIN_TOKENS + int(TOKENS_PER_SECOND * len(audio) / SAMPLE_RATE)
        return SamplingParams(
            temperature=temperature,
            seed=0 if temperature > 0 else None,
            max_tokens=max(1, min(budget, expected)),
            logprobs=0 if logprobs else None,
            skip_special_tokens=True,
            output_kind=RequestOutputKind.DELTA,
        )

    async def _decode(
        self, request: DecodeRequest, offset: float, *, full_window: bool = False
    ) -> tuple[Transcription, bool, list[int]]:
        """One decode; the flag says it was stopped stuck in a loop; the token ids are
        what the word aligner feeds back.

        Why stop: a looping decode otherwise runs to its token budget (up to 448 tokens,
        one engine step each, seconds of the shared engine on a CPU) before the retry
        rules above can even see it; stopped once the phrase repeats (engine.quality), it
        costs a few dozen tokens and the retry starts at once."""
        audio, language, timestamps = request.audio, request.language, request.timestamps
        duration = request.duration
        decoder = self.vocab.decoder_prompt(language=language, task=request.task, prompt=request.prompt, timestamps=timestamps)
        token_ids: list[int] = []
        token_logprobs: list[float] = []
        logprob_sum = 0.0
        stuck = False
        next_check = max(2 * LOOP_CHECK_TOKENS, int(USUAL_TOKENS_PER_SECOND * duration))
        params = self._params(audio, decoder, request.temperature, logprobs=True)
        if timestamps and request.end_not_before:
            params.extra_args = self._end_not_before(request.end_not_before)
        outputs = self._runner.generate(self._prompt(audio, decoder, full_window=full_window), params, request.priority)
        async with aclosing(outputs):  # leaving early aborts the request in the engine
            async for output in outputs:
                completion = output.outputs[0]
                token_ids += completion.token_ids
                for token_id, entry in zip(completion.token_ids, completion.logprobs or []):
                    logprob = entry[token_id].logprob if token_id in entry else 0.0
                    logprob_sum += logprob
                    token_logprobs.append(logprob)
                if len(token_ids) >= next_check and not output.finished:
                    next_check = len(token_ids) + LOOP_CHECK_TOKENS
                    if stuck_in_loop(self.vocab.text_of(token_ids), duration):
                        stuck = True
                        break
        if timestamps:
            segments = self.vocab.segments_of(token_ids, offset, duration)
            text = " ".join(s.text for s in segments)
        else:
            text = self.vocab.text_of(token_ids).strip()
            segments = [Segment(offset, offset + duration, text)] if text else []
        result = Transcription(
            text=text,
            language=language,
            duration=duration,
            segments=segments,
            avg_logprob=logprob_sum / max(1, len(token_ids)),
            compression_ratio=compression_ratio(text),
            logprobs=self._token_logprobs(token_ids, token_logprobs) if request.logprobs else [],
        )
        return result, stuck, token_ids

    def _end_not_before(self, seconds: float) -> dict[str, Any]:
        """The request's part for engine/keep_decoding.py: end-of-text only once a timestamp
        token at or past `seconds` has been decoded."""
        from engine.keep_decoding import EXTRA_ARG

        vocab = self.vocab
        last = vocab.timestamp_begin + round(WINDOW_S / TIMESTAMP_STEP_S)
        allowed_from = min(last, vocab.timestamp_begin + int(seconds / TIMESTAMP_STEP_S))
        return {EXTRA_ARG: (vocab.eot, vocab.timestamp_begin, allowed_from)}

    def _token_logprobs(self, token_ids: list[int], logprobs: list[float]) -> list[TokenLogprob]:
        """The text tokens (no timestamps, no end-of-text) with their log-probabilities."""
        out = []
        for token_id, logprob in zip(token_ids, logprobs):
            if token_id < self.vocab.eot:
                raw = self.vocab.token_bytes(token_id)
                out.append(TokenLogprob(raw.decode("utf-8", "replace"), logprob, tuple(raw)))
        return out


def _local_dir(model: str) -> Path:
    """The directory holding the tokenizer: the model dir itself, or its hub snapshot."""
    path = Path(model)
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(model, allow_patterns=["*.json"]))
