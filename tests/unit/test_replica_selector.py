"""KIP-392's rack-aware replica selection, as Kafka's RackAwareReplicaSelector decides."""

from __future__ import annotations

from pybroker.replication.replica_selector import (
    LEADER_SELECTOR,
    RACK_AWARE_SELECTOR,
    ReplicaView,
    candidate_views,
    preferred_read_replica,
)

LEADER = ReplicaView(1, "a", 100, 0)


def test_no_rack_or_no_match_reads_from_the_leader() -> None:
    followers = [ReplicaView(2, "b", 100, 0)]
    assert preferred_read_replica(RACK_AWARE_SELECTOR, None, LEADER, followers) is None
    assert preferred_read_replica(RACK_AWARE_SELECTOR, "", LEADER, followers) is None
    assert preferred_read_replica(RACK_AWARE_SELECTOR, "z", LEADER, followers) is None


def test_the_leader_wins_in_its_own_rack() -> None:
    followers = [ReplicaView(2, "a", 100, 0)]
    assert preferred_read_replica(RACK_AWARE_SELECTOR, "a", LEADER, followers) is None


def test_a_follower_in_the_clients_rack_is_preferred() -> None:
    followers = [ReplicaView(2, "b", 90, 50), ReplicaView(3, "c", 100, 0)]
    assert preferred_read_replica(RACK_AWARE_SELECTOR, "b", LEADER, followers) == 2
    assert preferred_read_replica(RACK_AWARE_SELECTOR, "c", LEADER, followers) == 3


def test_among_several_the_furthest_then_most_recently_caught_up() -> None:
    followers = [
        ReplicaView(2, "b", 90, 0),
        ReplicaView(3, "b", 100, 500),
        ReplicaView(4, "b", 100, 20),
    ]
    assert preferred_read_replica(RACK_AWARE_SELECTOR, "b", LEADER, followers) == 4


def test_other_selectors_always_read_from_the_leader() -> None:
    followers = [ReplicaView(2, "b", 100, 0)]
    assert preferred_read_replica(None, "b", LEADER, followers) is None
    assert preferred_read_replica(LEADER_SELECTOR, "b", LEADER, followers) is None


def test_candidates_are_in_sync_followers_covering_the_offset() -> None:
    racks = {2: "b", 3: "b", 4: "b", 5: "b"}
    followers = [
        (2, 0, 100, 990),  # in the ISR, covers 50: a candidate
        (3, 0, 40, 990),  # behind the fetch offset
        (4, 60, 100, 990),  # its log starts after the fetch offset
        (5, 0, 100, 990),  # not in the ISR
    ]
    views = candidate_views(
        followers, isr=[1, 2, 3, 4], fetch_offset=50, now_ms=1000, rack_of=racks.get
    )
    assert views == [ReplicaView(2, "b", 100, 10)]
