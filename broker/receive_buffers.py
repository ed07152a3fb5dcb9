"""Reusable buffers for large request frames (issue 14: fewer allocations on receive).

A request frame too big for a connection's small read buffer is received straight into a
buffer of its own, so its bytes are copied by the kernel and by nothing else before they
are decoded. Allocating that buffer fresh for every request costs a zero-fill and page
faults per MB, so finished buffers come back here and the next large frame of any
connection reuses one. Only buffers nothing refers to any more are kept (a handler that
held a view of its request would otherwise see it overwritten), and the pool keeps at most
``max_bytes`` idle: the memory counted against queued.max.request.bytes is the frames' own
sizes, as before; this is the small idle reserve on top.
"""

from __future__ import annotations

MAX_POOLED_BYTES = 32 * 1024 * 1024
MIN_CAPACITY = 64 * 1024


def capacity_for(size: int) -> int:
    """``size`` rounded up to the next eighth of its power of two (at most 12.5% spare), so
    frames of nearly the same size share buffers."""
    if size <= MIN_CAPACITY:
        return MIN_CAPACITY
    step = 1 << max(0, size.bit_length() - 4)
    return -(-size // step) * step


def unreferenced(buf: bytearray) -> bool:
    """True if no memoryview of ``buf`` is alive: only then can it be handed out again.

    A bytearray refuses to change size while exported; shrinking by one byte and growing
    back stays within its allocation, so the probe costs nothing and moves no memory.
    """
    try:
        buf.pop()
    except BufferError:
        return False
    buf.append(0)
    return True


class BufferPool:
    """Idle large-frame buffers, best fit first; shared by every connection of a broker."""

    def __init__(self, max_bytes: int = MAX_POOLED_BYTES) -> None:
        self.max_bytes = max_bytes
        self.idle: list[bytearray] = []
        self.idle_bytes = 0
        self.allocated = 0  # fresh buffers made (a reuse counts nothing): for tests, metrics

    def take(self, size: int) -> bytearray:
        """A buffer of at least ``size`` bytes (its first ``size`` are the frame's)."""
        best = -1
        for i, buf in enumerate(self.idle):
            if len(buf) >= size and (best < 0 or len(buf) < len(self.idle[best])):
                best = i
        if best >= 0:
            buf = self.idle.pop(best)
            self.idle_bytes -= len(buf)
            return buf
        self.allocated += 1
        return bytearray(capacity_for(size))

    def give(self, buf: bytearray) -> None:
        """Return a buffer; kept for reuse only if nothing still views it and it fits."""
        n = len(buf)
        if n > self.max_bytes or not unreferenced(buf):
            return
        while self.idle and self.idle_bytes + n > self.max_bytes:
            smallest = min(range(len(self.idle)), key=lambda i: len(self.idle[i]))
            self.idle_bytes -= len(self.idle.pop(smallest))
        self.idle.append(buf)
        self.idle_bytes += n
