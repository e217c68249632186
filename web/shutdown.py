"""A restart or deploy without lost finals: drain first, then let uvicorn shut down.

uvicorn's own shutdown (on SIGTERM / SIGINT) closes the listening socket, then at once
closes every WebSocket with 1012 and its transport (a realtime client's finals still
decoding would be lost), waits for HTTP responses (up to `timeout_graceful_shutdown`),
then runs the app's shutdown hooks (the transcript store's close). WebRTC peers (the
page's streams, FastRTC on the same loop) are not connections uvicorn knows: they die
with the process. So the drain runs before uvicorn's shutdown starts:

1. the streams' slots and the job queue refuse new work with a message that names the
   restart; /health answers 503 "draining" (a load balancer moves traffic away);
2. every live stream's open utterance ends now and its finals finish (the page's land
   in the store through its recorder; a realtime client gets its `completed` events,
   then an `error` event `server_restarting` and a close with 1012);
3. running file jobs may finish;

all within DRAIN_TIMEOUT_S; what still runs then is aborted. Then uvicorn shuts down,
and the store's close writes every pending final before the process exits.
"""

from __future__ import annotations

import asyncio
import logging
import time

import uvicorn

from streaming.service import StreamSlots, drain_streams
from web.jobs import JobQueue

log = logging.getLogger(__name__)

#: uvicorn's wait for open HTTP responses after the drain (Gradio's event streams never
#: end by themselves): short, the work that mattered was drained already (seconds).
GRACEFUL_HTTP_S = 3.0


async def drain_app(slots: StreamSlots, jobs: JobQueue | None, timeout_s: float) -> None:
    """Refuse new streams and jobs, then let the running ones finish within `timeout_s`."""
    began = time.monotonic()
    slots.start_draining()
    if jobs is not None:
        jobs.start_draining()
    aborted = await drain_streams(slots, timeout_s)
    if jobs is not None:
        await jobs.drain(max(0.0, timeout_s - (time.monotonic() - began)))
    log.info(
        "drained in %.1f s (%s)", time.monotonic() - began,
        f"{aborted} stream(s) aborted at the deadline" if aborted else "every final delivered",
    )


class DrainingServer(uvicorn.Server):
    """uvicorn's server whose shutdown starts with `drain_app` (see the module doc).

    uvicorn's main loop asks `on_tick` every 0.1 s whether to stop; after a signal this
    answers "not yet" until the drain is done. A second Ctrl+C (uvicorn's force exit)
    skips what is left of it.
    """

    def __init__(self, config: uvicorn.Config, slots: StreamSlots, jobs: JobQueue | None, drain_timeout_s: float) -> None:
        super().__init__(config)
        self.slots = slots
        self.jobs = jobs
        self.drain_timeout_s = float(drain_timeout_s)
        self._drain: asyncio.Future | None = None

    async def on_tick(self, counter: int) -> bool:
        should_exit = await super().on_tick(counter)
        if not should_exit or self.force_exit:
            return should_exit
        if self._drain is None:
            log.info("shutting down: draining live streams and jobs (DRAIN_TIMEOUT_S=%.0f)", self.drain_timeout_s)
            self._drain = asyncio.ensure_future(drain_app(self.slots, self.jobs, self.drain_timeout_s))
        if not self._drain.done():
            return False
        if not self._drain.cancelled() and self._drain.exception() is not None:
            log.error("the drain failed", exc_info=self._drain.exception())
        return True
