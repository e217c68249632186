"""One queue for long-form work: files from the API and from the page share MAX_JOBS slots.

A file is decoded, split and transcribed inside a job. At most `max_jobs` run at once and
at most `max_queued` wait for a slot; one more is refused at once with `JobsFull`, which
the API turns into a 429 with `Retry-After` and the page into a message. A job whose
client has gone is cancelled, and the cancellation reaches the engine (vLLM aborts the
request): the API watches the HTTP connection (`run_until_disconnect`), the page cancels
the jobs of a tab when it is closed (`cancel_owner`, from Gradio's `unload`) or on Stop.

On a restart or deploy (SIGTERM) the queue drains (`start_draining`, `drain`): new jobs
are refused with `JobsDraining` (a `JobsFull`, so the API answers it like a full queue,
with the restart named and a Retry-After), the jobs already running or waiting may finish
until the drain's deadline. /health reads `draining` (web/health.py).

Why one queue: a long file costs one 16 kHz float32 copy of its audio (~0.9 GB for four
hours) and keeps the engine busy for minutes; without a bound a handful of uploads take
the whole machine and every live stream with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

#: A Retry-After is never below or above these (seconds).
RETRY_AFTER_MIN_S = 1
RETRY_AFTER_MAX_S = 600
#: Assumed length of a job before any has finished (seconds).
DEFAULT_JOB_S = 30.0
#: How often a drain looks whether the last job has ended (seconds).
DRAIN_POLL_S = 0.1


class JobsFull(Exception):
    """Every job slot is busy and the waiting line is full."""

    def __init__(self, running: int, queued: int, retry_after_s: int) -> None:
        super().__init__(
            f"The server is busy: {running} file{'s' if running != 1 else ''} being transcribed and "
            f"{queued} waiting (MAX_JOBS / MAX_QUEUED). Try again in about {retry_after_s} s."
        )
        self.running = running
        self.queued = queued
        self.retry_after_s = retry_after_s


#: Retry-After of a job refused while the server restarts (seconds): about one restart.
RESTART_RETRY_S = 30


class JobsDraining(JobsFull):
    """The server is going away (SIGTERM): no new job is taken."""

    def __init__(self, running: int, queued: int) -> None:
        Exception.__init__(
            self,
            f"The server is restarting: no new files are taken now. Try again in about {RESTART_RETRY_S} s.",
        )
        self.running = running
        self.queued = queued
        self.retry_after_s = RESTART_RETRY_S


class ClientGone(Exception):
    """The client that asked for the job disconnected; the job was cancelled."""


@dataclass
class JobStats:
    started: int = 0
    finished: int = 0
    cancelled: int = 0
    failed: int = 0
    refused: Counter = field(default_factory=Counter)  # by source (api, page)

    def to_dict(self) -> dict[str, object]:
        return {
            "started": self.started,
            "finished": self.finished,
            "cancelled": self.cancelled,
            "failed": self.failed,
            "refused": dict(self.refused),
        }


class JobQueue:
    """MAX_JOBS running, MAX_QUEUED waiting, FIFO; safe to share on one event loop."""

    def __init__(self, max_jobs: int, max_queued: int) -> None:
        self.max_jobs = max(1, int(max_jobs))
        self.max_queued = max(0, int(max_queued))
        self.running = 0
        self.queued = 0
        self.stats = JobStats()
        self._semaphore: asyncio.Semaphore | None = None
        self._avg_job_s = DEFAULT_JOB_S
        self._owners: dict[str, set[asyncio.Task]] = {}
        self.draining = False

    def _sem(self) -> asyncio.Semaphore:
        # Created lazily so that it belongs to the server's event loop, not the builder's.
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.max_jobs)
        return self._semaphore

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the queue ahead, at the average job length."""
        ahead = self.queued + 1
        estimate = self._avg_job_s * ahead / self.max_jobs
        return int(min(RETRY_AFTER_MAX_S, max(RETRY_AFTER_MIN_S, math.ceil(estimate))))

    def snapshot(self) -> dict[str, object]:
        return {
            "running": self.running,
            "queued": self.queued,
            "max_jobs": self.max_jobs,
            "max_queued": self.max_queued,
            "draining": self.draining,
            **self.stats.to_dict(),
        }

    @contextlib.asynccontextmanager
    async def slot(self, source: str = "api") -> AsyncIterator[None]:
        """Wait for a job slot (or raise `JobsFull` at once when the line is full)."""
        sem = self._sem()
        if self.draining:
            self.stats.refused[source] += 1
            raise JobsDraining(self.running, self.queued)
        if self.running + self.queued >= self.max_jobs + self.max_queued:
            self.stats.refused[source] += 1
            raise JobsFull(self.running, self.queued, self.retry_after())
        self.queued += 1
        try:
            await sem.acquire()
        finally:
            self.queued -= 1
        self.running += 1
        self.stats.started += 1
        began = time.monotonic()
        try:
            yield
        except asyncio.CancelledError:
            self.stats.cancelled += 1
            raise
        except Exception:  # a bad file, an upload cut off midway: counted, then answered by the caller
            self.stats.failed += 1
            raise
        else:
            self.stats.finished += 1
            self._avg_job_s = 0.8 * self._avg_job_s + 0.2 * (time.monotonic() - began)
        finally:
            self.running -= 1
            sem.release()

    async def run(self, work: Callable[[], Awaitable[T]], *, source: str = "api", owner: str | None = None) -> T:
        """Run `work()` in a job slot; `cancel_owner(owner)` cancels it (waiting or running)."""
        task = asyncio.current_task()
        if owner is not None and task is not None:
            self._owners.setdefault(owner, set()).add(task)
        try:
            async with self.slot(source):
                return await work()
        finally:
            if owner is not None and task is not None:
                tasks = self._owners.get(owner)
                if tasks is not None:
                    tasks.discard(task)
                    if not tasks:
                        del self._owners[owner]

    def start_draining(self) -> None:
        """A restart: refuse every new job from now on (`JobsDraining`)."""
        self.draining = True

    async def drain(self, timeout_s: float) -> bool:
        """Refuse new jobs and wait (at most `timeout_s`) until none runs or waits; False
        when some are still there at the deadline (the server's shutdown cancels them)."""
        self.start_draining()
        deadline = time.monotonic() + max(0.0, timeout_s)
        while self.running + self.queued > 0:
            if time.monotonic() >= deadline:
                log.warning("%d job(s) still running after %.0f s of draining", self.running + self.queued, timeout_s)
                return False
            await asyncio.sleep(DRAIN_POLL_S)
        return True

    def cancel_owner(self, owner: str) -> int:
        """Cancel every job (waiting or running) of `owner`, e.g. a page tab that was closed."""
        tasks = self._owners.pop(owner, set())
        for task in tasks:
            task.cancel()
        if tasks:
            log.info("cancelled %d job(s) of a client that has gone", len(tasks))
        return len(tasks)

    async def run_until_disconnect(
        self, work: Callable[[], Awaitable[T]], receive: Callable[[], Awaitable[dict[str, Any]]], *, source: str = "api"
    ) -> T:
        """Run `work()` in a job slot, cancelled when the HTTP client disconnects.

        `receive` is the ASGI receive channel of a request whose body has been read: the
        next message it gives is `http.disconnect`, when the client goes.
        """
        job = asyncio.ensure_future(self.run(work, source=source))
        watcher = asyncio.ensure_future(_wait_disconnect(receive))
        try:
            done, _ = await asyncio.wait({job, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if job in done:
                return job.result()
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await job
            log.info("%s job cancelled: the client disconnected", source)
            raise ClientGone("the client disconnected")
        finally:
            watcher.cancel()
            if not job.done():
                job.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await job


async def _wait_disconnect(receive: Callable[[], Awaitable[dict[str, Any]]]) -> None:
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            return
