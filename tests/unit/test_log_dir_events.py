"""Offline replicas (KIP-112 in cluster mode): the controller's decisions and the znode."""

from __future__ import annotations

from pybroker.replication.log_dir_events import OfflineReplicas, decode_offline, encode_offline
from pybroker.replication.zk_controller import ZkController
from pybroker.replication.zk_data import PartitionStateZnode, TopicAssignment
from tests.unit.test_zk_controller_decisions import FakeCache


def decide(
    states: dict[int, PartitionStateZnode], offline: dict[tuple[str, int], frozenset[int]]
) -> dict:
    cache = FakeCache(
        {b: object() for b in (1, 2, 3)},
        {"t": TopicAssignment("t", None, {0: (1, 2, 3), 1: (1, 2, 3)})},
        {("t", p): s for p, s in states.items()},
    )
    controller = ZkController(1, None, cache, lambda topic: False)  # type: ignore[arg-type]
    controller.offline_replicas = offline
    return controller.decide()[1]


def state(leader: int, epoch: int, isr: tuple[int, ...]) -> PartitionStateZnode:
    return PartitionStateZnode(leader, epoch, isr, 1, 3)


def test_offline_leader_replica_loses_leadership_and_isr_of_that_partition_only() -> None:
    updates = decide(
        {0: state(1, 4, (1, 2, 3)), 1: state(1, 2, (1, 2, 3))}, {("t", 0): frozenset({1})}
    )
    assert updates == {("t", 0): state(2, 5, (2, 3))}  # t-1 on broker 1 is unaffected


def test_offline_follower_replica_leaves_the_isr() -> None:
    updates = decide({0: state(2, 4, (1, 2, 3))}, {("t", 0): frozenset({3})})
    assert updates == {("t", 0): state(2, 4, (1, 2))}


def test_sole_offline_replica_makes_the_partition_offline() -> None:
    updates = decide({0: state(1, 4, (1,))}, {("t", 0): frozenset({1})})
    assert updates == {("t", 0): state(-1, 5, (1,))}


def test_offline_replica_is_not_isr_eligible_at_the_leader() -> None:
    offline = OfflineReplicas()
    offline.remote = {("t", 0): frozenset({3})}
    eligible = offline.isr_eligible(("t", 0), lambda r: True)
    assert [eligible(r) for r in (1, 2, 3)] == [True, True, False]
    assert offline.isr_eligible(("t", 1), lambda r: True)(3)


def test_znode_round_trip() -> None:
    data = encode_offline(2, ["/d/b"], [("t", 1), ("a", 0)])
    assert decode_offline(data) == (2, [("a", 0), ("t", 1)])
