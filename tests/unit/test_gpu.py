"""The GPU rules (engine.gpu) and the start-up environment (engine.runtime_env), no GPU needed.

No GPU exists on the development machines: NVML is a fake module here, the compute
capability a number. The rules themselves are what vLLM 0.32's sources say (see engine.gpu).
"""

from __future__ import annotations

import pytest

from engine.gpu import GpuProbe, GpuUnavailable, driver_problem, plan_for, probe_gpu, usable_gpu
from engine.runtime_env import apply_runtime_env, runtime_env

# (compute capability, card) -> (dtype, attention backend) for the default KV cache.
CARDS = {
    (7, 5): ("T4", "float16", "TRITON_ATTN"),
    (8, 0): ("A100", "bfloat16", "FLASH_ATTN"),
    (8, 6): ("A10G", "bfloat16", "FLASH_ATTN"),
    (8, 9): ("L4", "bfloat16", "FLASH_ATTN"),
    (9, 0): ("H100", "bfloat16", "FLASH_ATTN"),
    (10, 0): ("B200", "bfloat16", "FLASH_ATTN"),
    (12, 0): ("RTX PRO 6000", "bfloat16", "FLASH_ATTN"),
}


@pytest.mark.parametrize("capability", sorted(CARDS))
def test_every_card_gets_precompiled_kernels_and_no_fp8_by_default(capability):
    card, dtype, backend = CARDS[capability]
    plan = plan_for(capability)
    assert (plan.dtype, plan.attention_backend, plan.kv_cache_dtype) == (dtype, backend, "auto"), card
    assert any(backend in r for r in plan.reasons) and any(dtype in r for r in plan.reasons)
    assert not any("FLASHINFER" == r for r in plan.reasons)


@pytest.mark.parametrize(
    ("capability", "asked", "kv"),
    [((9, 0), "fp8", "fp8"), ((9, 0), "fp8_e4m3", "fp8_e4m3"), ((9, 0), "fp8_e5m2", "auto"),
     ((8, 9), "fp8", "auto"), ((8, 0), "fp8", "auto"), ((7, 5), "fp8", "auto"), ((10, 0), "fp8", "auto")],
)
def test_fp8_kv_only_on_request_and_only_where_flash_attention_3_takes_it(capability, asked, kv):
    plan = plan_for(capability, kv_cache_dtype=asked)
    assert plan.kv_cache_dtype == kv
    if kv == "auto":
        assert any("refused" in r for r in plan.reasons)


def test_older_than_volta_is_refused_with_the_reason():
    with pytest.raises(GpuUnavailable, match="6.1 is older"):
        plan_for((6, 1))


class FakeNvml:
    """The part of pynvml (nvidia-ml-py) that engine.gpu uses."""

    def __init__(self, *, init_error: Exception | None = None, count: int = 1, capability=(8, 9), cuda=13000) -> None:
        self.init_error, self.count, self.capability, self.cuda = init_error, count, capability, cuda
        self.shutdowns = 0

    def nvmlInit(self):
        if self.init_error:
            raise self.init_error

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetCount(self):
        return self.count

    def nvmlDeviceGetHandleByIndex(self, index):
        return ("handle", index)

    def nvmlDeviceGetCudaComputeCapability(self, handle):
        return self.capability

    def nvmlDeviceGetName(self, handle):
        return b"NVIDIA L4"

    def nvmlSystemGetDriverVersion(self):
        return "580.65.06"

    def nvmlSystemGetCudaDriverVersion_v2(self):
        return self.cuda


def test_probe_reads_capability_name_and_driver_through_nvml():
    nvml = FakeNvml()
    probe = probe_gpu(nvml, environ={})
    assert probe.capability == (8, 9) and probe.name == "NVIDIA L4" and probe.driver_cuda == (13, 0)
    assert "compute capability 8.9" in probe.describe() and nvml.shutdowns == 1


