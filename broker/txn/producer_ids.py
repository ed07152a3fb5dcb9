"""The broker's producer id generator (Kafka's ProducerIdManager).

Ids come from the current block; when it runs out, the next block is claimed durably in
a worker thread (one fsync per 1000 ids) while concurrent callers wait for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from pybroker.protocol.errors import ErrorCode, KafkaError
from pybroker.replication.producer_id_store import (
    BLOCK_SIZE,
    LocalProducerIdStore,
    ProducerIdsBlock,
    ProducerIdStoreError,
)

log = logging.getLogger(__name__)


Allocator = Callable[[int, int], Awaitable[ProducerIdsBlock]]


def local_allocator(store: LocalProducerIdStore) -> Allocator:
    """Blocks from the single node's file store, written in a worker thread."""

    async def allocate(broker_id: int, size: int) -> ProducerIdsBlock:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, store.allocate, broker_id, size)

    return allocate


class ProducerIdManager:
    """``allocate(broker_id, size)`` claims the next block durably: the local file store
    on a single node, ``/latest_producer_id_block`` in ZooKeeper in a cluster."""

    def __init__(
        self,
        store: LocalProducerIdStore | Allocator,
        broker_id: int,
        block_size: int = BLOCK_SIZE,
    ):
        self.allocate = local_allocator(store) if isinstance(store, LocalProducerIdStore) else store
        self.broker_id = broker_id
        self.block_size = block_size
        self._block: ProducerIdsBlock | None = None
        self._next = 0
        self._lock = asyncio.Lock()

    def _take(self) -> int | None:
        block = self._block
        if block is None or self._next > block.last_producer_id:
            return None
        pid = self._next
        self._next += 1
        return pid

    async def generate(self) -> int:
        """A producer id never handed out before. Raises KafkaError if none can be had."""
        pid = self._take()
        if pid is not None:
            return pid
        async with self._lock:
            pid = self._take()
            if pid is None:
                try:
                    block = await self.allocate(self.broker_id, self.block_size)
                except ProducerIdStoreError as e:
                    log.error("Cannot allocate a producer id block: %s", e)
                    raise KafkaError(str(e), ErrorCode.unknown_server_error) from e
                log.info(
                    "Allocated producer id block [%d, %d]",
                    block.first_producer_id,
                    block.last_producer_id,
                )
                self._block, self._next = block, block.first_producer_id
                pid = self._take()
        assert pid is not None
        return pid
