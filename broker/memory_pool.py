"""queued.max.request.bytes: Kafka's memory pool for request bytes read but not yet done.

Kafka's broker builds a non-strict ``SimpleMemoryPool(queued.max.request.bytes,
socket.request.max.bytes)``: an allocation succeeds while *any* memory is left, so usage
can dip below zero by at most one request and a request never waits for memory that
only a bigger pool could give. A connection whose next request gets no memory stops
reading (Kafka mutes it "due to memory pressure") until some is released; it is never
dropped. A pool size of 0 or less means no pool (Kafka's ``MemoryPool.NONE``).
"""

from __future__ import annotations


class MemoryPool:
    """Counts bytes, allocates nothing: Python buffers are the bytes read off the socket."""

    def __init__(self, size_bytes: int, max_single_allocation: int) -> None:
        if size_bytes > 0 and not 0 < max_single_allocation <= size_bytes:
            # Kafka's constructor refuses this; KafkaConfig already rejects the config.
            raise ValueError(
                f"max single allocation {max_single_allocation} must be in [1, {size_bytes}]"
            )
        self.size = size_bytes if size_bytes > 0 else None
        self.max_single_allocation = max_single_allocation
        self.available = self.size or 0

    @property
    def bounded(self) -> bool:
        return self.size is not None

    def try_allocate(self, n: int) -> bool:
        """Take ``n`` bytes if any memory is left (non-strict); False means wait for release."""
        if n > self.max_single_allocation:
            raise ValueError(f"requested size {n} is larger than {self.max_single_allocation}")
        if self.size is None or n <= 0:
            return True
        if self.available < 1:
            return False
        self.available -= n
        return True

    def release(self, n: int) -> None:
        if self.size is not None and n > 0:
            self.available += n

    @property
    def used(self) -> int:
        return 0 if self.size is None else self.size - self.available

    @property
    def out_of_memory(self) -> bool:
        return self.size is not None and self.available <= 0
