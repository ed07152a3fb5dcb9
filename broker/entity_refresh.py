"""Keeping a view of the entity-config store fresh (client quotas, client-metrics
subscriptions).

On a single node every change goes through this broker, which reloads at once. In a
cluster another broker may change the store in ZooKeeper; Kafka's brokers are told by
config change notifications, pybroker polls: a change is seen within ``interval_s``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

REFRESH_S = 1.0  # cluster mode: how stale another broker's change may be


class StoreRefresher:
    """``reload`` at start and, when ``poll``, every ``interval_s`` after; a failed
    reload (a ZooKeeper hiccup) keeps the last view and is retried next time."""

    def __init__(
        self,
        reload: Callable[[], Awaitable[None]],
        what: str,
        poll: bool,
        interval_s: float = REFRESH_S,
    ) -> None:
        self.reload = reload
        self.what = what
        self.poll = poll
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.reload()
        if self.poll:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.reload()
            except Exception as exc:
                log.debug("%s refresh failed: %s", self.what, exc)
