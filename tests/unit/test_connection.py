"""KafkaConnection without sockets: the dispatch guard, read-ahead bounds, backpressure.

A fake transport records what the connection writes and whether it reads; a registry of
our own handlers stands in for the broker's, so a handler can fail on purpose.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import Any

import pytest

from pybroker.broker.connection import MAX_QUEUED_FRAMES, KafkaConnection
from pybroker.broker.connection_limits import NetworkContext, RequestBudget
from pybroker.broker.handlers.registry import ApiSpec
from pybroker.broker.memory_pool import MemoryPool

METADATA = 3
PEER = ("127.0.0.1", 5555)


class FakeTransport:
    def __init__(self, protocol: asyncio.Protocol) -> None:
        self.protocol = protocol
        self.written = bytearray()
        self.reading = True
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return PEER if name == "peername" else default

    def set_write_buffer_limits(self, high: int = 0, low: int = 0) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes) -> None:
        self.written += data

    def pause_reading(self) -> None:
        assert self.reading, "paused twice"
        self.reading = False

    def resume_reading(self) -> None:
        assert not self.reading, "resumed twice"
        self.reading = True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def responses(self) -> list[int]:
        """Correlation ids of the response frames written so far."""
        out, pos, buf = [], 0, bytes(self.written)
        while pos < len(buf):
            size, cid = struct.unpack_from(">ii", buf, pos)
            out.append(cid)
            pos += 4 + size
        return out


def request(correlation_id: int, api_key: int = METADATA, pad: int = 0) -> bytes:
    """Metadata v1 (header v1, all topics = empty array), optionally padded with bytes."""
    body = struct.pack(">hhih", api_key, 1, correlation_id, -1) + struct.pack(">i", 0)
    body += b"\x00" * pad  # trailing bytes are tolerated, as Kafka does
    return struct.pack(">i", len(body)) + body


class Handlers:
    """Metadata handlers: answer, fail, or wait for a gate."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.seen: list[int] = []
        self.fail_on: set[int] = set()

    async def metadata(self, ctx: Any, body: Any) -> bytes:
        self.seen.append(ctx.header.correlation_id)
        if ctx.header.correlation_id in self.fail_on:
            raise TypeError("'NoneType' object is not iterable")
        await self.gate.wait()
        return b"ok"

    def registry(self) -> dict[int, ApiSpec]:
        return {METADATA: ApiSpec(METADATA, "Metadata", 0, 12, self.metadata)}


def connect(
    handlers: Handlers, network: NetworkContext | None = None
) -> tuple[KafkaConnection, FakeTransport, NetworkContext]:
    network = network or NetworkContext(1 << 20, RequestBudget(500, MemoryPool(-1, 1 << 20)))
    conn = KafkaConnection(None, network, registry=handlers.registry())  # type: ignore[arg-type]
    transport = FakeTransport(conn)
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport, network


async def settle(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


# ---------------------------------------------------------------------- dispatch guard


async def test_handler_exception_closes_only_that_connection_with_one_error_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop_errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx))
    handlers = Handlers()
    handlers.fail_on = {7}
    bad, bad_transport, network = connect(handlers)
    good, good_transport, _ = connect(handlers, network)
    caplog.set_level(logging.DEBUG, logger="pybroker.broker.connection")

    bad.data_received(request(6) + request(7) + request(8))
    good.data_received(request(1))
    await settle()

    assert bad_transport.closed and bad_transport.responses() == [6]  # 8 is never handled
    assert handlers.seen == [6, 7, 1]
    assert not good_transport.closed and good_transport.responses() == [1]
    assert network.stats.handler_errors == 1
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    line = errors[0].getMessage()
    for part in ("127.0.0.1:5555", "Metadata v1", "correlation id 7", "TypeError", "NoneType"):
        assert part in line, line
    assert errors[0].exc_info is None  # one line; the traceback goes to DEBUG
    assert any(r.levelno == logging.DEBUG and r.exc_info for r in caplog.records)
    assert loop_errors == []
    # The failed connection gave back everything it held.
    assert network.budget.queued == 0 and bad not in network.connections
    good.close()
    await settle()


# ------------------------------------------------------------------ read-ahead bounds


async def test_read_ahead_is_bounded_in_frames_and_resumes() -> None:
    handlers = Handlers()
    handlers.gate.clear()
    conn, transport, network = connect(handlers)
    conn.data_received(b"".join(request(i) for i in range(MAX_QUEUED_FRAMES + 10)))
    await settle()
    # One in flight, MAX_QUEUED_FRAMES queued, the rest left unread in the buffer.
    assert not transport.reading
    assert len(conn._frames) == MAX_QUEUED_FRAMES
    assert network.budget.queued == MAX_QUEUED_FRAMES
    handlers.gate.set()
    await settle(400)
    assert transport.responses() == list(range(MAX_QUEUED_FRAMES + 10))
    assert transport.reading and network.budget.queued == 0
    conn.close()
    await settle()


