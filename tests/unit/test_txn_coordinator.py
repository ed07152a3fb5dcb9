"""The transaction coordinator's state machine, records and recovery, with fakes.

Cases follow Kafka's TransactionCoordinatorTest, TransactionMetadataTest and
TransactionStateManagerTest (core/src/test/scala/unit/kafka/coordinator/transaction).
"""

from __future__ import annotations

import asyncio
import struct
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pybroker.broker.txn.coordinator import TransactionCoordinator, TxnConfig
from pybroker.broker.txn.metadata import (
    IllegalTxnStateError,
    TransactionMetadata,
    TxnState,
)
from pybroker.broker.txn.records import (
    TxnLogValue,
    TxnRecordError,
    decode_txn_key,
    decode_txn_value,
    encode_txn_key,
    encode_txn_value,
)
from pybroker.protocol.errors import ErrorCode, KafkaError

E = ErrorCode
S = TxnState
TP = ("topic", 0)
TP2 = ("topic", 1)


class Handle:
    def __init__(self, when: float, callback: Callable[..., Any], args: tuple) -> None:
        self.when, self.callback, self.args, self.cancelled = when, callback, args, False

    def cancel(self) -> None:
        self.cancelled = True


class FakeScheduler:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.timers: list[Handle] = []

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> Handle:
        h = Handle(self.clock.now + delay * 1000, callback, args)
        self.timers.append(h)
        return h

    def run_due(self) -> None:
        due = [h for h in self.timers if not h.cancelled and h.when <= self.clock.now]
        self.timers = [h for h in self.timers if h not in due]
        for h in due:
            h.callback(*h.args)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


class FakeStore:
    def __init__(self) -> None:
        self.records: dict[int, list[tuple[bytes, bytes | None]]] = defaultdict(list)
        self.fail: ErrorCode | None = None

    def append(self, partition: int, records: Any) -> None:
        if self.fail is not None:
            raise KafkaError("append failed", self.fail)
        self.records[partition].extend(records)

    def read(self, partition: int) -> list[tuple[bytes, bytes | None]]:
        return list(self.records[partition])

    def states(self, partition: int) -> list[tuple[str, int, int] | None]:
        """(state, producer id, epoch) of each record, None for tombstones."""
        out = []
        for _, v in self.records[partition]:
            if v is None:
                out.append(None)
            else:
                d = decode_txn_value(v)
                out.append((S.from_id(d.status).display, d.producer_id, d.producer_epoch))
        return out


class FakeMarkers:
    def __init__(self) -> None:
        self.written: list[tuple[int, int, bool, int, tuple]] = []
        self.errors: dict[tuple[str, int], ErrorCode] = {}
        self.gone: set[tuple[str, int]] = set()

    def write_markers(self, pid, epoch, commit, coordinator_epoch, partitions):  # noqa: ANN001, ANN201
        self.written.append((pid, epoch, commit, coordinator_epoch, tuple(partitions)))
        return {tp: self.errors.get(tp, E.none) for tp in partitions}

    def partition_exists(self, tp: tuple[str, int]) -> bool:
        return tp not in self.gone


class Harness:
    def __init__(self, **config: Any) -> None:
        self.clock = Clock()
        self.scheduler = FakeScheduler(self.clock)
        self.store = FakeStore()
        self.markers = FakeMarkers()
        self.next_pid = 100
        self.coordinator = self.new_coordinator(**config)

    async def _pid(self) -> int:
        self.next_pid += 1
        return self.next_pid

    def new_coordinator(self, **config: Any) -> TransactionCoordinator:
        c = TransactionCoordinator(
            TxnConfig(num_partitions=4, **config),
            self.store,
            self.markers,
            self._pid,
            self.scheduler,
            self.clock,
        )
        c.set_owned({p: 7 for p in range(4)}, "topic-id", 4)
        return c

    def init(self, txn_id: str = "tx", timeout: int = 60_000, expected=None):  # noqa: ANN001, ANN201
        return asyncio.run(self.coordinator.init_producer_id(txn_id, timeout, expected))

    def end(self, pid: int, epoch: int, commit: bool, txn_id: str = "tx", version: int = 0):  # noqa: ANN001, ANN201
        return asyncio.run(self.coordinator.end_transaction(txn_id, pid, epoch, commit, version))

    def partition(self, txn_id: str = "tx") -> int:
        return self.coordinator.partition_for(txn_id)


