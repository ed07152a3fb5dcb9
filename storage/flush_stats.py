"""Kafka's LogFlushStats: how long each log flush (fsync of segments) took.

One process-wide timer, as Kafka's is: flushes run in worker threads, so updates take a
lock (flushes are rare; the append path never touches this).
"""

from __future__ import annotations

import threading
from bisect import bisect_left

# Upper bounds in milliseconds (Prometheus ``le`` semantics).
FLUSH_BUCKETS_MS: tuple[float, ...] = (
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0,
)  # fmt: skip


class FlushTimer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts = [0] * (len(FLUSH_BUCKETS_MS) + 1)
        self.total_ms = 0.0

    def observe(self, ms: float) -> None:
        with self._lock:
            self.counts[bisect_left(FLUSH_BUCKETS_MS, ms)] += 1
            self.total_ms += ms

    def snapshot(self) -> tuple[list[int], float]:
        with self._lock:
            return list(self.counts), self.total_ms


LOG_FLUSH_STATS = FlushTimer()
