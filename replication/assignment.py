"""Replica placement for new topics and partitions: Kafka's AdminUtils.assignReplicasToBrokers.

Round-robin over the brokers sorted by id, the first replica of partition p at broker
(p + start) and the others shifted so that followers spread evenly; with racks on every
broker the list is first arranged to alternate racks and a replica is skipped onto the
next broker while a rack (or broker) without a replica remains. ``start`` and ``shift``
are random in Kafka; callers may fix them (tests, or to extend an existing topic).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from pybroker.protocol.errors import ErrorCode, KafkaError


def _replica_index(first: int, shift: int, j: int, n: int) -> int:
    return (first + 1 + (shift + j) % (n - 1)) % n


def rack_alternated(brokers: Mapping[int, str]) -> list[int]:
    """Brokers ordered rack by rack in turn (Kafka's getRackAlternatedBrokerList)."""
    by_rack: dict[str, list[int]] = {}
    for broker_id in sorted(brokers):
        by_rack.setdefault(brokers[broker_id], []).append(broker_id)
    racks = sorted(by_rack)
    iters = {r: iter(by_rack[r]) for r in racks}
    out: list[int] = []
    i = 0
    while len(out) < len(brokers):
        nxt = next(iters[racks[i]], None)
        if nxt is not None:
            out.append(nxt)
        i = (i + 1) % len(racks)
    return out


def assign_replicas(
    brokers: Mapping[int, str | None],
    num_partitions: int,
    replication_factor: int,
    *,
    start_partition: int = 0,
    start_index: int | None = None,
    shift: int | None = None,
    rng: random.Random | None = None,
) -> dict[int, list[int]]:
    """partition -> replica list (the first is the preferred leader)."""
    if replication_factor <= 0:
        raise KafkaError(
            "Replication factor must be larger than 0.", ErrorCode.invalid_replication_factor
        )
    if replication_factor > len(brokers):
        raise KafkaError(
            f"Replication factor: {replication_factor} larger than available brokers: "
            f"{len(brokers)}.",
            ErrorCode.invalid_replication_factor,
        )
    rng = rng or random.Random()
    racks = {b: r for b, r in brokers.items() if r is not None}
    rack_aware = len(racks) == len(brokers) and len(set(racks.values())) > 1
    ordered: Sequence[int] = rack_alternated(racks) if rack_aware else sorted(brokers)
    n = len(ordered)
    start = rng.randrange(n) if start_index is None else start_index
    next_shift = rng.randrange(n) if shift is None else shift
    num_racks = len(set(racks.values())) if rack_aware else 1
    out: dict[int, list[int]] = {}
    pid = max(start_partition, 0)
    for _ in range(num_partitions):
        if pid > 0 and pid % n == 0:
            next_shift += 1
        first = (pid + start) % n
        leader = ordered[first]
        replicas = [leader]
        if not rack_aware:
            replicas += [
                ordered[_replica_index(first, next_shift, j, n)]
                for j in range(replication_factor - 1)
            ]
        else:
            used_racks = {racks[leader]}
            used = {leader}
            k = 0
            for _ in range(replication_factor - 1):
                while True:
                    b = ordered[_replica_index(first, next_shift * num_racks, k, n)]
                    k += 1
                    if (racks[b] not in used_racks or len(used_racks) == num_racks) and (
                        b not in used or len(used) == n
                    ):
                        replicas.append(b)
                        used_racks.add(racks[b])
                        used.add(b)
                        break
        out[pid] = replicas
        pid += 1
    return out
