"""Build the one engine of the process from the settings."""

from __future__ import annotations

import logging
from pathlib import Path

from engine.base import Engine
from engine.models import default_model, resolve_model
from settings import Settings

log = logging.getLogger(__name__)


def create_engine(settings: Settings) -> Engine:
    if settings.engine == "remote":
        from engine.remote import RemoteEngine

        return RemoteEngine.from_settings(settings)
    if settings.engine != "vllm":
        raise ValueError(f"ENGINE={settings.engine!r}: use 'vllm' or 'remote'")
    from engine.vllm_engine import VllmEngine, choose_options

    options = choose_options(
        device=settings.device,
        enforce_eager=settings.enforce_eager,
        kv_cache_dtype=settings.kv_cache_dtype,
        max_num_seqs=settings.max_num_seqs,
        kv_cache_mb=settings.kv_cache_mb,
        gpu_memory_utilization=settings.gpu_memory_utilization,
        cpu_dtype=settings.cpu_dtype,
    )
    spec = settings.model or default_model(options.device == "cuda")
    model_path = resolve_model(spec, Path(settings.model_cache))
    log.info("loading %s (%s) on %s", spec, model_path, options.device)
    return VllmEngine(model_path, options, model_name=spec, encoder_window=settings.encoder_window)
