"""Progress of long jobs, reported as seconds of audio done out of the total.

The engine only ever calls a `ProgressCallback`; what shows it is up to the caller:
a tqdm bar on stderr for the command line (`make_progress`), `gr.Progress` on the page
(`lambda done, total: progress(done / total if total else 1.0)`), nothing at all (None).
"""

from __future__ import annotations

import sys
from typing import Any, Literal, Protocol, TextIO, runtime_checkable

ProgressMode = Literal["auto", "always", "never"]


@runtime_checkable
class ProgressCallback(Protocol):
    """Called with the seconds of audio done so far and the total; may be called often."""

    def __call__(self, done_seconds: float, total_seconds: float) -> Any: ...


class TqdmProgress:
    """A tqdm bar in seconds of audio, opened on the first call and closed when done."""

    def __init__(self, *, file: TextIO | None = None, desc: str = "transcribing") -> None:
        self._file = file
        self._desc = desc
        self._bar: Any = None
        self._finished = False

    def __call__(self, done_seconds: float, total_seconds: float) -> None:
        from tqdm import tqdm

        total = round(max(float(total_seconds), 0.0), 1)
        done = round(min(max(float(done_seconds), 0.0), total), 1)
        if self._bar is None and self._finished and done >= total:
            return  # a repeated "all done" must not draw a second full bar
        if self._bar is None:
            self._bar = tqdm(
                total=total,
                desc=self._desc,
                unit="s",
                file=self._file if self._file is not None else sys.stderr,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s of audio [{elapsed}<{remaining}]",
                dynamic_ncols=True,
                leave=True,
            )
        elif self._bar.total != total:
            self._bar.total = total
        if done != self._bar.n:
            self._bar.update(done - self._bar.n)  # redraws at most every 0.1 s
        if done >= total:
            self.close()
            self._finished = True

    def close(self) -> None:
        """Close the bar early (a failed job); the next call starts a new one."""
        self._finished = False
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def make_progress(
    mode: ProgressMode = "auto",
    *,
    file: TextIO | None = None,
    desc: str = "transcribing",
) -> ProgressCallback | None:
    """The command line's reporter: a bar on stderr when it is a terminal ("auto"),
    always ("always", e.g. to see it in a log), or never (None: the engine reports nothing).
    """
    if mode not in ("auto", "always", "never"):
        raise ValueError(f"progress mode must be auto, always or never, not {mode!r}")
    stream = file if file is not None else sys.stderr
    if mode == "never" or (mode == "auto" and not _isatty(stream)):
        return None
    return TqdmProgress(file=file, desc=desc)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
