"""Peak memory of a benchmark child process, counted once.

Why not `ru_maxrss(SELF) + ru_maxrss(CHILDREN)` (what the bench used to report): vLLM
runs small programs at start (`lscpu`, `g++ --version`, `uname`) by fork + exec, and a
child forked from a large process is charged its parent's whole resident set at the
fork, so that sum counted the engine twice (3.5 GB reported for an engine process whose
own high-water mark is 1.7 GB). Here: this process's own high-water mark (VmHWM, exact),
or, if larger, the largest total seen by a sampler of this process's resident set plus
the proportional set size (PSS: shared pages split between sharers) of its children
alive at that moment, so real helper processes (torch.compile workers) still count.
"""

from __future__ import annotations

import resource
import threading

SAMPLE_INTERVAL_S = 0.25


class PeakMemory:
    """Start once per process (`PeakMemory.start()`); read `peak_mb()` at any time."""

    _instance: "PeakMemory | None" = None

    def __init__(self) -> None:
        import psutil

        self._me = psutil.Process()
        self._tree_peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_forever, name="peak-memory", daemon=True)
        self._thread.start()

    @classmethod
    def start(cls) -> "PeakMemory":
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def _sample_forever(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            self.sample()

    def current_bytes(self) -> int:
        """This process's RSS plus its live children's PSS, now (0 if unreadable)."""
        import psutil

        try:
            total = self._me.memory_info().rss
            for child in self._me.children(recursive=True):
                try:
                    total += child.memory_full_info().pss
                except (psutil.Error, AttributeError):
                    continue
        except psutil.Error:
            return 0
        return total

    def sample(self) -> None:
        self._tree_peak_bytes = max(self._tree_peak_bytes, self.current_bytes())

    def tree_peak_mb(self) -> float:
        """The largest sampled total of this process's RSS and its live children's PSS."""
        self.sample()
        return round(self._tree_peak_bytes / 2**20, 1)

    def peak_mb(self) -> float:
        own_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
        return round(max(own_kb / 1024, self.tree_peak_mb()), 1)


def peak_rss_mb() -> float:
    """Peak resident memory of this process and its live children so far, in MiB."""
    return PeakMemory.start().peak_mb()
