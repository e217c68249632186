"""A process-wide limit on concurrent live streams, shared by the page and the WebSocket."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator


class StreamsFull(Exception):
    """Raised when MAX_STREAMS live streams are already running."""


class StreamSlots:
    """Counts live streams; `acquire()` refuses past the limit instead of queueing."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._active = 0
        self._lock = threading.Lock()

    @property
    def active(self) -> int:
        return self._active

    def try_acquire(self) -> bool:
        with self._lock:
            if self.limit > 0 and self._active >= self.limit:
                return False
            self._active += 1
        _set_gauge(self._active)
        return True

    def release(self) -> None:
        with self._lock:
            self._active = max(0, self._active - 1)
        _set_gauge(self._active)

    @contextmanager
    def acquire(self) -> Iterator[None]:
        if not self.try_acquire():
            raise StreamsFull(f"The server is full ({self.limit} live streams). Try again in a minute.")
        try:
            yield
        finally:
            self.release()


def _set_gauge(value: int) -> None:
    try:
        from web.metrics import ACTIVE_SESSIONS
    except ImportError:  # metrics are optional
        return
    ACTIVE_SESSIONS.set(value)