async def test_read_ahead_is_bounded_in_bytes() -> None:
    handlers = Handlers()
    handlers.gate.clear()
    network = NetworkContext(10_000, RequestBudget(500, MemoryPool(-1, 10_000)))
    conn, transport, _ = connect(handlers, network)
    conn.data_received(b"".join(request(i, pad=4_000) for i in range(6)))
    await settle()
    # In flight: 0; queued: 1 and 2 (8 KB <= 10 KB); 3.. wait unread.
    assert [len(conn._frames), transport.reading] == [2, False]
    handlers.gate.set()
    await settle(100)
    assert transport.responses() == list(range(6))
    conn.close()
    await settle()


# ---------------------------------------------------------------- shared budgets


async def test_queue_full_pauses_other_connections_until_a_slot_frees() -> None:
    handlers = Handlers()
    handlers.gate.clear()
    network = NetworkContext(1 << 20, RequestBudget(2, MemoryPool(-1, 1 << 20)))
    a, ta, _ = connect(handlers, network)
    b, tb, _ = connect(handlers, network)
    a.data_received(request(1) + request(2) + request(3))
    await settle()
    assert network.budget.queued == 2 and ta.reading  # 1 in flight, 2 and 3 queued
    b.data_received(request(10))
    await settle()
    assert not tb.reading and network.budget.waiting == 1  # the queue is full: b waits
    handlers.gate.set()
    await settle(100)
    assert ta.responses() == [1, 2, 3] and tb.responses() == [10]
    assert tb.reading and network.budget.queued == 0
    for conn in (a, b):
        conn.close()
    await settle()


async def test_memory_pool_makes_a_connection_wait_not_drop() -> None:
    handlers = Handlers()
    handlers.gate.clear()
    network = NetworkContext(5_000, RequestBudget(500, MemoryPool(5_000, 5_000)))
    a, ta, _ = connect(handlers, network)
    b, tb, _ = connect(handlers, network)
    a.data_received(request(1, pad=4_000) + request(2, pad=4_000))  # 2nd overdraws: allowed
    await settle()
    assert network.budget.pool.out_of_memory
    b.data_received(request(10, pad=100))
    await settle()
    assert not tb.reading and not tb.closed and tb.responses() == []
    handlers.gate.set()
    await settle(100)
    assert ta.responses() == [1, 2] and tb.responses() == [10]
    assert network.budget.pool.available == 5_000
    for conn in (a, b):
        conn.close()
    await settle()


async def test_closing_returns_queued_memory_and_slots() -> None:
    handlers = Handlers()
    handlers.gate.clear()
    network = NetworkContext(5_000, RequestBudget(500, MemoryPool(50_000, 5_000)))
    conn, transport, _ = connect(handlers, network)
    conn.data_received(request(1, pad=100) + request(2, pad=100) + request(3)[:10])
    await settle()
    assert network.budget.queued == 1 and network.budget.pool.used > 0
    conn.close()
    handlers.gate.set()
    await settle()
    assert network.budget.queued == 0 and network.budget.pool.used == 0


async def test_idle_time_counts_only_when_nothing_is_pending() -> None:
    handlers = Handlers()
    handlers.gate.clear()
    conn, _, _ = connect(handlers)
    now = conn.last_active + 10
    assert conn.idle_ms(now) == pytest.approx(10_000)
    conn.data_received(request(1))
    await settle()
    assert conn.idle_ms(conn.last_active + 10) == 0  # a request in flight is not idle
    handlers.gate.set()
    await settle()
    assert conn.idle_ms(conn.last_active + 1) == pytest.approx(1_000)
    conn.close()
    await settle()


async def test_half_close_answers_what_was_sent_then_closes() -> None:
    handlers = Handlers()
    conn, transport, _ = connect(handlers)
    conn.data_received(request(1) + request(2))
    conn.eof_received()
    await settle()
    assert transport.responses() == [1, 2] and transport.closed


async def test_oversized_frame_closes_before_buffering() -> None:
    handlers = Handlers()
    conn, transport, network = connect(handlers)
    conn.data_received(struct.pack(">i", (1 << 20) + 1) + b"x" * 100)
    await settle()
    assert transport.closed and network.budget.pool.used == 0
