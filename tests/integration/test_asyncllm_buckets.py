"""The bucketed encoder window reaches an engine core in a child process.

vLLM's AsyncLLM (the runner the app uses on a GPU) spawns its engine core; our Whisper
variant is known there only through the `vllm.general_plugins` entry point installed by
scripts/setup.sh (`pip install --no-deps -e .`, pyproject.toml). Without it the core
could not even load the architecture the front end asks for. Run here on the CPU, in a
process of its own (vLLM keeps parallel state per process), eager, small KV cache.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import asyncio, dataclasses, json
from pathlib import Path

from engine.base import DecodeRequest
from engine.models import resolve_model
from engine.vllm_engine import VllmEngine, choose_options
from evaluation import clips, read_audio
from settings import Settings

options = dataclasses.replace(choose_options(device="cpu", enforce_eager="true", kv_cache_mb=64), runner="asyncllm")
model = resolve_model("embedded:tiny.en", Path(Settings.from_env().model_cache))
engine = VllmEngine(model, options, encoder_window="bucketed")
chosen = [c for c in clips(kind="speech", lang="en", base=Path("tests/data")) if c.duration < 9][:3]

import numpy as np
every = clips(kind="speech", lang="en", base=Path("tests/data"))
pause = np.zeros(8000, np.float32)
long_audio = np.concatenate([x for c in every for x in (read_audio(c.path), pause)])[: 45 * 16000]

async def main():
    results = await asyncio.gather(*(engine.transcribe(DecodeRequest(read_audio(c.path), language="en")) for c in chosen))
    # Over 30 s: long-form windows that ask the child's logits processor to decode to their last speech.
    long = await engine.transcribe(DecodeRequest(long_audio, language="en"))
    await engine.close()
    return [r.text for r in results], long

texts, long = asyncio.run(main())
print("RESULT " + json.dumps({"window": engine.info.settings["encoder_window"], "runner": engine.info.settings["runner"],
                              "texts": texts, "refs": [c.text for c in chosen],
                              "long_text": long.text, "long_segments": [[s.start, s.end] for s in long.segments],
                              "long_duration": len(long_audio) / 16000}), flush=True)
"""


def test_asyncllm_engine_core_in_a_child_process_runs_the_bucketed_window() -> None:
    """Also the logits processor that keeps a long file's windows decoding (vLLM loads it
    by name in the engine core's process) and, on a CPU with bf16, the bf16 encoder."""
    from evaluation import wer

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert proc.returncode == 0 and line, proc.stderr[-3000:]
    result = json.loads(line[7:])
    assert result["runner"] == "asyncllm"
    assert result["window"].startswith("bucketed"), result["window"]
    assert len(result["texts"]) == 3
    assert wer(result["refs"], result["texts"]) < 0.15, result
    segments = result["long_segments"]
    assert len(result["long_text"].split()) > 60, result["long_text"]
    assert segments and segments[-1][1] > result["long_duration"] - 5, segments
