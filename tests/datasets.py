"""Where the tests find audio: the small set inside the repository, and the larger optional one.

`TEST_DATA` (tests/data, about 5 MB, see its README) is always there; the default run uses
it. The larger evaluation set (`../shared/eval` beside the checkout, or `EVAL_DIR`) is not
in a user's clone: tests that need it take the `eval_set` fixture (tests/conftest.py), or
call `require_eval_set()`, and skip with the reason below when it is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluation import eval_dir

TEST_DATA = Path(__file__).resolve().parent / "data"


def eval_set_missing() -> str | None:
    """Why the larger evaluation set cannot be used, or None when it can."""
    base = eval_dir()
    if (base / "manifest.jsonl").is_file():
        return None
    return f"needs the larger evaluation set, not found at {base} (put it at ../shared/eval beside the checkout or set EVAL_DIR)"


def require_eval_set() -> Path:
    """The larger evaluation set's folder; skips the calling test when it is absent."""
    reason = eval_set_missing()
    if reason:
        pytest.skip(reason)
    return eval_dir()


needs_eval_set = pytest.mark.skipif(eval_set_missing() is not None, reason=eval_set_missing() or "")
