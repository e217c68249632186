"""Shared fixtures: one real vLLM engine (embedded tiny.en) per test session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")


@pytest.fixture(scope="session")
def settings():
    from settings import Settings

    s = Settings.from_env()
    s.engine = "vllm"
    s.model = os.environ.get("TEST_MODEL", "embedded:tiny.en")
    return s


@pytest.fixture(scope="session")
def engine(settings):
    """The real in-process vLLM engine on CPU, started once (~40 s compiled)."""
    from engine.factory import create_engine

    eng = create_engine(settings)
    yield eng
    eng._runner.shutdown()


@pytest.fixture(scope="session")
def english_clips():
    from bench.evalset import clips

    return clips(kind="speech", lang="en")