@pytest.mark.parametrize(
    ("nvml", "environ", "error"),
    [
        (FakeNvml(init_error=RuntimeError("NVML Shared Library Not Found")), {}, "no NVIDIA driver usable"),
        (FakeNvml(count=0), {}, "NVML sees 0 GPU"),
        (FakeNvml(), {"CUDA_VISIBLE_DEVICES": ""}, "hides every GPU"),
    ],
)
def test_probe_says_why_there_is_no_gpu(nvml, environ, error):
    probe = probe_gpu(nvml, environ=environ)
    assert probe.capability is None and error in probe.error


def test_probe_without_nvidia_ml_py_is_a_cpu_install(monkeypatch):
    monkeypatch.setattr("engine.gpu._import_nvml", lambda: None)
    assert "nvidia-ml-py" in probe_gpu(environ={}).error


L4 = GpuProbe(capability=(8, 9), name="NVIDIA L4", driver="580.65.06", driver_cuda=(13, 0))
NONE = GpuProbe(error="no NVIDIA driver usable (NVML init failed: Driver Not Loaded)")


def test_driver_too_old_for_torchs_cuda_is_named():
    old = GpuProbe(capability=(8, 9), name="NVIDIA L4", driver="550.54", driver_cuda=(12, 4))
    assert "update the driver" in driver_problem(old, "13.0")
    assert driver_problem(L4, "13.0") is None and driver_problem(old, "12.8") is None  # minor-version compatibility


def test_device_cuda_without_a_gpu_fails_at_start_naming_the_cause():
    with pytest.raises(GpuUnavailable, match="DEVICE=cuda but no usable GPU: no NVIDIA driver usable"):
        usable_gpu("cuda", probe=NONE, build="cuda", cuda=("13.0", False))
    old = GpuProbe(capability=(8, 9), name="NVIDIA L4", driver="550.54", driver_cuda=(12, 4))
    with pytest.raises(GpuUnavailable, match="update the driver"):
        usable_gpu("cuda", probe=old, build="cuda", cuda=("13.0", False))
    with pytest.raises(GpuUnavailable, match="sees no GPU although NVML sees NVIDIA L4"):
        usable_gpu("cuda", probe=L4, build="cuda", cuda=("13.0", False))


def test_auto_with_the_cuda_wheel_and_no_gpu_is_not_a_silent_cpu_start():
    with pytest.raises(GpuUnavailable, match="CUDA build of vLLM is installed but no GPU is usable"):
        usable_gpu("auto", probe=NONE, build="cuda", cuda=("13.0", False))


def test_auto_takes_the_cpu_only_where_it_can_run():
    assert usable_gpu("auto", probe=NONE, build="cpu", cuda=(None, False)) is None
    assert usable_gpu("cpu", probe=L4, build="cuda", cuda=("13.0", True)) is None
    assert usable_gpu("auto", probe=L4, build="cuda", cuda=("13.0", True)) is L4


def test_caches_go_to_a_spaces_persistent_storage_and_usage_stats_off():
    space = {"SPACE_ID": "me/rt-whisper"}
    assert runtime_env(space, writable=lambda p: p == "/data") == {
        "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "HF_HOME": "/data/huggingface", "VLLM_CACHE_ROOT": "/data/vllm",
    }
    # No persistent storage, or not a Space: the usual caches, usage statistics still off.
    assert runtime_env(space, writable=lambda p: False) == {"VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
    assert "HF_HOME" not in runtime_env({}, writable=lambda p: True)


def test_what_the_user_set_is_kept():
    environ = {"SPACE_ID": "me/x", "HF_HOME": "/models/hf", "DO_NOT_TRACK": "0"}
    added = apply_runtime_env(environ, writable=lambda p: True)
    assert environ["HF_HOME"] == "/models/hf" and environ["DO_NOT_TRACK"] == "0"
    assert added == {"VLLM_NO_USAGE_STATS": "1", "VLLM_CACHE_ROOT": "/data/vllm"}
