"""Bucketed encoder windows on the real vLLM (engine.whisper_bucketed_model).

* The processor pads each clip's mel to its bucket and the placeholder count (encoder
  frames, = cross-attention width) follows per request.
* WER parity: the same clips decoded by a bucketed and a full-window engine, each in
  its own process (vLLM keeps its parallel state per process), eager, small KV cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.whisper_buckets import (
    ARCHITECTURE,
    CONFIG_KEY,
    PAD_KEY,
    engine_kwargs,
    parse_window,
)

ROOT = Path(__file__).resolve().parents[2]
SR = 16_000
WER_TOLERANCE = 1.02


@pytest.fixture(scope="module")
def processor():
    """vLLM's multimodal processor for our architecture, built from the embedded model's config."""
    from vllm.config import ModelConfig
    from vllm.multimodal import MULTIMODAL_REGISTRY

    from engine.models import resolve_model
    from settings import Settings

    kwargs, _ = engine_kwargs(parse_window("5,10,15,20,30"), runner="inprocess")
    model = resolve_model("embedded:tiny.en", Path(Settings.from_env().model_cache))
    config = ModelConfig(model=model, dtype="float32", max_model_len=448, **kwargs)
    assert config.architectures == [ARCHITECTURE]
    assert list(getattr(config.hf_config, CONFIG_KEY)) == [5.0, 10.0, 15.0, 20.0, 30.0]
    assert getattr(config.hf_config, PAD_KEY) == 0.0
    return MULTIMODAL_REGISTRY.create_processor(config)


def _encode(processor, seconds: float) -> dict:
    """vLLM's processing of one request's audio (what the engine does before scheduling)."""
    from vllm.multimodal.processing import ProcessorInputs, TimingContext

    audio = (np.random.default_rng(0).standard_normal(int(seconds * SR)) * 0.05).astype(np.float32)
    items = processor.info.parse_mm_data({"audio": (audio, SR)})
    return processor.apply(ProcessorInputs([0], items), TimingContext())


@pytest.mark.parametrize("seconds, frames", [(1.5, 250), (4.9, 250), (7.0, 500), (12.5, 750), (19.0, 1000), (29.0, 1500), (40.0, 1500)])
def test_placeholders_follow_the_bucket_per_request(processor, seconds: float, frames: int) -> None:
    out = _encode(processor, seconds)
    assert out["mm_placeholders"]["audio"][0].length == frames
    assert len(out["encoder_prompt_token_ids"]) == frames  # what the scheduler budgets and cross-attention allocates
    features = out["mm_kwargs"]["audio"][0]["input_features"].data
    assert tuple(features.shape[-2:]) == (80, 2 * frames)  # conv2's stride 2


def _decode(window: str, plan_path: Path) -> dict:
    env = dict(os.environ, ENFORCE_EAGER="true", KV_CACHE_MB="64", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "bench.encoder_windows", "--child", window, "--plan", str(plan_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert proc.returncode == 0 and line, proc.stderr[-2000:]
    return json.loads(line[7:])


def test_wer_parity_with_full_window(eval_english_clips, tmp_path) -> None:
    """Every 6th English clip of the larger set (short phone prompts to 35 s readings), both windows, same greedy decode."""
    from evaluation import wer

    chosen = eval_english_clips[::6]
    plan = {
        "clips": [{"path": str(c.path), "text": c.text, "name": c.name, "duration": c.duration} for c in chosen],
        "bs1_indices": [0],
        "longform": [],
        "eager": True,
    }
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(plan))
    refs = [c.text for c in chosen]
    full = wer(refs, _decode("full", plan_path)["texts"])
    bucketed_run = _decode("bucketed", plan_path)
    assert bucketed_run["settings"]["encoder_window"].startswith("bucketed")
    bucketed = wer(refs, bucketed_run["texts"])
    print(f"WER on {len(refs)} clips: full window {full:.4f}, bucketed {bucketed:.4f}")
    assert bucketed <= full * WER_TOLERANCE + 1e-9
