"""Which replica a consumer reads from (KIP-392, Kafka's ``replica.selector.class``).

A consumer that names its rack (``client.rack``, Fetch v11+) may be told by the leader
to fetch from an in-sync follower in that rack instead, so that reads stay inside a
datacenter or availability zone. Kafka's rules: only followers in the ISR whose log
covers the fetch offset are candidates (a lagging follower would hold the consumer
back); among the replicas in the client's rack the leader wins if it is one of them,
otherwise the one with the highest log end offset, then the most recently caught up.
Without a rack, or with no replica in it, the leader serves the fetch itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pybroker.config.broker_config import LEADER_REPLICA_SELECTOR as LEADER_SELECTOR
from pybroker.config.broker_config import RACK_AWARE_REPLICA_SELECTOR as RACK_AWARE_SELECTOR

__all__ = ["LEADER_SELECTOR", "RACK_AWARE_SELECTOR", "ReplicaView", "preferred_read_replica"]


@dataclass(frozen=True, slots=True)
class ReplicaView:
    broker_id: int
    rack: str | None
    log_end_offset: int
    time_since_caught_up_ms: int


def rack_aware_select(
    client_rack: str | None, leader: ReplicaView, followers: Iterable[ReplicaView]
) -> ReplicaView:
    """Kafka's RackAwareReplicaSelector.select: the replica the client should read from."""
    if not client_rack:
        return leader
    same_rack = [r for r in (leader, *followers) if r.rack == client_rack]
    if not same_rack:
        return leader
    if leader in same_rack:
        return leader
    return max(same_rack, key=lambda r: (r.log_end_offset, -r.time_since_caught_up_ms))


def preferred_read_replica(
    selector: str | None,
    client_rack: str | None,
    leader: ReplicaView,
    followers: Iterable[ReplicaView],
) -> int | None:
    """The follower to send the consumer to, or None when the leader should answer."""
    if selector != RACK_AWARE_SELECTOR:
        return None
    chosen = rack_aware_select(client_rack, leader, followers)
    return None if chosen.broker_id == leader.broker_id else chosen.broker_id


def candidate_views(
    followers: Iterable[tuple[int, int, int, int]],
    isr: Iterable[int],
    fetch_offset: int,
    now_ms: int,
    rack_of: Callable[[int], str | None],
) -> list[ReplicaView]:
    """Followers that may serve ``fetch_offset``: in the ISR, their log covering it.

    ``followers`` gives (broker id, log start offset, log end offset, last caught up ms)."""
    in_sync = set(isr)
    return [
        ReplicaView(broker_id, rack_of(broker_id), leo, now_ms - caught_up)
        for broker_id, start, leo, caught_up in followers
        if broker_id in in_sync and leo >= fetch_offset and 0 <= start <= fetch_offset
    ]