@pytest.fixture
def h() -> Harness:
    return Harness()


# -- records --------------------------------------------------------------------------------


def test_key_and_value_bytes_are_kafkas() -> None:
    assert encode_txn_key("tx") == struct.pack(">hh", 0, 2) + b"tx"
    assert decode_txn_key(encode_txn_key("tx-é")) == "tx-é"
    value = TxnLogValue(5, 3, 60_000, S.ONGOING.id, (("b", 1), ("a", 2), ("a", 0)), 1000, 900)
    raw = encode_txn_value(value)
    # v0: version, pid, epoch, timeout, status, [topic, [partitions]], update, start
    expected = struct.pack(">hqhib", 0, 5, 3, 60_000, 1) + struct.pack(">i", 2)
    expected += struct.pack(">h", 1) + b"a" + struct.pack(">iii", 2, 0, 2)
    expected += struct.pack(">h", 1) + b"b" + struct.pack(">ii", 1, 1)
    expected += struct.pack(">qq", 1000, 900)
    assert raw == expected
    assert decode_txn_value(raw) == TxnLogValue(
        5, 3, 60_000, 1, (("a", 0), ("a", 2), ("b", 1)), 1000, 900
    )
    empty = encode_txn_value(TxnLogValue(5, 0, 100, S.EMPTY.id, (), 1, -1))
    assert empty[17:21] == struct.pack(">i", -1)  # Empty: null partitions
    flexible = TxnLogValue(5, 3, 100, 4, (), 1, 2, 4, 6, 2)
    raw1 = encode_txn_value(flexible)
    assert raw1[:2] == struct.pack(">h", 1)
    assert decode_txn_value(raw1) == flexible


@given(st.binary(max_size=80))
def test_garbage_never_decodes_silently(data: bytes) -> None:
    for decode in (decode_txn_key, decode_txn_value):
        try:
            decode(data)
        except TxnRecordError:
            pass


@given(
    st.integers(0, 2**63 - 1),
    st.integers(0, 0x7FFF),
    st.integers(1, 2**31 - 1),
    st.integers(1, 5),
    st.sets(st.tuples(st.text(min_size=1, max_size=5), st.integers(0, 99)), max_size=4),
    st.integers(-1, 2**40),
    st.integers(-1, 99),
    st.integers(0, 2),
)
def test_values_round_trip(
    pid: int, epoch: int, timeout: int, status: int, parts: set, ts: int, other: int, tv: int
) -> None:
    value = TxnLogValue(pid, epoch, timeout, status, tuple(sorted(parts)), ts, ts, other, other, tv)
    assert decode_txn_value(encode_txn_value(value)) == value


# -- InitProducerId -------------------------------------------------------------------------


def test_init_new_and_existing_ids_bump_the_epoch(h: Harness) -> None:
    assert h.init() == (E.none, 101, 0)
    assert h.init() == (E.none, 101, 1)
    assert h.store.states(h.partition()) == [("Empty", 101, 0), ("Empty", 101, 1)]
    assert h.init("other") == (E.none, 102, 0)
    assert h.init("", 1000) == (E.invalid_request, -1, -1)
    assert h.init("tx", 0)[0] == E.invalid_transaction_timeout
    assert h.init("tx", 900_001)[0] == E.invalid_transaction_timeout


def test_kip360_expected_producer(h: Harness) -> None:
    assert h.init() == (E.none, 101, 0)
    assert h.init(expected=(101, 0)) == (E.none, 101, 1)
    assert h.init(expected=(101, 0)) == (E.none, 101, 1)  # a retry of the last bump
    assert h.init(expected=(999, 1))[0] == E.producer_fenced
    assert h.init(expected=(101, 5))[0] == E.producer_fenced


def test_epoch_exhaustion_rotates_the_producer_id(h: Harness) -> None:
    h.init()
    txn = h.coordinator.get("tx")
    txn.producer_epoch = 0x7FFF - 1
    assert h.init() == (E.none, 102, 0)
    assert txn.previous_producer_id == 101


