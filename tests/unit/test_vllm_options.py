"""How vLLM is configured per machine. A GPU can't run here, so its capability is faked."""

from __future__ import annotations

import pytest

from engine.gpu import GpuProbe, GpuUnavailable
from engine.models import default_model, resolve_model
from engine.vllm_engine import choose_options


def test_cpu_defaults_are_the_measured_best():
    options = choose_options(device="cpu", find_cpu_flags=lambda: frozenset({"avx2"}))
    assert (options.device, options.dtype, options.runner) == ("cpu", "float32", "inprocess")
    assert options.encoder_dtype is None
    assert options.enforce_eager is False and options.kv_cache_dtype == "auto"
    assert options.kv_cache_memory_bytes == 256 * 1024 * 1024 and options.max_num_seqs == 8


@pytest.mark.parametrize(
    ("requested", "flags", "dtype", "encoder_dtype", "reason"),
    [
        ("float32", {"avx512_bf16"}, "float32", None, "CPU_DTYPE=float32"),
        ("bfloat16", {"avx512_bf16"}, "bfloat16", None, "avx512_bf16"),
        ("bfloat16", {"amx_bf16", "avx512f"}, "bfloat16", None, "amx_bf16"),
        ("bfloat16", {"avx2"}, "float32", None, "CPU_DTYPE=bfloat16 refused"),
        ("bfloat16-encoder", {"avx512_bf16"}, "float32", "bfloat16", "bfloat16 encoder, float32 decoder"),
        ("bfloat16-encoder", {"avx2"}, "float32", None, "CPU_DTYPE=bfloat16-encoder refused"),
        # The default: the split where the CPU has bf16 instructions, float32 elsewhere.
        ("auto", {"avx512_bf16"}, "float32", "bfloat16", "CPU_DTYPE=auto"),
        ("auto", {"avx2"}, "float32", None, "no AVX-512 BF16"),
    ],
)
def test_cpu_dtype_follows_the_cpu(requested, flags, dtype, encoder_dtype, reason):
    options = choose_options(device="cpu", cpu_dtype=requested, find_cpu_flags=lambda: frozenset(flags))
    assert (options.dtype, options.encoder_dtype) == (dtype, encoder_dtype)
    assert any(reason in r for r in options.reasons), options.reasons


def test_cpu_dtype_default_is_auto():
    flags = frozenset({"avx512_bf16"})
    assert choose_options(device="cpu", find_cpu_flags=lambda: flags) == choose_options(
        device="cpu", cpu_dtype="auto", find_cpu_flags=lambda: flags
    )


def test_cpu_dtype_rejects_other_names():
    with pytest.raises(ValueError, match="CPU_DTYPE"):
        choose_options(device="cpu", cpu_dtype="float16")


def test_cpu_refuses_fp8_with_a_reason():
    options = choose_options(device="cpu", kv_cache_dtype="fp8", enforce_eager="true", kv_cache_mb=128)
    assert options.kv_cache_dtype == "auto" and options.enforce_eager is True
    assert options.kv_cache_memory_bytes == 128 * 1024 * 1024
    assert any("fp8 needs AVX-512" in r for r in options.reasons)


def _gpu(capability):
    """A stand-in for engine.gpu.usable_gpu: this GPU for DEVICE=auto/cuda, the CPU for DEVICE=cpu."""
    probe = GpuProbe(capability=capability, name="NVIDIA fake", driver="580.65.06", driver_cuda=(13, 0))
    return lambda device: None if device == "cpu" else probe


@pytest.mark.parametrize(
    ("capability", "dtype", "backend"),
    [((7, 5), "float16", "TRITON_ATTN"), ((8, 0), "bfloat16", "FLASH_ATTN"), ((8, 6), "bfloat16", "FLASH_ATTN"),
     ((8, 9), "bfloat16", "FLASH_ATTN"), ((9, 0), "bfloat16", "FLASH_ATTN")],
)
def test_gpu_options_follow_the_compute_capability(capability, dtype, backend):
    options = choose_options(find_gpu=_gpu(capability))
    assert (options.device, options.dtype, options.runner) == ("cuda", dtype, "asyncllm")
    assert options.attention_backend == backend and options.kv_cache_dtype == "auto"
    assert options.enforce_eager is False  # CUDA graphs on
    assert "NVIDIA fake" in options.gpu and any("KV cache" in r for r in options.reasons)


def test_fp8_kv_cache_is_opt_in_and_only_on_9x():
    assert choose_options(kv_cache_dtype="fp8", find_gpu=_gpu((9, 0))).kv_cache_dtype == "fp8"
    l4 = choose_options(kv_cache_dtype="fp8", find_gpu=_gpu((8, 9)))
    assert l4.kv_cache_dtype == "auto" and any("refused" in r for r in l4.reasons)


def test_gpu_eager_on_request():
    options = choose_options(enforce_eager="true", kv_cache_dtype="auto", find_gpu=_gpu((8, 9)))
    assert options.enforce_eager is True
    assert any("CUDA graphs off" in r for r in options.reasons)


def test_cuda_requested_without_a_gpu_fails_clearly():
    def no_gpu(device):
        raise GpuUnavailable("DEVICE=cuda but no usable GPU: no NVIDIA driver usable")

    with pytest.raises(GpuUnavailable, match="no usable GPU"):
        choose_options(device="cuda", find_gpu=no_gpu)


def test_an_unknown_device_is_refused():
    with pytest.raises(ValueError, match="DEVICE='gpu'"):
        choose_options(device="gpu")


def test_default_model_per_device():
    assert default_model(has_gpu=False) == "embedded:tiny.en"
    assert default_model(has_gpu=True) == "openai/whisper-large-v3-turbo"


def test_model_spec_resolution(tmp_path):
    assert resolve_model("openai/whisper-small", tmp_path) == "openai/whisper-small"  # a hub id, passed on
    with pytest.raises(FileNotFoundError, match="no such directory"):
        resolve_model("./does-not-exist", tmp_path)
    hf_dir = tmp_path / "my-model"
    hf_dir.mkdir()
    (hf_dir / "model.safetensors").write_bytes(b"")
    assert resolve_model(str(hf_dir), tmp_path) == str(hf_dir)
