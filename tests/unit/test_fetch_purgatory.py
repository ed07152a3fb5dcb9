"""The fetch purgatory: a parked fetch wakes on its partition's append, or times out."""

from __future__ import annotations

import asyncio
import time

from pybroker.broker.purgatory import FetchPurgatory


async def test_append_wakes_only_the_fetches_of_that_partition() -> None:
    p = FetchPurgatory()
    on_a = asyncio.create_task(p.wait([("t", 0)], 5.0))
    on_b = asyncio.create_task(p.wait([("t", 1), ("u", 0)], 5.0))
    await asyncio.sleep(0)
    assert len(p) == 2
    p.notify("t", 0)
    assert await on_a is True
    assert not on_b.done()
    assert p.wakes == 1
    p.notify("u", 0)
    assert await on_b is True
    assert p.wakes == 2
    assert len(p) == 0 and p._waiters == {}


async def test_timeout_answers_false_and_forgets_the_fetch() -> None:
    p = FetchPurgatory()
    start = time.monotonic()
    assert await p.wait([("t", 0)], 0.05) is False
    assert time.monotonic() - start >= 0.04
    assert p._waiters == {} and p.wakes == 0
    p.notify("t", 0)  # nobody left to wake
    assert p.wakes == 0
    assert await p.wait([("t", 0)], 0) is False


async def test_a_cancelled_fetch_leaves_nothing_parked() -> None:
    p = FetchPurgatory()
    task = asyncio.create_task(p.wait([("t", 0)], 5.0))
    await asyncio.sleep(0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    assert p._waiters == {}


async def test_notify_all_wakes_every_parked_fetch() -> None:
    p = FetchPurgatory()
    tasks = [asyncio.create_task(p.wait([("t", i)], 5.0)) for i in range(3)]
    await asyncio.sleep(0)
    p.notify_all()
    assert await asyncio.gather(*tasks) == [True, True, True]
    assert p.wakes == 3


async def test_a_woken_fetch_runs_before_its_waker_resumes_from_one_yield() -> None:
    """The produce handler yields once after waking fetches so that they answer before it
    does: the woken fetch must be runnable within that one loop turn."""
    p = FetchPurgatory()
    order: list[str] = []

    async def fetch() -> None:
        await p.wait([("t", 0)], 5.0)
        order.append("fetch answered")

    task = asyncio.create_task(fetch())
    await asyncio.sleep(0)
    p.notify("t", 0)
    await asyncio.sleep(0)
    order.append("produce answered")
    await task
    assert order == ["fetch answered", "produce answered"]
