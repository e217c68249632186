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
    # The sampled figure: this process's own high-water mark, which `peak_mb` also takes,
    # may be anything in a long test run.
    meter = PeakMemory()
    big = np.ones(300 * MB // 8)  # this process: +300 MB resident
    before = meter.tree_peak_mb()
    # A fork that only sleeps shares every page with us: its PSS is small.
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3)"])
    try:
        time.sleep(1.0)
        meter.sample()
        assert meter.tree_peak_mb() < before + 100
    finally:
        idle.kill()
        idle.wait()
    # A child with 200 MB of its own.
    holder = subprocess.Popen(
        [sys.executable, "-c", "import numpy, time; a = numpy.ones(200 * 2**20 // 8); time.sleep(5)"]
    )
    try:
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline and meter.tree_peak_mb() < before + 180:
            time.sleep(0.2)
            meter.sample()
        assert meter.tree_peak_mb() >= before + 180
        assert meter.peak_mb() >= meter.tree_peak_mb()
    finally:
        holder.kill()
        holder.wait()
    del big