def test_init_with_an_ongoing_transaction_fences_and_aborts(h: Harness) -> None:
    _, pid, epoch = h.init()
    assert h.coordinator.add_partitions("tx", pid, epoch, [TP]) == E.none
    assert h.init() == (E.concurrent_transactions, -1, -1)
    assert h.markers.written == [(pid, 1, False, 7, (TP,))]  # aborted with the fenced epoch
    assert h.coordinator.get("tx").state == S.COMPLETE_ABORT
    assert h.init() == (E.none, pid, 2)  # the retry bumps once more
    # the old producer is fenced everywhere
    assert h.coordinator.add_partitions("tx", pid, epoch, [TP]) == E.producer_fenced
    assert h.end(pid, epoch, True) == (E.producer_fenced, -1, -1)


# -- partitions and EndTxn -------------------------------------------------------------------


def test_add_partitions_errors(h: Harness) -> None:
    _, pid, epoch = h.init()
    c = h.coordinator
    assert c.add_partitions("nobody", pid, epoch, [TP]) == E.invalid_producer_id_mapping
    assert c.add_partitions("tx", pid + 1, epoch, [TP]) == E.invalid_producer_id_mapping
    assert c.add_partitions("tx", pid, epoch + 1, [TP]) == E.producer_fenced
    assert c.add_partitions("", pid, epoch, [TP]) == E.invalid_request
    assert c.add_partitions("tx", pid, epoch, [TP]) == E.none
    txn = c.get("tx")
    assert txn.state == S.ONGOING and txn.start_ms == h.clock.now
    records = len(h.store.records[h.partition()])
    assert c.add_partitions("tx", pid, epoch, [TP]) == E.none  # already in: no write
    assert len(h.store.records[h.partition()]) == records
    assert c.add_partitions("tx", pid, epoch, [TP2]) == E.none
    assert txn.partitions == {TP, TP2}
    assert c.verify_partitions("tx", pid, epoch, [TP, ("x", 0)]) == {
        TP: E.none,
        ("x", 0): E.transaction_abortable,
    }
    assert c.verify_partitions("tx", pid, epoch - 1 if epoch else 9, [TP]) == {
        TP: E.producer_fenced
    }
    assert c.verify_partitions("nobody", pid, epoch, [TP]) == {TP: E.invalid_producer_id_mapping}


def test_commit_writes_markers_then_completes(h: Harness) -> None:
    _, pid, epoch = h.init()
    c = h.coordinator
    c.add_partitions("tx", pid, epoch, [TP, TP2])
    assert h.end(pid, epoch, True) == (E.none, -1, -1)
    assert h.markers.written == [(pid, epoch, True, 7, (TP, TP2))]
    assert [s[0] for s in h.store.states(h.partition())] == [
        "Empty",
        "Ongoing",
        "PrepareCommit",
        "CompleteCommit",
    ]
    txn = c.get("tx")
    assert txn.state == S.COMPLETE_COMMIT and txn.partitions == set()
    # retries and wrong ends
    assert h.end(pid, epoch, True) == (E.none, -1, -1)
    assert h.end(pid, epoch, False) == (E.invalid_txn_state, -1, -1)
    # the next transaction, then an abort
    c.add_partitions("tx", pid, epoch, [TP])
    assert h.end(pid, epoch, False) == (E.none, -1, -1)
    assert h.end(pid, epoch, False) == (E.none, -1, -1)
    assert h.end(pid, epoch, True) == (E.invalid_txn_state, -1, -1)


def test_end_without_a_transaction(h: Harness) -> None:
    _, pid, epoch = h.init()
    assert h.end(pid, epoch, True) == (E.invalid_txn_state, -1, -1)
    assert h.end(pid, epoch, False) == (E.invalid_txn_state, -1, -1)
    assert h.end(pid + 5, epoch, True) == (E.invalid_producer_id_mapping, -1, -1)
    assert h.end(pid, epoch, True, txn_id="nobody") == (E.invalid_producer_id_mapping, -1, -1)
    assert h.end(pid, epoch, True, txn_id="") == (E.invalid_request, -1, -1)


