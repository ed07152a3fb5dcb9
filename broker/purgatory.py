"""The fetch purgatory: long-polling fetches park here until their partitions grow.

A parked fetch waits on one future registered under every partition it reads; an append
(or a high-watermark move) completes the futures of that partition. Nothing polls.

A fetch may park with a ``try_complete`` function (Kafka's DelayedFetch.tryComplete): it
reads again and, when there is enough to answer, builds and sends the response. A notify
queues such fetches instead of waking their tasks; ``complete_ready`` runs them, either
right away from the appending request (a consumer gets the record one loop turn sooner,
before the producer's own response, as Kafka completes delayed fetches on the append's
thread) or, for every other notifier, from a loop callback.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

Key = tuple[str, int]

# What a try_complete returns: None while there is not enough to answer (the fetch stays
# parked), else the fetch's result, which its parked task returns.
TryComplete = Callable[[], Any]


class _Parked:
    __slots__ = ("future", "keys", "try_complete")

    def __init__(
        self, future: asyncio.Future[Any], keys: list[Key], try_complete: TryComplete | None
    ) -> None:
        self.future = future
        self.keys = keys
        self.try_complete = try_complete


class FetchPurgatory:
    def __init__(self) -> None:
        self._waiters: dict[Key, set[_Parked]] = {}
        self._ready: deque[_Parked] = deque()
        self._drain_scheduled = False
        # Parked tasks woken so far: a producer compares it before and after its appends
        # to learn whether it woke one that still has to run (handlers/produce.py).
        self.wakes = 0

    def notify(self, topic: str, partition: int) -> None:
        waiters = self._waiters.pop((topic, partition), None)
        if not waiters:
            return
        for parked in waiters:
            if parked.future.done():
                continue
            if parked.try_complete is None:
                parked.future.set_result(True)
                self.wakes += 1
            else:
                self._ready.append(parked)
        if self._ready and not self._drain_scheduled:
            self._drain_scheduled = True
            self._ready[-1].future.get_loop().call_soon(self._drain)

    def notify_all(self) -> None:
        """Wake every parked fetch (shutdown, metadata change)."""
        for key in list(self._waiters):
            self.notify(*key)

    def complete_ready(self) -> None:
        """Run the try_complete of every notified fetch now (see the module docstring).

        A fetch that can answer gets its result; one that cannot parks again under all of
        its partitions; an exception becomes the fetch's, as if its own task had raised.
        """
        ready = self._ready
        while ready:
            parked = ready.popleft()
            fut = parked.future
            if fut.done():
                continue
            try:
                result = parked.try_complete()  # type: ignore[misc]
            except Exception as exc:  # the fetch's error, raised in the fetch's task
                fut.set_exception(exc)
                self.wakes += 1
                continue
            if result is None:
                for key in parked.keys:
                    self._waiters.setdefault(key, set()).add(parked)
                continue
            fut.set_result(result)
            if not isinstance(result, SentResponse):
                self.wakes += 1  # its task still has to send it

    def _drain(self) -> None:
        self._drain_scheduled = False
        self.complete_ready()

    async def wait(
        self, keys: Iterable[Key], timeout: float, try_complete: TryComplete | None = None
    ) -> Any:
        """Wait until one of ``keys`` grows or ``timeout`` passes.

        Returns True when woken, False on timeout, or what ``try_complete`` returned when
        it completed the fetch. The task awaits the future itself, with a timer that
        completes it on expiry (``asyncio.wait_for`` would add a waiter future and a
        callback hop between the append that wakes a fetch and the fetch running).
        """
        if timeout <= 0:
            return False
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        parked = _Parked(fut, list(keys), try_complete)
        for key in parked.keys:
            self._waiters.setdefault(key, set()).add(parked)
        timer = loop.call_later(timeout, _expire, fut)
        try:
            return await fut
        finally:
            timer.cancel()
            for key in parked.keys:
                waiters = self._waiters.get(key)
                if waiters is not None:
                    waiters.discard(parked)
                    if not waiters:
                        del self._waiters[key]

    def __len__(self) -> int:
        return len({id(p) for ps in self._waiters.values() for p in ps})


@dataclass(frozen=True, slots=True)
class SentResponse:
    """A response its try_complete wrote already (``size``: the body's bytes)."""

    size: int


def _expire(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_result(False)
