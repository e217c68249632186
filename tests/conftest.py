"""Shared fixtures and the tiers.

The tests live in three folders, and each test gets its folder's marker here, so a tier
runs alone with a path or a marker:

- `tests/unit/` (`unit`): no vLLM, no network, seconds. `./test.sh tests/unit`
- `tests/integration/` (`integration`): the real engine, real servers on loopback,
  faster-whisper as the reference. Minutes.
- `tests/e2e/` (`e2e`): the page in a real headless Chromium over WebRTC.

The real vLLM engine (embedded tiny.en) is one session fixture, started only when a test
asks for `engine`.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
# The page's transcript database (DATA_DIR): a throwaway folder, never the user's own.
os.environ.setdefault("DATA_DIR", tempfile.mkdtemp(prefix="rtw-test-data-"))

TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test with its tier, taken from the folder it lives in (tests/<tier>/...)."""
    tests_dir = Path(__file__).resolve().parent
    for item in items:
        try:
            tier = Path(str(item.path)).resolve().relative_to(tests_dir).parts[0]
        except ValueError:
            continue
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))


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
def test_data() -> Path:
    """The small test-audio set inside the repository (tests/data): always there."""
    from tests.datasets import TEST_DATA

    return TEST_DATA


@pytest.fixture(scope="session")
def eval_set() -> Path:
    """The larger evaluation set (../shared/eval or EVAL_DIR); the test skips, saying why, without it."""
    from tests.datasets import require_eval_set

    return require_eval_set()


@pytest.fixture(scope="session")
def english_clips(test_data):
    """tests/data's English speech clips (14: LJ Speech, CMU ARCTIC, JFK; 1.6-11 s)."""
    from evaluation import clips

    return clips(kind="speech", lang="en", base=test_data)


@pytest.fixture(scope="session")
def eval_english_clips(eval_set):
    """The larger set's English speech clips (175), for figures that need many; skips without it."""
    from evaluation import clips

    return clips(kind="speech", lang="en", base=eval_set)