def test_marker_failures_are_retried_while_the_id_waits(h: Harness) -> None:
    _, pid, epoch = h.init()
    c = h.coordinator
    c.add_partitions("tx", pid, epoch, [TP, TP2])
    h.markers.errors[TP2] = E.not_leader_or_follower
    assert h.end(pid, epoch, True) == (E.none, -1, -1)
    txn = c.get("tx")
    assert txn.state == S.PREPARE_COMMIT and txn.pending_state == S.COMPLETE_COMMIT
    assert h.end(pid, epoch, True)[0] == E.concurrent_transactions
    assert c.add_partitions("tx", pid, epoch, [TP]) == E.concurrent_transactions
    assert h.init()[0] == E.concurrent_transactions
    h.markers.errors.clear()
    h.clock.now += 100
    h.scheduler.run_due()
    assert h.markers.written[-1] == (pid, epoch, True, 7, (TP2,))  # only the missing one
    assert txn.state == S.COMPLETE_COMMIT and not txn.pending
    # a deleted partition is skipped
    c.add_partitions("tx", pid, epoch, [TP, TP2])
    h.markers.gone.add(TP2)
    assert h.end(pid, epoch, False)[0] == E.none
    assert h.markers.written[-1] == (pid, epoch, False, 7, (TP,))
    assert txn.state == S.COMPLETE_ABORT


def test_log_append_errors_are_mapped_and_change_nothing(h: Harness) -> None:
    _, pid, epoch = h.init()
    h.store.fail = E.not_enough_replicas
    assert h.coordinator.add_partitions("tx", pid, epoch, [TP]) == E.coordinator_not_available
    txn = h.coordinator.get("tx")
    assert txn.state == S.EMPTY and not txn.pending
    h.store.fail = E.kafka_storage_error
    assert h.init()[0] == E.not_coordinator
    h.store.fail = E.record_list_too_large
    assert h.init()[0] == E.unknown_server_error
    assert txn.producer_epoch == epoch


def test_not_coordinator_for_unowned_partitions(h: Harness) -> None:
    c = h.coordinator
    c.set_owned({p: 7 for p in range(4) if p != h.partition()}, "topic-id", 4)
    assert h.init()[0] == E.not_coordinator
    assert c.add_partitions("tx", 1, 0, [TP]) == E.not_coordinator
    assert c.describe("tx") == (E.not_coordinator, None)


# -- timeouts, expiration, recovery --------------------------------------------------------


def test_timed_out_transactions_are_aborted_with_a_bumped_epoch(h: Harness) -> None:
    _, pid, epoch = h.init(timeout=1_000)
    c = h.coordinator
    c.add_partitions("tx", pid, epoch, [TP])
    h.clock.now += 1_000
    assert c.abort_timed_out_transactions() == 0  # not more than its timeout yet
    h.clock.now += 1
    assert c.abort_timed_out_transactions() == 1
    assert h.markers.written == [(pid, epoch + 1, False, 7, (TP,))]
    txn = c.get("tx")
    assert (txn.state, txn.producer_epoch) == (S.COMPLETE_ABORT, epoch + 1)
    assert h.end(pid, epoch, True) == (E.producer_fenced, -1, -1)
    assert c.add_partitions("tx", pid, epoch, [TP]) == E.producer_fenced


def test_background_jobs_run_on_their_intervals() -> None:
    h = Harness(abort_timed_out_interval_ms=500, remove_expired_interval_ms=2_000)
    c = h.coordinator
    c.start()
    _, pid, epoch = h.init(timeout=100)
    c.add_partitions("tx", pid, epoch, [TP])
    h.clock.now += 500
    h.scheduler.run_due()
    assert c.get("tx").state == S.COMPLETE_ABORT
    c.shutdown()
    assert all(t.cancelled for t in h.scheduler.timers)


