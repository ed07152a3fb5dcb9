"""The controller's partition decisions, from a cached view of ZooKeeper (no I/O).

``ZkController.decide`` is pure given the cache: these are Kafka's election and ISR rules
(PartitionLeaderElectionAlgorithms, ReplicaStateMachine) as pybroker applies them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pybroker.replication.zk_controller import ZkController
from pybroker.replication.zk_data import PartitionStateZnode, TopicAssignment


@dataclass
class FakeCache:
    registrations: dict[int, object]
    assignments: dict[str, TopicAssignment]
    states: dict[tuple[str, int], PartitionStateZnode] = field(default_factory=dict)
    shutting_down: frozenset[int] = frozenset()


def decide(
    live: set[int],
    states: dict[int, PartitionStateZnode],
    replicas: tuple[int, ...] = (1, 2, 3),
    stopping: frozenset[int] = frozenset(),
    unclean: bool = False,
) -> tuple[dict, dict]:
    cache = FakeCache(
        {b: object() for b in live},
        {"t": TopicAssignment("t", None, {0: replicas})},
        {("t", p): s for p, s in states.items()},
        stopping,
    )
    controller = ZkController(1, None, cache, lambda topic: unclean)  # type: ignore[arg-type]
    return controller.decide()


def state(leader: int, epoch: int, isr: tuple[int, ...], version: int = 3) -> PartitionStateZnode:
    return PartitionStateZnode(leader, epoch, isr, 1, version)


def test_new_partition_leader_is_the_first_live_replica() -> None:
    creates, updates = decide({2, 3}, {})
    assert creates == {("t", 0): PartitionStateZnode(2, 0, (2, 3), -1)}
    assert updates == {}


def test_dead_leader_is_replaced_from_the_live_isr_in_assignment_order() -> None:
    _, updates = decide({2, 3}, {0: state(1, 4, (3, 1, 2))})
    assert updates == {("t", 0): state(2, 5, (3, 2))}


def test_dead_follower_leaves_the_isr_without_an_epoch_bump() -> None:
    _, updates = decide({1, 2}, {0: state(1, 4, (1, 2, 3))})
    assert updates == {("t", 0): state(1, 4, (1, 2))}


def test_nothing_to_do_when_all_is_well() -> None:
    assert decide({1, 2, 3}, {0: state(1, 4, (1, 2, 3))}) == ({}, {})


def test_no_live_isr_member_goes_offline_keeping_the_last_member() -> None:
    _, updates = decide({2, 3}, {0: state(1, 4, (1,))})
    assert updates == {("t", 0): state(-1, 5, (1,))}
    # and stays so (no rewrite) while it cannot be helped
    assert decide({2, 3}, {0: state(-1, 5, (1,))}) == ({}, {})


def test_offline_partition_returns_with_its_isr_member() -> None:
    _, updates = decide({1, 2, 3}, {0: state(-1, 5, (1,))})
    assert updates == {("t", 0): state(1, 6, (1,))}


def test_unclean_election_only_when_enabled() -> None:
    _, updates = decide({2, 3}, {0: state(-1, 5, (1,))}, unclean=True)
    assert updates == {("t", 0): state(2, 6, (2,))}


def test_stopping_leader_hands_over_and_leaves_the_isr() -> None:
    _, updates = decide({1, 2, 3}, {0: state(1, 4, (1, 2, 3))}, stopping=frozenset({1}))
    assert updates == {("t", 0): state(2, 5, (2, 3))}


def test_stopping_sole_isr_member_keeps_leading_until_it_stops() -> None:
    _, updates = decide({1, 2, 3}, {0: state(1, 4, (1,))}, stopping=frozenset({1}))
    assert updates == {}


def test_stopping_follower_leaves_the_isr() -> None:
    _, updates = decide({1, 2, 3}, {0: state(1, 4, (1, 2, 3))}, stopping=frozenset({3}))
    assert updates == {("t", 0): state(1, 4, (1, 2))}
