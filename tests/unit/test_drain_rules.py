"""Issue 17, case 5: the drain's rules without a server (the SIGTERM path itself is
tests/integration/test_drain.py): a final slower than the deadline is aborted and its
transport still told; new streams and jobs are refused with the restart named."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from streaming.service import DRAINING_MESSAGE, ServerDraining, StreamService, drain_streams
from streaming.session import SessionOptions
from tests.fakes import FakeEngine
from web.jobs import JobQueue, JobsDraining, JobsFull
from web.sessions import StreamSlots


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    from evaluation import clips, read_audio
    from tests.datasets import TEST_DATA

    found = [c for c in clips(kind="speech", lang="en", base=TEST_DATA) if c.name == "ljspeech_coqui__LJ001-0001"]
    if not found:
        pytest.skip("the LJ clip is not in the test data")
    return read_audio(found[0].path)


async def test_a_final_past_the_deadline_is_aborted_and_the_transport_told(speech):
    engine = FakeEngine(delay=30.0)  # every decode takes far longer than the drain may
    slots = StreamSlots(2)
    service = StreamService(engine, SessionOptions(), slots)
    told: list[str] = []
    stream = service.open(SessionOptions(), lambda ev: None)
    assert stream is not None
    stream.on_drained = lambda: told.append("bye")
    stream.feed(np.concatenate([np.zeros(8000, np.float32), speech[: 3 * 16000]]), 16000)
    began = time.monotonic()
    aborted = await drain_streams(slots, timeout_s=0.5)
    took = time.monotonic() - began
    assert took < 5.0, took
    assert told == ["bye"] and slots.active == 0 and not slots.streams
    assert aborted == 1 and engine.cancelled >= 1  # the final's decode was cancelled
    with pytest.raises(ServerDraining, match="restarting"):
        service.open(SessionOptions(), lambda ev: None)
    assert not slots.try_acquire()
    assert DRAINING_MESSAGE == str(ServerDraining())


async def test_jobs_are_refused_while_draining_and_the_running_one_may_finish():
    jobs = JobQueue(1, 1)
    release = asyncio.Event()

    async def work() -> str:
        await release.wait()
        return "done"

    running = asyncio.ensure_future(jobs.run(work))
    while jobs.running == 0:
        await asyncio.sleep(0.01)
    drain = asyncio.ensure_future(jobs.drain(timeout_s=10))
    await asyncio.sleep(0)
    with pytest.raises(JobsDraining, match="restarting") as refused:
        await jobs.run(work, source="page")
    assert isinstance(refused.value, JobsFull) and refused.value.retry_after_s > 0
    assert jobs.snapshot()["draining"] is True and not drain.done()
    release.set()
    assert await running == "done"
    assert await asyncio.wait_for(drain, 5) is True


async def test_a_job_past_the_deadline_is_reported():
    jobs = JobQueue(1, 0)
    forever = asyncio.ensure_future(jobs.run(lambda: asyncio.sleep(60)))
    while jobs.running == 0:
        await asyncio.sleep(0.01)
    assert await jobs.drain(timeout_s=0.2) is False
    forever.cancel()