def test_transactional_ids_expire() -> None:
    h = Harness(transactional_id_expiration_ms=10_000)
    c = h.coordinator
    _, pid, epoch = h.init()
    h.init("busy")
    c.add_partitions("busy", pid + 1, 0, [TP])
    h.clock.now += 10_000
    assert c.remove_expired_transactional_ids() == 1
    assert c.get("tx") is None and c.get("busy") is not None  # Ongoing never expires
    assert h.store.records[h.partition("tx")][-1] == (encode_txn_key("tx"), None)
    # a restart does not bring it back
    again = h.new_coordinator()
    assert again.get("tx") is None and again.get("busy").state == S.ONGOING


def test_restart_completes_prepared_transactions(h: Harness) -> None:
    _, pid, epoch = h.init()
    c = h.coordinator
    c.add_partitions("tx", pid, epoch, [TP, TP2])
    h.markers.errors[TP] = E.not_leader_or_follower  # the "crash" happens mid-markers
    h.end(pid, epoch, True)
    assert c.get("tx").state == S.PREPARE_COMMIT
    h.init("open")
    c.add_partitions("open", 102, 0, [TP])
    h.markers.errors.clear()
    h.markers.written.clear()
    restarted = h.new_coordinator()
    assert restarted.get("tx").state == S.COMPLETE_COMMIT
    assert h.markers.written == [(pid, epoch, True, 7, (TP, TP2))]
    assert restarted.get("open").state == S.ONGOING  # the timeout will abort it
    assert restarted.get("open").partitions == {TP}


def test_describe_and_list(h: Harness) -> None:
    _, pid, epoch = h.init("a")
    h.init("b")
    h.coordinator.add_partitions("a", pid, epoch, [TP, TP2])
    code, txn = h.coordinator.describe("a")
    assert code == E.none and txn.state.display == "Ongoing" and txn.partitions == {TP, TP2}
    assert h.coordinator.describe("zzz") == (E.transactional_id_not_found, None)
    assert h.coordinator.describe("") == (E.invalid_request, None)
    code, found, unknown = h.coordinator.list_transactions(["Ongoing", "Bogus"], [])
    assert (code, [t.transactional_id for t in found], unknown) == (E.none, ["a"], ["Bogus"])
    _, found, _ = h.coordinator.list_transactions([], [pid + 1])
    assert [t.transactional_id for t in found] == ["b"]
    _, found, _ = h.coordinator.list_transactions([], [], 0)
    # "a" started now: not running longer than 0 ms; "b" never started (start -1), which
    # Kafka's filter (now - start <= duration excludes) keeps
    assert [t.transactional_id for t in found] == ["b"]
    h.clock.now += 5
    _, found, _ = h.coordinator.list_transactions(["Ongoing"], [], 1)
    assert [t.transactional_id for t in found] == ["a"]


# -- KIP-890 part 2 (EndTxn v5) ---------------------------------------------------------------


def test_v2_end_bumps_the_epoch_every_time(h: Harness) -> None:
    _, pid, epoch = h.init()
    c = h.coordinator
    c.add_partitions("tx", pid, epoch, [TP], 2)
    assert h.end(pid, epoch, True, version=2) == (E.none, pid, epoch + 1)
    assert h.markers.written[-1] == (pid, epoch + 1, True, 7, (TP,))
    assert h.end(pid, epoch, True, version=2) == (E.none, pid, epoch + 1)  # retry
    assert h.end(pid, epoch + 1, True, version=2)[0] == E.invalid_txn_state
    # an abort with nothing in the transaction still bumps (Empty/Complete -> abort)
    assert h.end(pid, epoch + 1, False, version=2) == (E.none, pid, epoch + 2)


# -- the state machine itself ---------------------------------------------------------------


def test_illegal_transitions_raise() -> None:
    txn = TransactionMetadata("t", 1, producer_epoch=0, state=S.EMPTY)
    with pytest.raises(IllegalTxnStateError):
        txn.prepare_abort_or_commit(S.PREPARE_COMMIT, 0, -1, 1, False)
    t = txn.prepare_add_partitions({TP}, 5, 0)
    with pytest.raises(IllegalTxnStateError, match="pending"):
        txn.prepare_add_partitions({TP}, 5, 0)
    txn.complete_transition(t)
    assert txn.state == S.ONGOING and txn.start_ms == 5
    txn.producer_epoch = 0x7FFF
    with pytest.raises(IllegalTxnStateError):
        txn.prepare_fence_producer_epoch()
