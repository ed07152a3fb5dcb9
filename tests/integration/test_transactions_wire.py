"""Transactions over raw requests: Kafka 4's answers, error codes and isolation (issue #5).

Every request is built with kio and sent as is (tests/support/txn_wire.py), so nothing
retries or validates on the client side. Sources of the expected answers: Kafka 4's
TransactionCoordinator, KafkaApis, ReplicaManager / AddPartitionsToTxnManager (KIP-890
verification), UnifiedLog (LSO, aborted transactions) and the group coordinator's
transactional offset commits.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from kio.schema.errors import ErrorCode

from tests.support.broker import BrokerProcess
from tests.support.txn_wire import (
    READ_COMMITTED,
    READ_UNCOMMITTED,
    add_offsets,
    add_partitions,
    batch,
    create_topic,
    describe_producers,
    describe_transaction,
    end_txn,
    fetch,
    find_coordinator,
    init_producer,
    init_txn,
    list_offset,
    list_transactions,
    offset_fetch,
    produce,
    txn_offset_commit,
    verify_partitions,
    write_markers,
)
from tests.support.wire import KafkaWire

pytestmark = pytest.mark.timeout(120)
E = ErrorCode


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(
        tmp_path_factory.mktemp("txn") / "data",
        {
            "transaction.abort.timed.out.transaction.cleanup.interval.ms": "200",
            "transaction.max.timeout.ms": "120000",
            "transaction.state.log.num.partitions": "5",
            "offsets.topic.num.partitions": "5",
        },
    ).start()
    try:
        yield proc
    finally:
        if proc.proc is not None:
            proc.stop()


def connect(broker: BrokerProcess) -> KafkaWire:
    return KafkaWire("127.0.0.1", broker.port, timeout=15)


def test_apis_are_advertised_at_kafka_4_0_versions(broker: BrokerProcess) -> None:
    with connect(broker) as conn:
        versions = conn.api_versions()
    assert {k: versions[k] for k in (22, 24, 25, 26, 27, 28, 61, 65, 66)} == {
        22: (0, 5),
        24: (0, 5),
        25: (0, 4),
        26: (0, 5),
        27: (0, 1),  # v0: pybroker.legacy.protocol.enable (Kafka 3.9's minimum)
        28: (0, 5),
        61: (0, 0),
        65: (0, 0),
        66: (0, 2),
    }


def test_find_coordinator_for_a_transactional_id(broker: BrokerProcess) -> None:
    with connect(broker) as conn:
        found = find_coordinator(conn, "some-txn")
        assert (found.error_code, found.node_id, found.port) == (E.none, 0, broker.port)
        old = find_coordinator(conn, "some-txn", version=2)
        assert (old.error_code, old.node_id) == (E.none, 0)
        assert init_producer(conn, "x", timeout_ms=120_001)[0] == E.invalid_transaction_timeout
        assert init_producer(conn, "x", timeout_ms=0)[0] == E.invalid_transaction_timeout


def test_commit_abort_lso_and_read_committed(broker: BrokerProcess) -> None:
    topic, txn = "wire-isolation", "wire-isolation-txn"
    tp = (topic, 0)
    with connect(broker) as conn:
        create_topic(conn, topic)
        find_coordinator(conn, txn)
        pid, epoch = init_txn(conn, txn)
        assert epoch == 0
        produce(conn, {tp: batch(-1, -1, -1, [b"plain"], transactional=False)}, None)
        assert add_partitions(conn, txn, pid, epoch, [tp]) == {tp: E.none}
        r = produce(conn, {tp: batch(pid, epoch, 0, [b"c0", b"c1"])}, txn)[tp]
        assert (r.error_code, r.base_offset) == (E.none, 1)
        # open transaction: the LSO stops at its first offset
        assert list_offset(conn, topic, READ_UNCOMMITTED) == 3
        assert list_offset(conn, topic, READ_COMMITTED) == 1
        f = fetch(conn, topic, isolation=READ_COMMITTED)
        assert (f.high_watermark, f.last_stable_offset, f.aborted) == (3, 1, [])
        assert f.values == [(0, b"plain")]
        assert fetch(conn, topic, isolation=READ_UNCOMMITTED).aborted is None
        assert describe_producers(conn, "no-such-topic").error_code == (
            E.unknown_topic_or_partition
        )
        described = describe_producers(conn, topic)
        assert described.error_code == E.none
        (state,) = described.active_producers
        assert (state.producer_id, state.last_sequence, state.current_txn_start_offset) == (
            pid,
            1,
            1,
        )
        state = describe_transaction(conn, txn)
        assert (state.error_code, state.transaction_state, state.producer_id) == (
            E.none,
            "Ongoing",
            pid,
        )
        assert [(t.topic, tuple(t.partitions)) for t in state.topics] == [(topic, (0,))]
        listed = list_transactions(conn, ("Ongoing", "Nonsense"), (pid,))
        assert [t.transactional_id for t in listed.transaction_states] == [txn]
        assert list(listed.unknown_state_filters) == ["Nonsense"]
        # commit: marker at 3, everything stable
        assert end_txn(conn, txn, pid, epoch, True).error_code == E.none
        assert describe_transaction(conn, txn).transaction_state == "CompleteCommit"
        f = fetch(conn, topic, isolation=READ_COMMITTED)
        assert (f.last_stable_offset, f.high_watermark) == (4, 4)
        assert f.controls == [(3, pid)]
        # a second transaction, aborted
        assert add_partitions(conn, txn, pid, epoch, [tp]) == {tp: E.none}
        produce(conn, {tp: batch(pid, epoch, 2, [b"a0", b"a1"])}, txn)
        assert end_txn(conn, txn, pid, epoch, False).error_code == E.none
        produce(conn, {tp: batch(-1, -1, -1, [b"after"], transactional=False)}, None)
        f = fetch(conn, topic, isolation=READ_COMMITTED)
        assert f.aborted == [(pid, 4)]  # the aborted transaction's first offset
        assert f.controls == [(3, pid), (6, pid)]
        assert (f.last_stable_offset, f.high_watermark) == (8, 8)
        # the consumer drops pid's batches from offset 4 to its ABORT marker at 6
        kept = [v for o, v in f.values if not 4 <= o < 6]
        assert kept == [b"plain", b"c0", b"c1", b"after"]
        # a fetch that starts after the aborted transaction does not list it
        assert fetch(conn, topic, isolation=READ_COMMITTED, offset=7).aborted == []
        state = describe_transaction(conn, txn)
        assert (state.transaction_state, list(state.topics)) == ("CompleteAbort", [])


def test_partition_not_in_the_transaction(broker: BrokerProcess) -> None:
    """KIP-890 verification: Produce v10 INVALID_TXN_STATE with Kafka's message, v11
    TRANSACTION_ABORTABLE, v12 adds the partition (transaction version 2)."""
    topic, txn = "wire-verify", "wire-verify-txn"
    with connect(broker) as conn:
        create_topic(conn, topic, 3)
        pid, epoch = init_txn(conn, txn)
        assert add_partitions(conn, txn, pid, epoch, [(topic, 0)]) == {(topic, 0): E.none}
        r = produce(conn, {(topic, 1): batch(pid, epoch, 0, [b"x"])}, txn, version=10)[(topic, 1)]
        assert (r.error_code, r.base_offset, r.error_message) == (
            E.invalid_txn_state,
            -1,
            "Partition was not added to the transaction",
        )
        r = produce(conn, {(topic, 1): batch(pid, epoch, 0, [b"x"])}, txn, version=11)[(topic, 1)]
        assert (r.error_code, r.error_message) == (E.transaction_abortable, None)
        assert fetch(conn, topic, 1).values == []
        # the partition that was added takes the batch
        r = produce(conn, {(topic, 0): batch(pid, epoch, 0, [b"ok"])}, txn, version=11)[(topic, 0)]
        assert r.error_code == E.none
        # the broker's verify-only form answers per partition
        assert verify_partitions(conn, txn, pid, epoch, [(topic, 0), (topic, 2)]) == {
            (topic, 0): E.none,
            (topic, 2): E.transaction_abortable,
        }
        # Produce v12 adds the partition itself
        r = produce(conn, {(topic, 2): batch(pid, epoch, 0, [b"v12"])}, txn, version=12)[(topic, 2)]
        assert r.error_code == E.none
        partitions = {
            (t.topic, p) for t in describe_transaction(conn, txn).topics for p in t.partitions
        }
        assert partitions == {(topic, 0), (topic, 2)}
        assert end_txn(conn, txn, pid, epoch, True).error_code == E.none
        assert [v for _, v in fetch(conn, topic, 2, READ_COMMITTED).values] == [b"v12"]
        # a transactional batch needs the transactional id, and one producer per request
        r = produce(conn, {(topic, 0): batch(pid, epoch, 1, [b"x"])}, None)[(topic, 0)]
        assert r.error_code == E.transactional_id_authorization_failed
        other, other_epoch = init_txn(conn, txn + "-2")
        mixed = produce(
            conn,
            {
                (topic, 0): batch(pid, epoch, 1, [b"x"]),
                (topic, 1): batch(other, other_epoch, 0, [b"y"]),
            },
            txn,
        )
        assert {tp: r.error_code for tp, r in mixed.items()} == {
            (topic, 0): E.invalid_producer_id_mapping,
            (topic, 1): E.invalid_producer_id_mapping,
        }
        # no coordinator knows the transactional id
        r = produce(conn, {(topic, 1): batch(999_999, 0, 0, [b"x"])}, "nobody", 9)[(topic, 1)]
        assert r.error_code == E.invalid_producer_id_mapping


def test_bad_transactional_input(broker: BrokerProcess) -> None:
    topic, txn = "wire-bad", "wire-bad-txn"
    tp = (topic, 0)
    with connect(broker) as conn:
        create_topic(conn, topic)
        pid, epoch = init_txn(conn, txn)
        # EndTxn without a transaction
        assert end_txn(conn, txn, pid, epoch, True).error_code == E.invalid_txn_state
        assert end_txn(conn, txn, pid, epoch, False).error_code == E.invalid_txn_state
        assert end_txn(conn, "unknown-id", pid, epoch, True).error_code == (
            E.invalid_producer_id_mapping
        )
        assert end_txn(conn, txn, pid + 1000, epoch, True).error_code == (
            E.invalid_producer_id_mapping
        )
        # unknown topics fail the whole AddPartitionsToTxn
        assert add_partitions(conn, txn, pid, epoch, [tp, ("no-such-topic", 0)]) == {
            tp: E.operation_not_attempted,
            ("no-such-topic", 0): E.unknown_topic_or_partition,
        }
        # sequences: a gap inside a transaction
        assert add_partitions(conn, txn, pid, epoch, [tp]) == {tp: E.none}
        assert produce(conn, {tp: batch(pid, epoch, 0, [b"s0"])}, txn)[tp].error_code == E.none
        r = produce(conn, {tp: batch(pid, epoch, 5, [b"s5"])}, txn)[tp]
        assert r.error_code == E.out_of_order_sequence_number
        # a second producer with the same id fences the first: it aborts the open
        # transaction and asks the client to retry (CONCURRENT_TRANSACTIONS) ...
        assert init_producer(conn, txn)[0] == E.concurrent_transactions
        new_pid, new_epoch = init_txn(conn, txn)
        assert (new_pid, new_epoch) == (pid, epoch + 2)
        f = fetch(conn, topic, isolation=READ_COMMITTED)
        assert f.aborted == [(pid, 0)] and f.last_stable_offset == f.high_watermark
        # ... and the old epoch gets Kafka's error for each API and client version
        assert add_partitions(conn, txn, pid, epoch, [tp], version=3) == {tp: E.producer_fenced}
        assert add_partitions(conn, txn, pid, epoch, [tp], version=1) == {
            tp: E.invalid_producer_epoch
        }
        assert end_txn(conn, txn, pid, epoch, True, version=3).error_code == E.producer_fenced
        assert end_txn(conn, txn, pid, epoch, True, version=1).error_code == (
            E.invalid_producer_epoch
        )
        assert add_offsets(conn, txn, pid, epoch, "g", version=3) == E.producer_fenced
        assert add_offsets(conn, txn, pid, epoch, "g", version=1) == E.invalid_producer_epoch
        assert init_producer(conn, txn, version=3, expected=(pid, epoch))[0] == (
            E.invalid_producer_epoch
        )
        assert init_producer(conn, txn, version=4, expected=(pid, epoch))[0] == (E.producer_fenced)
        r = produce(conn, {tp: batch(pid, epoch, 1, [b"zombie"])}, txn)[tp]
        assert r.error_code == E.invalid_producer_epoch
        # the new epoch works
        assert add_partitions(conn, txn, new_pid, new_epoch, [tp]) == {tp: E.none}
        r = produce(conn, {tp: batch(new_pid, new_epoch, 0, [b"new"])}, txn)[tp]
        assert r.error_code == E.none
        assert end_txn(conn, txn, new_pid, new_epoch, True).error_code == E.none


def _group_on_another_partition(group: str, partitions: int = 5) -> str:
    from pybroker.broker.groups.records import partition_for

    base = partition_for(group, partitions)
    for i in range(100):
        candidate = f"{group}-other-{i}"
        if partition_for(candidate, partitions) != base:
            return candidate
    raise AssertionError("no group on another partition")


def test_txn_offset_commit(broker: BrokerProcess) -> None:
    topic, txn, group = "wire-offsets", "wire-offsets-txn", "wire-offsets-group"
    wrong = _group_on_another_partition(group)
    tp = (topic, 0)
    with connect(broker) as conn:
        create_topic(conn, topic)
        assert find_coordinator(conn, group, key_type=0).error_code == E.none
        pid, epoch = init_txn(conn, txn)
        assert add_offsets(conn, txn, pid, epoch, group) == E.none
        # a group whose offsets partition is not in the transaction
        assert txn_offset_commit(conn, txn, wrong, pid, epoch, {tp: 5}, version=3) == {
            tp: E.invalid_txn_state
        }
        assert txn_offset_commit(conn, txn, wrong, pid, epoch, {tp: 5}, version=4) == {
            tp: E.transaction_abortable
        }
        assert txn_offset_commit(conn, txn, group, pid, epoch + 1, {tp: 5}) == {
            tp: E.invalid_producer_epoch
        }
        assert txn_offset_commit(conn, txn, group, pid, epoch, {("nope", 0): 1}) == {
            ("nope", 0): E.unknown_topic_or_partition
        }
        assert txn_offset_commit(conn, txn, group, pid, epoch, {tp: 5}) == {tp: E.none}
        # not visible until the transaction commits; require_stable says so
        assert offset_fetch(conn, group, [tp]) == {tp: (-1, E.none)}
        assert offset_fetch(conn, group, [tp], require_stable=True) == {
            tp: (-1, E.unstable_offset_commit)
        }
        assert end_txn(conn, txn, pid, epoch, True).error_code == E.none
        assert offset_fetch(conn, group, [tp], require_stable=True) == {tp: (5, E.none)}
        # an aborted commit leaves the committed offset alone
        assert add_offsets(conn, txn, pid, epoch, group) == E.none
        assert txn_offset_commit(conn, txn, group, pid, epoch, {tp: 9}) == {tp: E.none}
        assert end_txn(conn, txn, pid, epoch, False).error_code == E.none
        assert offset_fetch(conn, group, [tp], require_stable=True) == {tp: (5, E.none)}
        # TxnOffsetCommit v5 (transaction version 2) adds the offsets partition itself
        assert txn_offset_commit(conn, txn, group, pid, epoch, {tp: 11}, version=5) == {tp: E.none}
        assert end_txn(conn, txn, pid, epoch, True).error_code == E.none
        assert offset_fetch(conn, group, [tp]) == {tp: (11, E.none)}


def test_end_txn_v5_bumps_the_epoch(broker: BrokerProcess) -> None:
    topic, txn = "wire-tv2", "wire-tv2-txn"
    tp = (topic, 0)
    with connect(broker) as conn:
        create_topic(conn, topic)
        pid, epoch = init_txn(conn, txn)
        r = produce(conn, {tp: batch(pid, epoch, 0, [b"v"])}, txn, version=12)[tp]
        assert r.error_code == E.none
        resp = end_txn(conn, txn, pid, epoch, True, version=5)
        assert (resp.error_code, resp.producer_id, resp.producer_epoch) == (E.none, pid, epoch + 1)
        # the old epoch is fenced at the partition; the new one starts at sequence 0
        r = produce(conn, {tp: batch(pid, epoch, 1, [b"old"])}, txn, version=12)[tp]
        assert r.error_code == E.invalid_producer_epoch
        r = produce(conn, {tp: batch(pid, epoch + 1, 0, [b"new"])}, txn, version=12)[tp]
        assert r.error_code == E.none
        assert end_txn(conn, txn, pid, epoch + 1, False, version=5).producer_epoch == epoch + 2
        f = fetch(conn, topic, isolation=READ_COMMITTED)
        # v at 0, its COMMIT at 1, "new" at 2 and its ABORT at 3
        assert (f.values[0], f.aborted, f.controls) == ((0, b"v"), [(pid, 2)], [(1, pid), (3, pid)])


def test_transaction_timeout_aborts_and_fences(broker: BrokerProcess) -> None:
    topic, txn = "wire-timeout", "wire-timeout-txn"
    tp = (topic, 0)
    with connect(broker) as conn:
        create_topic(conn, topic)
        pid, epoch = init_txn(conn, txn, timeout_ms=300)
        assert add_partitions(conn, txn, pid, epoch, [tp]) == {tp: E.none}
        produce(conn, {tp: batch(pid, epoch, 0, [b"slow"])}, txn)
        deadline = time.monotonic() + 10
        while describe_transaction(conn, txn).transaction_state != "CompleteAbort":
            assert time.monotonic() < deadline, "the timed-out transaction was not aborted"
            time.sleep(0.05)
        state = describe_transaction(conn, txn)
        assert (state.producer_id, state.producer_epoch) == (pid, epoch + 1)
        assert end_txn(conn, txn, pid, epoch, True).error_code == E.producer_fenced
        r = produce(conn, {tp: batch(pid, epoch, 1, [b"late"])}, txn)[tp]
        assert r.error_code == E.invalid_producer_epoch
        f = fetch(conn, topic, isolation=READ_COMMITTED)
        assert f.aborted == [(pid, 0)] and f.last_stable_offset == 2


def test_write_txn_markers(broker: BrokerProcess) -> None:
    topic = "wire-markers"
    tp = (topic, 0)
    with connect(broker) as conn:
        create_topic(conn, topic)
        pid, epoch = init_txn(conn, "wire-markers-txn")
        assert add_partitions(conn, "wire-markers-txn", pid, epoch, [tp]) == {tp: E.none}
        produce(conn, {tp: batch(pid, epoch, 0, [b"m"])}, "wire-markers-txn")
        assert write_markers(conn, pid, epoch, False, [tp, ("missing", 0)]) == {
            tp: E.none,
            ("missing", 0): E.unknown_topic_or_partition,
        }
        assert write_markers(conn, pid, epoch - 1 if epoch else -5, True, [tp]) == {
            tp: E.invalid_producer_epoch
        }
        f = fetch(conn, topic, isolation=READ_COMMITTED)
        assert f.aborted == [(pid, 0)] and f.last_stable_offset == 2


def test_state_survives_kill_and_restart(fresh_broker: BrokerProcess) -> None:
    """kill -9: the coordinator's ids, the aborted-transaction index and the LSO come back;
    an open transaction is aborted when its producer's successor initializes."""
    fresh_broker.overrides["transaction.state.log.num.partitions"] = "3"
    fresh_broker.start()
    topic, txn, open_txn = "wire-restart", "wire-restart-txn", "wire-restart-open"
    tp = (topic, 0)
    with connect(fresh_broker) as conn:
        create_topic(conn, topic)
        assert init_producer(conn, txn)[0] == E.not_coordinator  # no FindCoordinator yet
        assert find_coordinator(conn, txn).error_code == E.none  # creates the topic
        pid, epoch = init_txn(conn, txn)
        for i, commit in enumerate((True, False, True)):
            add_partitions(conn, txn, pid, epoch, [tp])
            produce(conn, {tp: batch(pid, epoch, i, [b"t%d" % i])}, txn)
            assert end_txn(conn, txn, pid, epoch, commit).error_code == E.none
        opid, oepoch = init_txn(conn, open_txn)
        add_partitions(conn, open_txn, opid, oepoch, [tp])
        produce(conn, {tp: batch(opid, oepoch, 0, [b"open"])}, open_txn)
        before = fetch(conn, topic, isolation=READ_COMMITTED)
        assert before.last_stable_offset == 6
    fresh_broker.kill()
    fresh_broker.start()
    with connect(fresh_broker) as conn:
        after = fetch(conn, topic, isolation=READ_COMMITTED)
        assert (after.aborted, after.last_stable_offset) == (before.aborted, 6)
        assert after.aborted == [(pid, 2)]
        assert describe_transaction(conn, txn).transaction_state == "CompleteCommit"
        assert describe_transaction(conn, open_txn).transaction_state == "Ongoing"
        assert init_producer(conn, open_txn)[0] == E.concurrent_transactions
        assert init_txn(conn, open_txn) == (opid, oepoch + 2)
        f = fetch(conn, topic, isolation=READ_COMMITTED)
        assert f.last_stable_offset == f.high_watermark == 8
        assert f.aborted == [(pid, 2), (opid, 6)]
        assert init_txn(conn, txn) == (pid, epoch + 1)
