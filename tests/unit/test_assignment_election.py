"""Replica placement and leader election: Kafka's vectors and invariants."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from pybroker.protocol.errors import ErrorCode, KafkaError
from pybroker.replication.assignment import assign_replicas, rack_alternated
from pybroker.replication.election import (
    controlled_shutdown_election,
    offline_election,
    preferred_election,
)


def test_round_robin_matches_kafka_admin_test() -> None:
    """AdminTest.testReplicaAssignment (brokers 0-4, 10 partitions, RF 3, start 0)."""
    brokers = {b: None for b in range(5)}
    got = assign_replicas(brokers, 10, 3, start_index=0, shift=0)
    assert got == {
        0: [0, 1, 2],
        1: [1, 2, 3],
        2: [2, 3, 4],
        3: [3, 4, 0],
        4: [4, 0, 1],
        5: [0, 2, 3],
        6: [1, 3, 4],
        7: [2, 4, 0],
        8: [3, 0, 1],
        9: [4, 1, 2],
    }


def test_rack_alternated_list_and_assignment_match_kafka() -> None:
    """AdminRackAwareTest.testGetRackAlternatedBrokerListAndAssignReplicasToBrokers."""
    racks = {0: "rack1", 1: "rack3", 2: "rack3", 3: "rack2", 4: "rack2", 5: "rack1"}
    assert rack_alternated(racks) == [0, 3, 1, 5, 4, 2]
    got = assign_replicas(racks, 7, 3, start_index=0, shift=0)
    assert [got[p] for p in range(7)] == [
        [0, 3, 1],
        [3, 1, 5],
        [1, 5, 4],
        [5, 4, 2],
        [4, 2, 0],
        [2, 0, 3],
        [0, 4, 2],
    ]


@pytest.mark.parametrize("seed", range(5))
def test_rack_aware_spreads_racks_and_balances_leaders(seed: int) -> None:
    racks = {b: f"r{b % 3}" for b in range(6)}
    got = assign_replicas(racks, 60, 3, rng=random.Random(seed))
    for replicas in got.values():
        assert len({racks[b] for b in replicas}) == 3
        assert len(set(replicas)) == 3
    leaders = Counter(r[0] for r in got.values())
    assert set(leaders.values()) == {10}
    assert set(Counter(b for r in got.values() for b in r).values()) == {30}


def test_replication_factor_bounds() -> None:
    with pytest.raises(KafkaError) as e:
        assign_replicas({1: None, 2: None}, 1, 3)
    assert e.value.code == ErrorCode.invalid_replication_factor
    with pytest.raises(KafkaError):
        assign_replicas({1: None}, 1, 0)


def test_extending_a_topic_continues_the_partition_numbering() -> None:
    got = assign_replicas(
        {b: None for b in range(3)}, 2, 2, start_partition=3, start_index=0, shift=0
    )
    assert sorted(got) == [3, 4]


def test_offline_election_prefers_assignment_order_within_live_isr() -> None:
    assert offline_election([1, 2, 3], [2, 3], live={1, 2, 3}, unclean_allowed=False) == (
        2,
        (2, 3),
        False,
    )
    assert offline_election([1, 2, 3], [1, 3], live={2, 3}, unclean_allowed=False) == (
        3,
        (3,),
        False,
    )


def test_offline_election_without_isr_stays_offline_unless_unclean() -> None:
    assert offline_election([1, 2, 3], [1], live={2, 3}, unclean_allowed=False) is None
    assert offline_election([1, 2, 3], [1], live={2, 3}, unclean_allowed=True) == (2, (2,), True)
    assert offline_election([1, 2], [1], live=set(), unclean_allowed=True) is None


def test_controlled_shutdown_and_preferred_election() -> None:
    assert controlled_shutdown_election([1, 2, 3], [1, 2, 3], {1, 2, 3}, {1}) == (2, (2, 3))
    assert controlled_shutdown_election([1, 2], [1], {1, 2}, {1}) is None
    assert preferred_election([2, 1], [1, 2], {1, 2}) == 2
    assert preferred_election([2, 1], [1], {1, 2}) is None
    assert preferred_election([2, 1], [1, 2], {1}) is None
