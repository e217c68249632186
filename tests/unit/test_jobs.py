"""The long-form job queue (web/jobs.py): MAX_JOBS running, MAX_QUEUED waiting, then refused; cancellation."""

from __future__ import annotations

import asyncio

import pytest

from web.jobs import ClientGone, JobQueue, JobsFull


async def test_limits_refuse_beyond_running_plus_queued():
    jobs = JobQueue(max_jobs=1, max_queued=1)
    gate = asyncio.Event()

    async def work() -> str:
        await gate.wait()
        return "done"

    first = asyncio.ensure_future(jobs.run(work))
    second = asyncio.ensure_future(jobs.run(work))
    await asyncio.sleep(0.01)
    assert (jobs.running, jobs.queued) == (1, 1)
    with pytest.raises(JobsFull) as info:
        await jobs.run(work, source="page")
    assert info.value.retry_after_s >= 1 and "MAX_JOBS" in str(info.value)
    assert jobs.stats.refused["page"] == 1
    gate.set()
    assert await asyncio.gather(first, second) == ["done", "done"]
    assert (jobs.running, jobs.queued, jobs.stats.finished) == (0, 0, 2)


async def test_cancel_owner_cancels_waiting_and_running_jobs():
    jobs = JobQueue(max_jobs=1, max_queued=4)
    forever = asyncio.Event()
    a = asyncio.ensure_future(jobs.run(forever.wait, owner="tab-1"))
    b = asyncio.ensure_future(jobs.run(forever.wait, owner="tab-1"))
    c = asyncio.ensure_future(jobs.run(forever.wait, owner="tab-2"))
    await asyncio.sleep(0.01)
    assert jobs.cancel_owner("tab-1") == 2
    for task in (a, b):
        with pytest.raises(asyncio.CancelledError):
            await task
    await asyncio.sleep(0.01)
    assert jobs.running == 1 and not c.done()  # tab-2's job got the slot
    jobs.cancel_owner("tab-2")
    with pytest.raises(asyncio.CancelledError):
        await c
    assert (jobs.running, jobs.queued) == (0, 0)


async def test_a_disconnect_cancels_the_job():
    jobs = JobQueue(max_jobs=1, max_queued=0)
    cancelled = asyncio.Event()
    messages: asyncio.Queue = asyncio.Queue()

    async def work() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    run = asyncio.ensure_future(jobs.run_until_disconnect(work, messages.get))
    await asyncio.sleep(0.01)
    assert jobs.running == 1
    await messages.put({"type": "http.disconnect"})
    with pytest.raises(ClientGone):
        await run
    assert cancelled.is_set() and jobs.running == 0 and jobs.stats.cancelled == 1


async def test_every_started_job_is_counted_as_it_ends():
    """started = finished + cancelled + failed once nothing runs (the 60-min soak's 258
    uploads cut off midway were started and then counted nowhere)."""
    from web.jobs import JobQueue

    jobs = JobQueue(max_jobs=2, max_queued=2)

    async def ok():
        return 1

    async def bad():
        raise ValueError("not audio")

    assert await jobs.run(ok) == 1
    with pytest.raises(ValueError):
        await jobs.run(bad)
    stats = jobs.snapshot()
    assert stats["started"] == 2 and stats["finished"] == 1 and stats["failed"] == 1 and stats["cancelled"] == 0
