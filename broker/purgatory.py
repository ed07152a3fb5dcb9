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
        self._waiters: dict[Key, set[asyncio.Future[None]]] = {}

    def notify(self, topic: str, partition: int) -> None:
        waiters = self._waiters.pop((topic, partition), None)
        if waiters:
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    def notify_all(self) -> None:
        """Wake every parked fetch (shutdown, metadata change)."""
        for key in list(self._waiters):
            self.notify(*key)

    async def wait(self, keys: Iterable[Key], timeout: float) -> bool:
        """Wait until one of ``keys`` grows or ``timeout`` passes; True if woken."""
        if timeout <= 0:
            return False
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        keys = list(keys)
        for key in keys:
            self._waiters.setdefault(key, set()).add(fut)
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            for key in keys:
                waiters = self._waiters.get(key)
                if waiters is not None:
                    waiters.discard(fut)
                    if not waiters:
                        del self._waiters[key]

    def __len__(self) -> int:
        return len({id(f) for ws in self._waiters.values() for f in ws})
