"""At most N requests in flight to the remote endpoint, the most urgent served first.

One FIFO semaphore let the twenty pieces of a long upload queue ahead of a live final
that arrived a moment later. Here a free slot goes to the waiting request with the
lowest priority value (vLLM's convention, `engine.base.PRIORITY_*`), first come first
served among equals.

The limit sits in the HTTP transport under the `openai` client, so it covers exactly
one HTTP exchange: a request that waits to be retried (backoff, `Retry-After`) holds no
slot, and a streamed answer holds its slot until its body is read or closed. The
priority travels from the engine to the transport in a request header that also goes out
with the request: a router in front of several engines can order its own queue by it, so
finals go first across replicas too (deploy/haproxy.cfg does); servers ignore it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator, Callable

import httpx

from engine.base import PRIORITY_DEFAULT

PRIORITY_HEADER = "x-rt-whisper-priority"


class PriorityLimiter:
    """A counting semaphore whose waiters are woken lowest priority value first."""

    def __init__(self, slots: int) -> None:
        self.slots = max(1, slots)
        self._free = self.slots
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, f in self._waiting if not f.done())

    async def acquire(self, priority: int = PRIORITY_DEFAULT) -> None:
        # A free slot means nobody live is waiting: release() hands slots to waiters first.
        if self._free > 0:
            self._free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._order), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # handed a slot as we were cancelled
                self.release()
            raise

    def release(self) -> None:
        while self._waiting:
            _, _, future = heapq.heappop(self._waiting)
            if not future.done():  # cancelled waiters are skipped
                future.set_result(None)
                return
        self._free = min(self.slots, self._free + 1)


class _ReleasingStream(httpx.AsyncByteStream):
    """A response body that gives its slot back once, when httpx closes it."""

    def __init__(self, inner: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._inner = inner
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()


class LimitedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that takes a `PriorityLimiter` slot per request."""

    def __init__(self, inner: httpx.AsyncBaseTransport, limiter: PriorityLimiter) -> None:
        self._inner = inner
        self.limiter = limiter

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raw = request.headers.get(PRIORITY_HEADER)
        try:
            priority = int(raw) if raw is not None else PRIORITY_DEFAULT
        except ValueError:
            priority = PRIORITY_DEFAULT
        await self.limiter.acquire(priority)
        try:
            response = await self._inner.handle_async_request(request)
        except BaseException:
            self.limiter.release()
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _ReleasingStream(response.stream, self.limiter.release)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
