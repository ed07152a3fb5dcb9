"""Transactional offset commits in the group coordinator (TxnOffsetCommit, KIP-98/447).

Offsets committed in a transaction are pending until the transaction's marker reaches
the group's ``__consumer_offsets`` partition; a load replays them the same way (Kafka's
OffsetMetadataManager replay of transactional records and end-transaction markers).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest

from pybroker.broker.groups.coordinator import CommitEntry, CoordinatorConfig, GroupCoordinator
from pybroker.protocol.errors import ErrorCode, KafkaError

E = ErrorCode
PID, EPOCH = 4000, 2


class Timer:
    def cancel(self) -> None:
        pass


class Scheduler:
    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> Timer:
        return Timer()


class TxnStore:
    """Records as a log: (key, value, producer id or -1, marker or None)."""

    def __init__(self) -> None:
        self.log: dict[int, list[tuple[Any, Any, int, bool | None]]] = defaultdict(list)
        self.fail: ErrorCode | None = None

    def append(self, partition: int, records: Any) -> None:
        self.log[partition] += [(k, v, -1, None) for k, v in records]

    def append_transactional(self, partition, records, producer_id, epoch, verified):  # noqa: ANN001, ANN201
        if self.fail is not None:
            raise KafkaError("refused", self.fail)
        self.log[partition] += [(k, v, producer_id, None) for k, v in records]

    def marker(self, partition: int, producer_id: int, commit: bool) -> None:
        self.log[partition].append((None, None, producer_id, commit))

    def read(self, partition: int) -> Any:
        return [(k, v) for k, v, pid, m in self.log[partition] if m is None and pid < 0]

    def read_entries(self, partition: int) -> Any:
        return list(self.log[partition])


def make(store: TxnStore) -> GroupCoordinator:
    c = GroupCoordinator(
        CoordinatorConfig(offsets_topic_partitions=4), store, Scheduler(), lambda: 1
    )
    c.set_owned({0, 1, 2, 3}, "id", 4)
    return c


@pytest.fixture
def store() -> TxnStore:
    return TxnStore()


def entries(*offsets: int) -> list[CommitEntry]:
    return [CommitEntry("t", p, o, -1, "m") for p, o in enumerate(offsets)]


def committed(c: GroupCoordinator, group: str) -> dict[int, int]:
    _, data = c.fetch_offsets(group, None)
    return {p: om.offset for _, parts in data for p, om in parts if om is not None}


def test_offsets_become_visible_when_the_transaction_commits(store: TxnStore) -> None:
    c = make(store)
    part = c.partition_for("g")
    assert c.commit_transactional_offsets("g", PID, EPOCH, "", None, -1, entries(5, 7), True) == [
        E.none,
        E.none,
    ]
    assert committed(c, "g") == {}
    assert c.has_pending_txn_offset("g", "t", 0) and not c.has_pending_txn_offset("g", "t", 9)
    c.on_transaction_completed(PID, (part + 1) % 4, True)  # another partition: nothing
    assert committed(c, "g") == {}
    store.marker(part, PID, True)
    c.on_transaction_completed(PID, part, True)
    assert committed(c, "g") == {0: 5, 1: 7}
    assert not c.has_pending_txn_offset("g", "t", 0)
    # an aborted transaction leaves the committed offsets alone
    c.commit_transactional_offsets("g", PID, EPOCH, "", None, -1, entries(9), True)
    store.marker(part, PID, False)
    c.on_transaction_completed(PID, part, False)
    assert committed(c, "g") == {0: 5, 1: 7}
    # a reload replays the same history
    again = make(store)
    assert committed(again, "g") == {0: 5, 1: 7}
    assert again.pending_txn_offsets == {}


def test_open_transactions_stay_pending_across_a_load(store: TxnStore) -> None:
    c = make(store)
    c.commit_transactional_offsets("g", PID, EPOCH, "", None, -1, entries(3), True)
    again = make(store)
    assert committed(again, "g") == {} and again.has_pending_txn_offset("g", "t", 0)
    again.on_transaction_completed(PID, again.partition_for("g"), True)
    assert committed(again, "g") == {0: 3}


def test_group_checks_and_append_errors(store: TxnStore) -> None:
    c = make(store)
    assert c.commit_transactional_offsets("g", PID, EPOCH, "", None, 3, entries(1), True) == [
        E.illegal_generation
    ]
    assert c.commit_transactional_offsets("", PID, EPOCH, "", None, -1, entries(1), True) == [
        E.invalid_group_id
    ]
    store.fail = E.invalid_producer_epoch
    assert c.commit_transactional_offsets("g", PID, EPOCH, "", None, -1, entries(1), True) == [
        E.invalid_producer_epoch
    ]
    store.fail = E.not_enough_replicas
    assert c.commit_transactional_offsets("g", PID, EPOCH, "", None, -1, entries(1), True) == [
        E.coordinator_not_available
    ]
    assert c.pending_txn_offsets == {} and "g" not in c.groups
