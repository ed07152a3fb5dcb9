"""The socket layer's counters: Kafka's memory pool, connection quotas and request budget."""

from __future__ import annotations

import ipaddress

import pytest

from pybroker.broker.connection_limits import (
    ConnectionQuotas,
    RequestBudget,
    normalize_ip,
    resolve_overrides,
)
from pybroker.broker.memory_pool import MemoryPool
from pybroker.protocol.frames import frame_response, peek_frame_size, response_prefix

LOCAL = ipaddress.ip_address("127.0.0.1")
OTHER = ipaddress.ip_address("10.0.0.7")


# ------------------------------------------------------------------------------ framing


def test_response_prefix_matches_the_whole_frame() -> None:
    assert response_prefix(7, True, 2) + b"xy" == frame_response(7, True, b"xy")
    assert frame_response(7, True, b"xy") == b"\x00\x00\x00\x07\x00\x00\x00\x07\x00xy"
    assert frame_response(7, False, b"xy") == b"\x00\x00\x00\x06\x00\x00\x00\x07xy"


def test_peek_frame_size() -> None:
    assert peek_frame_size(b"\x00\x00\x01") is None
    assert peek_frame_size(b"\x00\x00\x01\x00") == 256
    assert peek_frame_size(b"..\xff\xff\xff\xff", 2) == -1


# -------------------------------------------------------------------------- memory pool


def test_pool_is_non_strict_like_kafkas_broker_pool() -> None:
    """Kafka's broker pool lends while any memory is left: usage may overshoot by one."""
    pool = MemoryPool(200, 150)
    assert pool.try_allocate(150)
    assert pool.try_allocate(150)  # 50 left: still granted
    assert pool.available == -100 and pool.out_of_memory
    assert not pool.try_allocate(1)
    pool.release(150)
    assert pool.available == 50 and pool.try_allocate(10)


def test_pool_refuses_what_socket_request_max_bytes_already_refuses() -> None:
    pool = MemoryPool(200, 150)
    with pytest.raises(ValueError):
        pool.try_allocate(151)
    with pytest.raises(ValueError):
        MemoryPool(100, 150)  # Kafka's constructor refuses max single > size


def test_unbounded_pool() -> None:
    pool = MemoryPool(-1, 100)
    assert not pool.bounded and pool.try_allocate(100) and pool.try_allocate(100)
    assert not pool.out_of_memory and pool.used == 0


# --------------------------------------------------------------------- connection quotas


def test_per_ip_limit_and_overrides() -> None:
    quotas = ConnectionQuotas(100, 2, {LOCAL: 3})
    assert [quotas.try_inc(OTHER) for _ in range(3)] == [None, None, 2]
    assert [quotas.try_inc(LOCAL) for _ in range(4)] == [None, None, None, 3]
    assert quotas.total == 5  # refused connections are not counted
    quotas.dec(OTHER)
    assert quotas.try_inc(OTHER) is None


def test_max_connections_frees_a_slot_on_close() -> None:
    freed: list[int] = []
    quotas = ConnectionQuotas(2, 100)
    quotas.on_slot_freed = lambda: freed.append(quotas.total)
    quotas.try_inc(LOCAL)
    quotas.try_inc(OTHER)
    assert not quotas.slot_available()
    quotas.dec(LOCAL)
    assert quotas.slot_available() and freed == [1]
    quotas.dec(LOCAL)  # unknown address: ignored, never negative
    assert quotas.total == 1


def test_addresses_compare_as_java_does() -> None:
    assert normalize_ip("::ffff:127.0.0.1") == LOCAL
    assert normalize_ip("127.0.0.1") == LOCAL
    assert normalize_ip("fe80::1%eth0") == ipaddress.ip_address("fe80::1")


def test_overrides_resolve_host_names_once() -> None:
    assert resolve_overrides({"127.0.0.1": 5, "localhost": 2})[LOCAL] in (5, 2)
    with pytest.raises(RuntimeError, match="no-such-host.invalid"):
        resolve_overrides({"no-such-host.invalid": 1})


# ------------------------------------------------------------------------ request budget


def test_budget_queue_slots_and_waiters_in_order() -> None:
    budget = RequestBudget(2, MemoryPool(-1, 100))
    calls: list[str] = []
    assert budget.try_queue() and budget.try_queue() and not budget.try_queue()
    budget.wait("a", lambda: calls.append("a"))
    budget.wait("b", lambda: calls.append("b"))
    budget.wait("a", lambda: calls.append("a2"))  # already waiting: keeps its place
    budget.dequeue()
    assert calls == ["a", "b"] and budget.waiting == 0


def test_budget_wakes_a_waiter_that_needs_only_a_slot_while_memory_is_out() -> None:
    """A waiter holding memory may need just a queue slot: it must be woken anyway."""
    budget = RequestBudget(1, MemoryPool(100, 100))
    assert budget.try_allocate(100) and budget.pool.out_of_memory
    assert budget.try_queue()
    woke: list[bool] = []
    budget.wait("holder", lambda: woke.append(budget.try_queue()))
    budget.dequeue()
    assert woke == [True]


def test_budget_waiter_refused_again_waits_again() -> None:
    budget = RequestBudget(10, MemoryPool(100, 100))
    assert budget.try_allocate(100)

    def retry() -> None:
        if not budget.try_allocate(100):
            budget.wait("w", retry)

    budget.wait("w", retry)
    budget.release(0)  # nothing released: nobody is woken
    assert budget.waiting == 1
    assert budget.try_allocate(1) is False
    budget.release(100)  # the waiter gets the memory
    assert budget.waiting == 0 and budget.pool.available == 0
