"""Reassignment, ElectLeaders and auto leader rebalance decisions of the ZooKeeper-mode
controller (pure given the cached view): KIP-455's RS = TRS + ORS and completion once
the targets are in sync, KIP-460 elections and checkAndTriggerAutoLeaderRebalance."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from kio.schema.errors import ErrorCode

from pybroker.replication.election import (
    PREFERRED,
    UNCLEAN,
    ElectionResult,
    imbalanced_partitions,
    requested_election,
)
from pybroker.replication.reassignment import ReplicaAssignment, completed_state
from pybroker.replication.zk_controller import ZkController
from pybroker.replication.zk_data import PartitionStateZnode, TopicAssignment
from pybroker.replication.zk_store import (
    ElectionRequest,
    decode_election_request,
    decode_reassignments,
    encode_election_request,
    encode_reassignments,
)


@dataclass
class FakeCache:
    registrations: dict[int, object]
    assignments: dict[str, TopicAssignment]
    states: dict[tuple[str, int], PartitionStateZnode] = field(default_factory=dict)
    shutting_down: frozenset[int] = frozenset()


def state(leader: int, epoch: int, isr: tuple[int, ...], version: int = 3) -> PartitionStateZnode:
    return PartitionStateZnode(leader, epoch, isr, 1, version)


def controller(
    live: set[int],
    assignment: TopicAssignment,
    states: dict[int, PartitionStateZnode],
    percent: int = 10,
) -> ZkController:
    cache = FakeCache(
        {b: object() for b in live},
        {assignment.topic: assignment},
        {(assignment.topic, p): s for p, s in states.items()},
    )
    return ZkController(
        1,
        None,  # type: ignore[arg-type]
        cache,  # type: ignore[arg-type]
        lambda _topic: False,
        leader_imbalance_percent=percent,
    )


# ------------------------------------------------------------------ ReplicaAssignment


def test_reassign_puts_the_target_first_and_records_adding_and_removing() -> None:
    ra = ReplicaAssignment((1, 2)).reassign_to([2, 3])
    assert ra == ReplicaAssignment((2, 3, 1), (3,), (1,))
    assert ra.origin == (2, 1) and ra.target == (2, 3) and ra.in_progress


def test_a_new_reassignment_starts_from_the_original_replicas() -> None:
    moving = ReplicaAssignment((2, 3, 1), (3,), (1,))
    assert moving.reassign_to([2, 4]) == ReplicaAssignment((2, 4, 1), (4,), (1,))


def test_cancel_reverts_to_the_original_replicas() -> None:
    moving = ReplicaAssignment((2, 3, 1), (3,), (1,))
    assert moving.reassign_to(moving.origin) == ReplicaAssignment((2, 1))


def test_reordering_is_not_a_reassignment_in_progress() -> None:
    assert ReplicaAssignment((1, 2)).reassign_to([2, 1]) == ReplicaAssignment((2, 1))


# ------------------------------------------------------------------ completion


def test_completion_waits_until_every_target_is_in_sync() -> None:
    ra = ReplicaAssignment((2, 3, 1), (3,), (1,))
    assert completed_state(ra, state(1, 4, (1, 2)), {1, 2, 3}) is None


def test_completion_moves_leadership_to_an_in_sync_target() -> None:
    ra = ReplicaAssignment((2, 3, 1), (3,), (1,))
    assert completed_state(ra, state(1, 4, (1, 2, 3)), {1, 2, 3}) == state(2, 5, (2, 3))


def test_completion_keeps_a_leader_that_stays_without_an_epoch_bump() -> None:
    ra = ReplicaAssignment((2, 3, 1), (3,), (1,))
    assert completed_state(ra, state(2, 4, (2, 1, 3)), {1, 2, 3}) == state(2, 4, (2, 3))


def test_completion_needs_a_live_target_to_lead() -> None:
    ra = ReplicaAssignment((3, 1), (3,), (1,))
    assert completed_state(ra, state(1, 4, (1, 3)), {1}) is None


def test_controller_completes_a_reassignment_in_one_write() -> None:
    a = TopicAssignment("t", None, {0: (2, 3, 1), 1: (1, 2)}, {0: (3,)}, {0: (1,)}, zk_version=7)
    c = controller({1, 2, 3}, a, {0: state(1, 4, (1, 2, 3)), 1: state(1, 0, (1, 2))})
    ((topic, (new, states)),) = c.decide_reassignments().items()
    assert topic == "t"
    assert new.partitions == {0: (2, 3), 1: (1, 2)}
    assert dict(new.adding) == {} and dict(new.removing) == {} and new.zk_version == 7
    assert states == {0: state(2, 5, (2, 3))}


def test_controller_waits_for_the_new_replica() -> None:
    a = TopicAssignment("t", None, {0: (2, 3, 1)}, {0: (3,)}, {0: (1,)})
    c = controller({1, 2, 3}, a, {0: state(1, 4, (1, 2))})
    assert c.decide_reassignments() == {}
    assert c.decide() == ({}, {})  # and nothing else changes meanwhile


def test_cancelled_replica_leaves_the_isr() -> None:
    a = TopicAssignment("t", None, {0: (2, 1)})
    c = controller({1, 2, 3}, a, {0: state(1, 4, (1, 2, 3))})
    assert c.decide() == ({}, {("t", 0): state(1, 4, (1, 2))})


def test_leader_that_left_the_assignment_is_replaced_cleanly() -> None:
    a = TopicAssignment("t", None, {0: (2, 1)})
    c = controller({1, 2, 3}, a, {0: state(3, 4, (3, 1, 2))})
    assert c.decide() == ({}, {("t", 0): state(2, 5, (1, 2))})


# ------------------------------------------------------------------ ElectLeaders


def test_requested_elections() -> None:
    live = {1, 2, 3}
    assert requested_election(PREFERRED, (1, 2), 1, (1, 2), live)[0] == "not_needed"
    assert requested_election(PREFERRED, (1, 2), 2, (1, 2), live) == ("elected", 1, (1, 2))
    assert requested_election(PREFERRED, (1, 2), 2, (2,), live)[0] == "unavailable"
    assert requested_election(PREFERRED, (1, 2), 2, (1, 2), {2})[0] == "unavailable"
    assert requested_election(UNCLEAN, (1, 2), 2, (2,), live)[0] == "not_needed"
    assert requested_election(UNCLEAN, (1, 2), -1, (1,), {2}) == ("elected", 2, (2,))
    assert requested_election(UNCLEAN, (1, 2), -1, (1, 2), {2}) == ("elected", 2, (2,))
    assert requested_election(UNCLEAN, (1, 2), -1, (1,), {3})[0] == "unavailable"


def test_controller_elections_with_errors_as_kafka() -> None:
    a = TopicAssignment("t", None, {0: (1, 2), 1: (1, 2), 2: (1, 2)})
    c = controller(
        {1, 2},
        a,
        {0: state(2, 3, (1, 2)), 1: state(1, 3, (1, 2)), 2: state(2, 3, (2,))},
    )
    wanted = [("t", 0), ("t", 1), ("t", 2), ("t", 9), ("u", 0)]
    updates, results = c.decide_elections(PREFERRED, wanted)
    assert updates == {("t", 0): state(1, 4, (1, 2))}
    assert [(tp, r.error_code) for tp, r in results.items()] == [
        (("t", 0), ErrorCode.none),
        (("t", 1), ErrorCode.election_not_needed),
        (("t", 2), ErrorCode.preferred_leader_not_available),
        (("t", 9), ErrorCode.unknown_topic_or_partition),
        (("u", 0), ErrorCode.unknown_topic_or_partition),
    ]
    assert results[("u", 0)].error_message == "No such topic as u"
    assert results[("t", 9)].error_message == "No such partition as t-9"
    # every partition: only those that needed an election are reported
    _, every = c.decide_elections(PREFERRED, None)
    assert sorted(every) == [("t", 0), ("t", 2)]


def test_unclean_election_only_when_asked_and_only_without_a_live_leader() -> None:
    a = TopicAssignment("t", None, {0: (1, 2)})
    c = controller({2}, a, {0: state(-1, 5, (1,))})
    assert c.decide() == ({}, {})  # unclean.leader.election.enable=false: stays offline
    updates, results = c.decide_elections(PREFERRED, [("t", 0)])
    assert (
        updates == {} and results[("t", 0)].error_code == ErrorCode.preferred_leader_not_available
    )
    updates, results = c.decide_elections(UNCLEAN, [("t", 0)])
    assert updates == {("t", 0): state(2, 6, (2,))}
    assert results[("t", 0)].error_code == ErrorCode.none


def test_election_request_round_trips_through_json() -> None:
    r = ElectionRequest(1, (("t", 0), ("u", 3)))
    assert decode_election_request(encode_election_request(r)) == r
    answered = ElectionRequest(0, None, (ElectionResult("t", 0, 84, None),))
    assert decode_election_request(encode_election_request(answered)) == answered


# ------------------------------------------------------------------ auto rebalance


def test_imbalance_above_the_percentage_triggers_preferred_elections() -> None:
    assignments = {("t", p): (1, 2) for p in range(10)} | {("t", 10): (2, 1)}
    leaders = {tp: (1, (1, 2)) for tp in assignments}
    leaders[("t", 0)] = (2, (1, 2))  # 1 of broker 1's 10: 10%, not above 10%
    assert imbalanced_partitions(assignments, leaders, {1, 2}, 10) == [("t", 10)]
    leaders[("t", 1)] = (2, (2,))  # 20%, but t-1's preferred replica is not in sync
    assert imbalanced_partitions(assignments, leaders, {1, 2}, 10) == [("t", 0), ("t", 10)]
    assert imbalanced_partitions(assignments, leaders, {1, 2}, 100) == []


def test_controller_rebalance_moves_leadership_back() -> None:
    a = TopicAssignment("t", None, {0: (1, 2), 1: (2, 1)})
    c = controller({1, 2}, a, {0: state(2, 3, (1, 2)), 1: state(2, 0, (2, 1))})
    assert c.decide_rebalance() == {("t", 0): state(1, 4, (1, 2))}
    c = controller({1, 2}, a, {0: state(2, 3, (1, 2)), 1: state(2, 0, (2, 1))}, percent=100)
    assert c.decide_rebalance() == {}


# ------------------------------------------------------------------ /admin/reassign_partitions


def test_legacy_znode_round_trips() -> None:
    moves = {("t", 0): (2, 3), ("u", 1): (1,)}
    data = encode_reassignments(moves)
    assert json.loads(data) == {
        "version": 1,
        "partitions": [
            {"topic": "t", "partition": 0, "replicas": [2, 3]},
            {"topic": "u", "partition": 1, "replicas": [1]},
        ],
    }
    assert decode_reassignments(data) == moves


def test_legacy_moves_start_keep_and_finish() -> None:
    a = TopicAssignment("t", None, {0: (1, 2), 1: (2, 3, 1), 2: (3, 1)}, {1: (3,)}, {1: (1,)})
    c = controller({1, 2, 3}, a, {})
    moves = {
        ("t", 0): (2, 3),  # starts
        ("t", 1): (2, 3),  # under way
        ("t", 2): (3, 1),  # done
        ("t", 7): (1,),  # unknown partition: dropped
        ("t", 3): (),  # dropped
    }
    starts, keep = c.decide_legacy_reassignments(moves)
    assert keep == {("t", 0): (2, 3), ("t", 1): (2, 3)}
    new = starts["t"]
    assert new.partitions[0] == (2, 3, 1) and new.adding[0] == (3,) and new.removing[0] == (1,)
    assert new.partitions[1] == (2, 3, 1) and new.partitions[2] == (3, 1)
    _, keep = c.decide_legacy_reassignments({("t", 0): (2, 9), ("t", 2): (1, 1)})
    assert keep == {}  # an unregistered broker, a duplicate: dropped
