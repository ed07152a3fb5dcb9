"""The console's only periodic work: per-topic rates and consumer group lag over time.

Rates come from the counters /metrics already keeps (BrokerTopicStats): every
RATE_INTERVAL_S a copy of the three integers per topic goes into a short ring, and a rate
is the difference between the newest and the oldest copy over their time apart (~10 s).
Lag is sampled every LAG_INTERVAL_S: one sum per group over its committed offsets (a dict
walk, no I/O), kept for LAG_HISTORY_S. Nothing else is computed unless a page asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

log = logging.getLogger(__name__)

RATE_INTERVAL_S = 2.0
RATE_SAMPLES = 6  # the newest and oldest of 6 samples are ~10 s apart
LAG_INTERVAL_S = 5.0
LAG_HISTORY_S = 30 * 60
LAG_SAMPLES = int(LAG_HISTORY_S / LAG_INTERVAL_S)

Counts = tuple[int, int, int]  # messages in, bytes in, bytes out
RATE_FIELDS = ("messages_in_per_sec", "bytes_in_per_sec", "bytes_out_per_sec")


class RateSampler:
    """Rates per topic from cumulative counters (``snapshot`` gives topic -> Counts)."""

    def __init__(self, snapshot: Callable[[], Mapping[str, Counts]]) -> None:
        self.snapshot = snapshot
        self.samples: deque[tuple[float, Mapping[str, Counts]]] = deque(maxlen=RATE_SAMPLES)

    def sample(self, now: float | None = None) -> None:
        self.samples.append((time.monotonic() if now is None else now, self.snapshot()))

    def rates(self) -> dict[str, dict[str, float]]:
        """topic -> the three rates; topics without two samples yet have zeros."""
        if len(self.samples) < 2:
            return {name: dict.fromkeys(RATE_FIELDS, 0.0) for name in self.snapshot()}
        (t0, old), (t1, new) = self.samples[0], self.samples[-1]
        span = t1 - t0
        out: dict[str, dict[str, float]] = {}
        for name, counts in new.items():
            before = old.get(name, (0, 0, 0))
            out[name] = {
                field: max(0.0, (now - then) / span)
                for field, now, then in zip(RATE_FIELDS, counts, before, strict=True)
            }
        return out


def total_rates(rates: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    return {f: sum(r[f] for r in rates.values()) for f in RATE_FIELDS}


class LagSampler:
    """Total lag per group, every LAG_INTERVAL_S (``totals`` gives group id -> lag)."""

    def __init__(self, totals: Callable[[], Mapping[str, int]]) -> None:
        self.totals = totals
        self.history: dict[str, deque[tuple[int, int]]] = {}

    def sample(self, now_ms: int | None = None) -> None:
        t = int(time.time() * 1000) if now_ms is None else now_ms
        current = self.totals()
        for group_id in list(self.history):
            if group_id not in current:
                del self.history[group_id]
        for group_id, lag in current.items():
            ring = self.history.get(group_id)
            if ring is None:
                ring = self.history[group_id] = deque(maxlen=LAG_SAMPLES)
            ring.append((t, lag))

    def of(self, group_id: str) -> list[dict[str, int]]:
        return [{"t": t, "lag": lag} for t, lag in self.history.get(group_id, ())]


class Samplers:
    """Runs both samplers on the loop while the endpoint is up."""

    def __init__(self, rates: RateSampler, lag: LagSampler) -> None:
        self.rates = rates
        self.lag = lag
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(_every(RATE_INTERVAL_S, self.rates.sample)),
            loop.create_task(_every(LAG_INTERVAL_S, self.lag.sample)),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []


async def _every(interval: float, job: Callable[[], Any]) -> None:
    while True:
        try:
            job()
        except Exception:  # a sampler must not die with a transient state
            log.exception("console sampler %s failed", getattr(job, "__qualname__", job))
        await asyncio.sleep(interval)


def topic_counts(topics: Iterable[tuple[str, Any]]) -> dict[str, Counts]:
    """BrokerTopicStats.topics items -> topic -> Counts."""
    return {name: (c.messages_in, c.bytes_in, c.bytes_out) for name, c in topics}
