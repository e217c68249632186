"""The remote engine's request limiter: lowest priority value first, FIFO among equals,
and a waiter cancelled at any moment neither loses a slot nor keeps one."""

from __future__ import annotations

import asyncio

import pytest

from engine.remote.limiter import PriorityLimiter


async def _holder(limiter: PriorityLimiter, priority: int, name: str, order: list[str], release: asyncio.Event) -> None:
    await limiter.acquire(priority)
    order.append(name)
    try:
        await release.wait()
    finally:
        limiter.release()


async def _let_run() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_waiters_are_served_by_priority_then_arrival():
    limiter = PriorityLimiter(1)
    order: list[str] = []
    gate = asyncio.Event()
    first = asyncio.ensure_future(_holder(limiter, 1, "piece-1", order, gate))
    await _let_run()
    waiters = [
        asyncio.ensure_future(_holder(limiter, priority, name, order, gate))
        for priority, name in [(1, "piece-2"), (1, "piece-3"), (0, "final-a"), (1, "partial"), (0, "final-b")]
    ]
    await _let_run()
    assert limiter.waiting == 5
    gate.set()
    await asyncio.gather(first, *waiters)
    assert order == ["piece-1", "final-a", "final-b", "piece-2", "piece-3", "partial"]
    assert limiter.waiting == 0


async def test_a_cancelled_waiter_gives_its_turn_to_the_next():
    limiter = PriorityLimiter(1)
    await limiter.acquire(0)
    cancelled = asyncio.ensure_future(limiter.acquire(0))
    later = asyncio.ensure_future(limiter.acquire(1))
    await _let_run()
    cancelled.cancel()
    await _let_run()
    limiter.release()
    await asyncio.wait_for(later, 1)
    assert cancelled.cancelled()
    limiter.release()
    await asyncio.wait_for(limiter.acquire(0), 1)  # the slot came back: nothing leaked


async def test_a_waiter_cancelled_just_as_it_is_handed_the_slot_passes_it_on():
    limiter = PriorityLimiter(1)
    await limiter.acquire(0)
    unlucky = asyncio.ensure_future(limiter.acquire(0))
    next_in_line = asyncio.ensure_future(limiter.acquire(0))
    await _let_run()
    limiter.release()  # the slot is handed to `unlucky`...
    unlucky.cancel()  # ...which is cancelled before it runs again
    await asyncio.wait_for(next_in_line, 1)
    with pytest.raises(asyncio.CancelledError):
        await unlucky


async def test_slots_are_bounded():
    limiter = PriorityLimiter(2)
    await limiter.acquire(0)
    await limiter.acquire(0)
    third = asyncio.ensure_future(limiter.acquire(0))
    await _let_run()
    assert not third.done() and limiter.waiting == 1
    limiter.release()
    await asyncio.wait_for(third, 1)
    limiter.release()
    limiter.release()
    limiter.release()  # one release too many does not create a third slot
    await limiter.acquire(0)
    await limiter.acquire(0)
    fourth = asyncio.ensure_future(limiter.acquire(0))
    await _let_run()
    assert not fourth.done()
    fourth.cancel()
