"""Kafka's socket-server limits as plain counters: who may connect, what may queue.

- ``ConnectionQuotas`` is Kafka's ConnectionQuotas: ``max.connections.per.ip`` (with
  ``max.connections.per.ip.overrides``) refuses the connection that would go over, and
  ``max.connections`` makes the acceptor stop accepting until a connection closes.
- ``RequestBudget`` is Kafka's request queue (``queued.max.requests``) plus its memory pool
  (``queued.max.request.bytes``): a connection that cannot get a slot or memory for its
  next request stops reading and waits here until one is released; none is dropped.

No sockets and no event loop here, so the rules are unit-tested directly.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Mapping, MutableSet
from dataclasses import dataclass, field
from typing import Any

from pybroker.broker.memory_pool import MemoryPool
from pybroker.broker.receive_buffers import BufferPool
from pybroker.broker.request_metrics import RequestMetrics

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def normalize_ip(host: str) -> IPAddress | str:
    """The peer's address as Java's InetAddress sees it (IPv4-mapped IPv6 is IPv4)."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def resolve_overrides(overrides: Mapping[str, int]) -> dict[IPAddress | str, int]:
    """Host names in max.connections.per.ip.overrides resolved once, as Kafka does at start.

    Raises RuntimeError naming the host that does not resolve (Kafka fails start-up too).
    """
    resolved: dict[IPAddress | str, int] = {}
    for host, limit in overrides.items():
        ip = normalize_ip(host)
        if isinstance(ip, str):
            try:
                infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
            except OSError as exc:
                raise RuntimeError(
                    f"max.connections.per.ip.overrides: cannot resolve host {host}: {exc}"
                ) from None
            ip = normalize_ip(str(infos[0][4][0]))
        resolved[ip] = limit
    return resolved


class ConnectionQuotas:
    """Open connections per address and in total, against Kafka's limits."""

    def __init__(
        self,
        max_connections: int,
        max_per_ip: int,
        overrides: Mapping[IPAddress | str, int] | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.max_per_ip = max_per_ip
        self.overrides = dict(overrides or {})
        self.counts: dict[IPAddress | str, int] = {}
        self.total = 0
        self.on_slot_freed: Callable[[], None] | None = None

    def slot_available(self) -> bool:
        """May the acceptor take another connection (max.connections)?"""
        return self.total < self.max_connections

    def limit_for(self, ip: IPAddress | str) -> int:
        return self.overrides.get(ip, self.max_per_ip)

    def try_inc(self, ip: IPAddress | str) -> int | None:
        """Count a new connection from ``ip``; refused: the per-ip limit it would exceed."""
        count = self.counts.get(ip, 0)
        limit = self.limit_for(ip)
        if count >= limit:
            return limit
        self.counts[ip] = count + 1
        self.total += 1
        return None

    def dec(self, ip: IPAddress | str) -> None:
        count = self.counts.get(ip, 0)
        if count <= 0:
            return
        if count == 1:
            del self.counts[ip]
        else:
            self.counts[ip] = count - 1
        self.total -= 1
        if self.on_slot_freed is not None and self.slot_available():
            self.on_slot_freed()


class RequestBudget:
    """queued.max.requests slots and queued.max.request.bytes memory, shared by connections.

    A request takes memory when its size prefix is read and a queue slot when it is
    complete; it gives the slot back when its handling starts and the memory when its
    handling ends. Connections refused either wait (``wait``) and are called back in
    arrival order when something is released.
    """

    def __init__(self, max_queued_requests: int, pool: MemoryPool) -> None:
        self.max_queued = max_queued_requests
        self.queued = 0
        self.pool = pool
        self._waiters: dict[Any, Callable[[], None]] = {}
        self._waking = False
        self._rewake = False

    def try_queue(self) -> bool:
        if self.queued >= self.max_queued:
            return False
        self.queued += 1
        return True

    def dequeue(self, n: int = 1) -> None:
        if n > 0:
            self.queued = max(0, self.queued - n)
            self._wake()

    def try_allocate(self, n: int) -> bool:
        return self.pool.try_allocate(n)

    def release(self, n: int) -> None:
        if n > 0:
            self.pool.release(n)
            self._wake()

    def wait(self, key: Any, callback: Callable[[], None]) -> None:
        """Call ``callback`` once something is released (first come, first called)."""
        self._waiters.setdefault(key, callback)

    def cancel(self, key: Any) -> None:
        self._waiters.pop(key, None)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def _wake(self) -> None:
        """Give every waiter one try, in order; one refused again waits again at the back.

        Each waiter is called rather than only those whose resource was freed: a waiter
        holding memory may need just a slot, and skipping it could leave nobody to release.
        """
        if not self._waiters:
            return
        if self._waking:
            self._rewake = True
            return
        self._waking = True
        try:
            self._rewake = True
            while self._rewake and self._waiters:
                self._rewake = False
                callbacks = list(self._waiters.values())
                self._waiters.clear()
                for callback in callbacks:
                    callback()
        finally:
            self._waking = False


@dataclass
class NetworkStats:
    """Counters of the socket layer (a metrics registry replaces these in issue 11)."""

    handler_errors: int = 0
    connections_refused_per_ip: int = 0
    idle_connections_closed: int = 0


@dataclass
class NetworkContext:
    """What every connection shares: request limits, the budget, counters, the open set."""

    max_request_bytes: int
    budget: RequestBudget
    stats: NetworkStats = field(default_factory=NetworkStats)
    connections: MutableSet[Any] = field(default_factory=set)
    # Per-API request counts and timings (/metrics) and the request log.
    requests: RequestMetrics = field(default_factory=RequestMetrics)
    # Reused receive buffers for large request frames (issue 14).
    buffers: BufferPool = field(default_factory=BufferPool)
