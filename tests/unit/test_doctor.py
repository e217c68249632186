"""`python -m engine doctor`'s check list and verdicts, with fakes where a GPU is needed.

The doctor's real CPU run (real engine) is tests/integration/test_doctor_run.py; here the
engine is a stand-in so the GPU branch (which cannot run on these machines) is exercised:
which checks run, which are skipped and why, the KV dtype A/B's rule, the exit status.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest

from engine import doctor
from engine.doctor import CHECKS, FAIL, PASS, SKIP, Context, Verdict, exit_status, run_check, run_doctor
from engine.gpu import GpuProbe
from settings import Settings

GPU_CHECKS = {"gpu", "attention-backend", "cuda-graphs", "kv-dtype-ab"}
NO_GPU = GpuProbe(error="NVML is not available (the nvidia-ml-py package is not installed: a CPU install)")


def _ctx(probe: GpuProbe, device: str = "auto", **kw) -> Context:
    return Context(settings=Settings.from_env(device=device), probe=probe, **kw)


def test_the_check_list_covers_the_issue():
    names = [c.name for c in CHECKS]
    assert names == [
        "environment", "gpu", "engine", "attention-backend", "cuda-graphs", "clips", "windows",
        "concurrent", "early-stop", "multilingual", "kv-dtype-ab",
    ]
    assert {c.name for c in CHECKS if c.gpu_only} == GPU_CHECKS
    # The checks that start an engine of their own come after every check on the default engine.
    assert names.index("multilingual") > names.index("early-stop")


def test_on_a_cpu_every_gpu_check_is_skipped_with_its_reason():
    ctx = _ctx(NO_GPU)
    for check in CHECKS:
        if check.gpu_only:
            verdict = asyncio.run(run_check(check, ctx))
            assert verdict.status == SKIP and verdict.detail.startswith("GPU only:")
            assert "nvidia-ml-py" in verdict.detail  # why there is no GPU


def test_device_cpu_skips_the_gpu_checks_even_with_a_gpu():
    ctx = _ctx(GpuProbe(capability=(8, 9), name="NVIDIA L4"), device="cpu")
    verdict = asyncio.run(run_check(next(c for c in CHECKS if c.name == "cuda-graphs"), ctx))
    assert verdict.status == SKIP and "DEVICE=cpu" in verdict.detail


class FakeEngine:
    """Just what the GPU-only checks read: the engine's description."""

    def __init__(self, backend: str = "FLASH_ATTN", kv: str = "auto") -> None:
        settings = {"attention_backend": backend, "enforce_eager": False, "kv_cache_dtype": kv}
        self.info = SimpleNamespace(settings=settings, model="openai/whisper-large-v3-turbo", multilingual=True)
        self.closed = False

    async def close(self) -> None:
        self.closed = True


def _gpu_ctx(capability, kv="auto", run_child=None) -> Context:
    ctx = _ctx(GpuProbe(capability=capability, name="NVIDIA fake", driver="580", driver_cuda=(13, 0)))
    ctx.engine = FakeEngine(kv=kv)
    ctx.options = SimpleNamespace(device="cuda", enforce_eager=False, kv_cache_dtype=kv)
    if run_child is not None:
        ctx.run_child = run_child
    return ctx


def test_on_a_gpu_the_backend_and_graph_checks_run():
    ctx = _gpu_ctx((8, 9))
    for name in ("attention-backend", "cuda-graphs"):
        verdict = asyncio.run(run_check(next(c for c in CHECKS if c.name == name), ctx))
        assert verdict.status == PASS, verdict
    assert "FLASH_ATTN" in asyncio.run(run_check(CHECKS[3], ctx)).detail


def test_kv_ab_is_skipped_where_fp8_is_refused():
    verdict = asyncio.run(run_check(CHECKS[-1], _gpu_ctx((8, 9))))
    assert verdict.status == SKIP and "9.x" in verdict.detail and "8.9" in verdict.detail


@pytest.mark.parametrize(("fp8_words", "status"), [(0, PASS), (3, FAIL)])
def test_kv_ab_on_9x_compares_fp8_with_the_model_dtype(fp8_words, status):
    clips = doctor.doctor_clips(quick=True)
    calls = []

    def child(argv, env):  # the other engine, in its own process: fp8 KV, a few words lost or none
        calls.append((argv, env["KV_CACHE_DTYPE"]))
        texts = {c.name: c.text if i else " ".join(c.text.split()[fp8_words:]) for i, c in enumerate(clips)}
        return "log line\n" + json.dumps({"texts": texts})

    ctx = _gpu_ctx((9, 0), run_child=child)
    ctx.quick = True
    ctx.texts = {c.name: c.text for c in clips}  # the default engine's texts (model dtype)
    verdict = asyncio.run(run_check(CHECKS[-1], ctx))
    assert calls and calls[0][1] == "fp8" and "--texts-only" in calls[0][0]
    assert verdict.status == status, verdict


def test_the_default_engine_is_closed_before_checks_that_start_their_own():
    seen = []

    async def needs_engine(ctx):
        seen.append(("on engine", ctx.engine is not None))
        return PASS, "ok"

    async def own_engine(ctx):
        seen.append(("own", ctx.engine is None))
        return PASS, "ok"

    engine = FakeEngine()
    checks = (
        doctor.Check("engine", needs_engine, needs_engine=False),
        doctor.Check("clips", needs_engine),
        doctor.Check("multilingual", own_engine, needs_engine=False),
    )
    ctx = _ctx(NO_GPU)
    verdicts = asyncio.run(run_doctor(ctx, checks, start_engine=lambda c: setattr(c, "engine", engine), report=lambda v: None))
    assert [v.status for v in verdicts] == [PASS, PASS, PASS]
    assert seen == [("on engine", True), ("on engine", True), ("own", True)] and engine.closed


def test_an_engine_that_does_not_start_fails_once_and_skips_what_needs_it():
    def fail(ctx):
        ctx.engine_error = "DEVICE=cuda but no usable GPU: no NVIDIA driver usable"

    checks = tuple(c for c in CHECKS if c.name in ("engine", "clips", "concurrent"))
    verdicts = asyncio.run(run_doctor(_ctx(NO_GPU), checks, start_engine=fail, report=lambda v: None))
    assert [(v.check, v.status) for v in verdicts] == [("engine", FAIL), ("clips", SKIP), ("concurrent", SKIP)]
    assert "no NVIDIA driver" in verdicts[0].detail and exit_status(verdicts) == 1


def test_a_check_that_raises_is_a_fail_not_a_crash():
    async def boom(ctx):
        raise RuntimeError("engine step failed")

    verdict = asyncio.run(run_check(doctor.Check("clips", boom, needs_engine=False), _ctx(NO_GPU)))
    assert verdict == Verdict("clips", FAIL, "RuntimeError: engine step failed")
    assert exit_status([Verdict("a", PASS, ""), Verdict("b", SKIP, "")]) == 0
