"""How vLLM is configured per machine. A GPU can't run here, so its capability is faked."""

from __future__ import annotations

import pytest

from engine import vllm_engine
from engine.models import default_model, resolve_model
from engine.vllm_engine import choose_options


def test_cpu_defaults_are_the_measured_best():
    options = choose_options(device="cpu")
    assert (options.device, options.dtype, options.runner) == ("cpu", "float32", "inprocess")
    assert options.enforce_eager is False and options.kv_cache_dtype == "auto"
    assert options.kv_cache_memory_bytes == 256 * 1024 * 1024 and options.max_num_seqs == 8


def test_cpu_refuses_fp8_with_a_reason():
    options = choose_options(device="cpu", kv_cache_dtype="fp8", enforce_eager="true", kv_cache_mb=128)
    assert options.kv_cache_dtype == "auto" and options.enforce_eager is True
    assert options.kv_cache_memory_bytes == 128 * 1024 * 1024
    assert any("fp8 needs AVX-512" in r for r in options.reasons)


@pytest.mark.parametrize(
    ("capability", "kv_dtype"),
    [((8, 9), "fp8"), ((9, 0), "fp8"), ((8, 0), "auto"), ((7, 5), "auto")],
)
def test_gpu_uses_fp8_kv_cache_from_ada_on(monkeypatch, capability, kv_dtype):
    monkeypatch.setattr(vllm_engine, "cuda_capability", lambda: capability)
    options = choose_options()
    assert (options.device, options.dtype, options.runner) == ("cuda", "bfloat16", "asyncllm")
    assert options.kv_cache_dtype == kv_dtype
    assert options.enforce_eager is False  # CUDA graphs on
    assert any("KV cache" in r for r in options.reasons)


def test_gpu_eager_on_request(monkeypatch):
    monkeypatch.setattr(vllm_engine, "cuda_capability", lambda: (8, 9))
    options = choose_options(enforce_eager="true", kv_cache_dtype="auto")
    assert options.enforce_eager is True
    assert any("CUDA graphs off" in r for r in options.reasons)


def test_cuda_requested_without_a_gpu_fails_clearly(monkeypatch):
    monkeypatch.setattr(vllm_engine, "cuda_capability", lambda: None)
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        choose_options(device="cuda")


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
