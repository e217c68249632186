"""`python -m engine doctor` on this CPU, for real: its own process, the real engine.

What a person runs on a fresh box or Space; here every check that applies to a CPU must
pass and every GPU check must be listed as skipped with its reason. `--quick` (fewer clips,
16 concurrent decodes) and eager mode keep it to a few minutes on 2 cores.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CPU_CHECKS = {"environment", "engine", "clips", "windows", "concurrent", "early-stop", "multilingual"}
GPU_CHECKS = {"gpu", "attention-backend", "cuda-graphs", "kv-dtype-ab"}
LINE = re.compile(r"^(PASS|FAIL|SKIP)  (\S+)\s+(.*)$")


@pytest.mark.slow
def test_doctor_passes_every_cpu_check_and_skips_the_gpu_ones_saying_why():
    env = dict(os.environ, ENFORCE_EAGER="true", DEVICE="auto")
    env.pop("MODEL", None)  # the default model: the doctor checks the defaults
    proc = subprocess.run(
        [sys.executable, "-m", "engine", "doctor", "--quick"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200, check=False,
    )
    verdicts = {m.group(2): (m.group(1), m.group(3)) for m in map(LINE.match, proc.stdout.splitlines()) if m}
    assert set(verdicts) == CPU_CHECKS | GPU_CHECKS, proc.stdout + proc.stderr[-3000:]
    failed = {name: v for name, v in verdicts.items() if v[0] == "FAIL"}
    assert not failed and proc.returncode == 0, f"{failed}\n{proc.stderr[-3000:]}"
    assert all(verdicts[name][0] == "PASS" for name in CPU_CHECKS), verdicts
    for name in GPU_CHECKS:
        status, detail = verdicts[name]
        assert status == "SKIP" and detail.startswith("GPU only:") and "nvidia-ml-py" in detail, (name, detail)
    assert re.search(r"WER 0\.\d+ on \d+ clips", verdicts["clips"][1])
    assert "every text equal to its one-at-a-time decode" in verdicts["concurrent"][1]
    assert re.search(r"^doctor: 7 passed, 0 failed, 4 skipped in \d+ s$", proc.stdout, re.M)


def test_health_shows_the_chosen_options_and_why(engine):
    from web.health import public_info

    settings = public_info(engine.info)["settings"]
    assert settings["attention_backend"] == "vLLM default" and settings["gpu"] is None
    # CPU_DTYPE=auto: a bf16 encoder where the CPU has AVX-512 BF16 / AMX, float32 elsewhere; the decoder float32.
    from engine.vllm_engine import BF16_CPU_FLAGS, cpu_flags

    chosen = "CPU: bfloat16 encoder, float32 decoder" if cpu_flags() & BF16_CPU_FLAGS else "CPU: float32"
    assert any(choice.startswith(chosen) for choice in settings["choices"]), settings["choices"]
    assert settings["dtype"] == "float32"
    assert settings["encoder_dtype"] == ("bfloat16" if cpu_flags() & BF16_CPU_FLAGS else "float32")
    assert not any("/" in choice and ("/home" in choice or "/root" in choice) for choice in settings["choices"])
