"""The fetch purgatory: a parked fetch wakes on its partition's append, or times out; one
with a try_complete is answered by whoever woke it."""

from __future__ import annotations

import asyncio
import time

from pybroker.broker.purgatory import FetchPurgatory, SentResponse


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


# -- fetches that complete themselves (try_complete) -----------------------------------


async def test_complete_ready_answers_a_woken_fetch_before_the_waker_goes_on() -> None:
    """The produce handler calls complete_ready after its appends: the fetch's answer is
    made (and sent) right there; a sent one costs the producer no loop turn."""
    p = FetchPurgatory()
    order: list[str] = []

    def try_complete() -> SentResponse:
        order.append("fetch answered")
        return SentResponse(7)

    task = asyncio.create_task(p.wait([("t", 0)], 5.0, try_complete))
    await asyncio.sleep(0)
    p.notify("t", 0)
    assert order == []  # notify only queues it
    p.complete_ready()
    order.append("produce answered")
    assert order == ["fetch answered", "produce answered"]
    assert await task == SentResponse(7)
    assert p.wakes == 0  # nothing left for the fetch's task to send
    assert p._waiters == {}


async def test_an_answer_try_complete_could_not_send_counts_as_a_wake() -> None:
    p = FetchPurgatory()
    task = asyncio.create_task(p.wait([("t", 0)], 5.0, lambda: "a big response"))
    await asyncio.sleep(0)
    p.notify("t", 0)
    p.complete_ready()
    assert p.wakes == 1  # the producer yields once so the fetch's task sends it first
    assert await task == "a big response"


async def test_not_enough_yet_parks_the_fetch_again_under_every_partition() -> None:
    p = FetchPurgatory()
    answers: list[str | None] = [None, None, "answer"]
    calls = []

    def try_complete() -> str | None:
        calls.append(1)
        return answers[len(calls) - 1]

    task = asyncio.create_task(p.wait([("t", 0), ("t", 1)], 5.0, try_complete))
    await asyncio.sleep(0)
    p.notify("t", 0)
    p.complete_ready()
    assert len(calls) == 1 and not task.done()
    assert set(p._waiters) == {("t", 0), ("t", 1)}
    p.notify("t", 1)
    p.complete_ready()
    assert len(calls) == 2 and not task.done()
    p.notify("t", 0)
    p.complete_ready()
    assert await task == "answer"
    assert p._waiters == {}


async def test_an_error_in_try_complete_is_raised_by_the_fetch_not_the_waker() -> None:
    p = FetchPurgatory()

    def try_complete() -> None:
        raise ValueError("bad read")

    task = asyncio.create_task(p.wait([("t", 0)], 5.0, try_complete))
    await asyncio.sleep(0)
    p.notify("t", 0)
    p.complete_ready()  # does not raise here
    try:
        await task
    except ValueError as exc:
        assert str(exc) == "bad read"
    else:
        raise AssertionError("the fetch should have raised")


async def test_a_notify_nobody_completes_is_completed_on_the_next_loop_turn() -> None:
    """Notifiers other than the produce handler (HW moves, log dir failures) do not call
    complete_ready: a loop callback does."""
    p = FetchPurgatory()
    task = asyncio.create_task(p.wait([("t", 0)], 5.0, lambda: "answer"))
    await asyncio.sleep(0)
    p.notify("t", 0)
    assert await asyncio.wait_for(task, 1.0) == "answer"


async def test_a_fetch_that_timed_out_meanwhile_is_not_completed() -> None:
    p = FetchPurgatory()
    calls = []
    task = asyncio.create_task(p.wait([("t", 0)], 0.01, lambda: calls.append(1) or "late"))
    await asyncio.sleep(0)
    p.notify("t", 0)  # queued; the timer fires before anyone completes it
    fut = next(iter(p._ready)).future
    fut.set_result(False)  # what the timer does
    p.complete_ready()
    assert calls == [] and await task is False
