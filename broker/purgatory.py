"""The fetch purgatory: long-polling fetches park here until their partitions grow.

A parked fetch waits on one future registered under every partition it reads; an append
(or a high-watermark move) completes the futures of that partition. Nothing polls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

Key = tuple[str, int]


class FetchPurgatory:
    def __init__(self) -> None:
        self._waiters: dict[Key, set[asyncio.Future[bool]]] = {}
        # Parked fetches woken so far: a producer compares it before and after its appends
        # to learn whether it woke one (see handlers/produce.py: woken fetches answer first).
        self.wakes = 0

    def notify(self, topic: str, partition: int) -> None:
        waiters = self._waiters.pop((topic, partition), None)
        if waiters:
            for fut in waiters:
                if not fut.done():
                    fut.set_result(True)
                    self.wakes += 1

    def notify_all(self) -> None:
        """Wake every parked fetch (shutdown, metadata change)."""
        for key in list(self._waiters):
            self.notify(*key)

    async def wait(self, keys: Iterable[Key], timeout: float) -> bool:
        """Wait until one of ``keys`` grows or ``timeout`` passes; True if woken.

        The task awaits the future itself, with a timer that completes it on expiry
        (``asyncio.wait_for`` would add a waiter future and a callback hop between the
        append that wakes a fetch and the fetch running: latency on every wake-up).
        """
        if timeout <= 0:
            return False
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[bool] = loop.create_future()
        keys = list(keys)
        for key in keys:
            self._waiters.setdefault(key, set()).add(fut)
        timer = loop.call_later(timeout, _expire, fut)
        try:
            return await fut
        finally:
            timer.cancel()
            for key in keys:
                waiters = self._waiters.get(key)
                if waiters is not None:
                    waiters.discard(fut)
                    if not waiters:
                        del self._waiters[key]

    def __len__(self) -> int:
        return len({id(f) for ws in self._waiters.values() for f in ws})


def _expire(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(False)
