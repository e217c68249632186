"""Test files need names unique across the tiers: pytest imports them by basename (no
packages here), and two `test_x.py` in tests/unit and tests/integration stop the whole
run at collection ("import file mismatch"), as CI would have."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_file_name_is_unique_across_the_tiers() -> None:
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert not [n for n, count in names.items() if count > 1]
