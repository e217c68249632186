"""bench.memory counts a benchmark's memory once: a child that holds real memory adds
its share, a child forked from a large process and doing nothing does not add the
parent's resident set again (the old ru_maxrss sum did)."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np

from bench.memory import PeakMemory

MB = 2**20


def test_a_child_holding_memory_counts_and_a_bare_fork_does_not() -> None:
    # Instant totals, not peaks: in a long test run this process's own high-water mark
    # (which `peak_mb` also takes) and earlier children may be anything.
    meter = PeakMemory()
    big = np.ones(300 * MB // 8)  # this process: +300 MB resident
    base = meter.current_bytes()
    # A fork that only sleeps shares every page with us: its PSS is small.
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        time.sleep(1.0)
        assert meter.current_bytes() < base + 100 * MB
    finally:
        idle.kill()
        idle.wait()
    # A child with 200 MB of its own.
    holder = subprocess.Popen(
        [sys.executable, "-c", "import numpy, time; a = numpy.ones(200 * 2**20 // 8); time.sleep(15)"]
    )
    try:
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline and meter.current_bytes() < base + 180 * MB:
            time.sleep(0.2)
        assert meter.current_bytes() >= base + 180 * MB
        tree = meter.tree_peak_mb()  # samples now
        assert tree >= (base + 180 * MB) / MB - 1
        assert meter.peak_mb() >= tree  # a later sample and the high-water mark can only add
    finally:
        holder.kill()
        holder.wait()
    del big
