"""The classic group coordinator as a pure state machine: fake clock, in-memory log.

Each scenario follows Kafka's GroupCoordinator for the same sequence of requests; the
error codes and transitions are Kafka's (see broker/groups/coordinator.py).
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import struct
from collections.abc import Callable
from typing import Any

import pytest

from pybroker.broker.groups.coordinator import (
    CommitEntry,
    CoordinatorConfig,
    GroupCoordinator,
)
from pybroker.broker.groups.group import GroupState, JoinResult, SyncResult
from pybroker.broker.groups.records import (
    GroupMetadataKey,
    OffsetCommitKey,
    decode_group_metadata_value,
    decode_key,
    decode_offset_commit_value,
)
from pybroker.protocol.errors import ErrorCode, KafkaError

E = ErrorCode
PARTITIONS = 4


class Handle:
    def __init__(self, when: float, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when, self.fn, self.args, self.cancelled = when, fn, args, False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """Milliseconds that move only when a test says so; timers fire in order."""

    def __init__(self) -> None:
        self.now = 1_000_000
        self._heap: list[tuple[float, int, Handle]] = []
        self._seq = itertools.count()

    def __call__(self) -> int:
        return int(self.now)

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> Handle:
        h = Handle(self.now + delay * 1000, fn, args)
        heapq.heappush(self._heap, (h.when, next(self._seq), h))
        return h

    def advance(self, ms: float) -> None:
        target = self.now + ms
        while self._heap and self._heap[0][0] <= target:
            when, _, h = heapq.heappop(self._heap)
            self.now = max(self.now, when)
            if not h.cancelled:
                h.fn(*h.args)
        self.now = target


class MemoryStore:
    def __init__(self) -> None:
        self.logs: dict[int, list[tuple[bytes | None, bytes | None]]] = {}
        self.fail: ErrorCode | None = None

    def append(self, partition: int, records: Any) -> None:
        if self.fail is not None:
            raise KafkaError("injected", self.fail)
        self.logs.setdefault(partition, []).extend(records)

    def read(self, partition: int) -> Any:
        return list(self.logs.get(partition, []))


CONFIG = CoordinatorConfig(
    offsets_topic_partitions=PARTITIONS,
    initial_rebalance_delay_ms=100,
    min_session_timeout_ms=1000,
    max_session_timeout_ms=60_000,
    max_size=10,
    offsets_retention_ms=60_000,
    offsets_retention_check_interval_ms=10_000,
    offset_metadata_max_bytes=10,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def make(clock: FakeClock, store: MemoryStore, **overrides: Any) -> GroupCoordinator:
    config = dataclasses.replace(CONFIG, **overrides)
    c = GroupCoordinator(config, store, clock, clock)
    c.set_owned(set(range(PARTITIONS)), "topic-id", PARTITIONS)
    c.start()
    return c


@pytest.fixture
def coord(clock: FakeClock, store: MemoryStore) -> GroupCoordinator:
    return make(clock, store)


class Box:
    """Collects the (single) answer of a JoinGroup or SyncGroup."""

    def __init__(self) -> None:
        self.results: list[Any] = []

    def __call__(self, result: Any) -> None:
        self.results.append(result)

    @property
    def done(self) -> bool:
        return bool(self.results)

    @property
    def value(self) -> Any:
        assert len(self.results) == 1, self.results
        return self.results[0]


def join(
    c: GroupCoordinator,
    member_id: str = "",
    group: str = "g",
    instance: str | None = None,
    protocols: list[tuple[str, bytes]] | None = None,
    protocol_type: str = "consumer",
    session: int = 10_000,
    rebalance: int = 30_000,
    version: int = 5,
    client_id: str = "c",
) -> Box:
    box = Box()
    c.join_group(
        group,
        member_id,
        instance,
        version >= 4 and instance is None,
        version >= 9,
        client_id,
        "/127.0.0.1",
        rebalance,
        session,
        protocol_type,
        protocols if protocols is not None else [("range", b"meta-" + client_id.encode())],
        None,
        box,
    )
    return box


def sync(
    c: GroupCoordinator,
    member_id: str,
    generation: int,
    assignments: dict[str, bytes] | None = None,
    group: str = "g",
    instance: str | None = None,
) -> Box:
    box = Box()
    c.sync_group(group, generation, member_id, None, None, instance, assignments or {}, box)
    return box


def new_member(c: GroupCoordinator, clock: FakeClock, **kw: Any) -> str:
    """KIP-394 round: the first join answers MEMBER_ID_REQUIRED with an id."""
    first = join(c, **kw).value
    assert first.error == E.member_id_required
    return first.member_id


def settle(clock: FakeClock, boxes: list[Box], limit_ms: int = 10_000) -> None:
    """Advance through (possibly stretched) initial delays until every join is answered."""
    waited = 0
    while not all(b.done for b in boxes):
        assert waited < limit_ms, "joins not answered"
        clock.advance(CONFIG.initial_rebalance_delay_ms)
        waited += CONFIG.initial_rebalance_delay_ms


def stable_group(c: GroupCoordinator, clock: FakeClock, n: int, group: str = "g") -> list[str]:
    """n members, stable, member i assigned b'a<i>'; returns member ids (leader first)."""
    ids = [new_member(c, clock, group=group, client_id=f"c{i}") for i in range(n)]
    boxes = [join(c, m, group=group, client_id=f"c{i}") for i, m in enumerate(ids)]
    settle(clock, boxes)
    results: list[JoinResult] = [b.value for b in boxes]
    assert all(r.error == E.none for r in results)
    leader = results[0].leader
    gen = results[0].generation_id
    assignment = {m: f"a{i}".encode() for i, m in enumerate(ids)}
    syncs = [sync(c, m, gen, assignment if m == leader else None, group) for m in ids]
    assert all(s.value.error == E.none for s in syncs)
    assert c.groups[group].state == GroupState.STABLE
    return sorted(ids, key=lambda m: m != leader)


# ----------------------------------------------------------------- joining


def test_member_id_required_then_join_then_sync(coord: GroupCoordinator, clock: FakeClock) -> None:
    member = new_member(coord, clock, client_id="cli")
    assert member.startswith("cli-")
    box = join(coord, member, client_id="cli")
    assert not box.done  # held for group.initial.rebalance.delay.ms
    assert coord.groups["g"].state == GroupState.PREPARING_REBALANCE
    clock.advance(99)
    assert not box.done
    clock.advance(1)
    r: JoinResult = box.value
    assert (r.error, r.generation_id, r.leader, r.member_id) == (E.none, 1, member, member)
    assert r.protocol_name == "range" and r.protocol_type == "consumer"
    assert r.members == [(member, None, b"meta-cli")]
    assert coord.groups["g"].state == GroupState.COMPLETING_REBALANCE
    s: SyncResult = sync(coord, member, 1, {member: b"assigned"}).value
    assert (s.error, s.assignment, s.protocol_name) == (E.none, b"assigned", "range")
    assert coord.groups["g"].state == GroupState.STABLE


def test_version_below_4_joins_without_member_id_round(
    coord: GroupCoordinator, clock: FakeClock
) -> None:
    box = join(coord, version=3)
    clock.advance(100)
    assert box.value.error == E.none and box.value.member_id


def test_initial_delay_stretches_for_new_members(coord: GroupCoordinator, clock: FakeClock) -> None:
    a, b = (new_member(coord, clock, client_id=x) for x in "ab")
    ba = join(coord, a, client_id="a")
    clock.advance(80)
    bb = join(coord, b, client_id="b")  # a new member during the initial delay
    clock.advance(20)
    assert not ba.done  # delay restarted for another round
    clock.advance(100)
    assert ba.value.error == E.none and bb.value.error == E.none
    assert ba.value.generation_id == bb.value.generation_id == 1
    leader_view = [r for r in (ba.value, bb.value) if r.members]
    assert len(leader_view) == 1 and len(leader_view[0].members) == 2


def test_leader_sync_completes_followers(coord: GroupCoordinator, clock: FakeClock) -> None:
    ids = [new_member(coord, clock, client_id=f"c{i}") for i in range(3)]
    boxes = [join(coord, m, client_id=f"c{i}") for i, m in enumerate(ids)]
    settle(clock, boxes)
    leader = boxes[0].value.leader
    followers = [m for m in ids if m != leader]
    fsync = [sync(coord, m, 1) for m in followers]
    assert not any(b.done for b in fsync)  # wait for the leader
    lsync = sync(coord, leader, 1, {m: m.encode() for m in ids})
    for m, b in zip(followers, fsync, strict=True):
        assert b.value.assignment == m.encode()
    assert lsync.value.assignment == leader.encode()


def test_missing_assignment_is_empty(coord: GroupCoordinator, clock: FakeClock) -> None:
    ids = stable_group(coord, clock, 1)
    assert coord.groups["g"].members[ids[0]].assignment == b"a0"
    # A follower rejoining with the same metadata in Stable gets the generation back.
    r = join(coord, ids[0], client_id="c0").value
    assert r.error == E.none  # leader rejoin forces a rebalance; completes at once
    assert r.generation_id == 2
    s = sync(coord, ids[0], 2, {}).value
    assert s.error == E.none and s.assignment == b""


def test_protocol_selection_takes_common_protocol(
    coord: GroupCoordinator, clock: FakeClock
) -> None:
    a = new_member(coord, clock, client_id="a")
    b = new_member(coord, clock, client_id="b")
    ba = join(coord, a, protocols=[("range", b"1"), ("roundrobin", b"2")], client_id="a")
    bb = join(coord, b, protocols=[("roundrobin", b"3"), ("sticky", b"4")], client_id="b")
    settle(clock, [ba, bb])
    assert ba.value.protocol_name == bb.value.protocol_name == "roundrobin"
    leader = ba.value if ba.value.members else bb.value
    assert sorted(md for _, _, md in leader.members) == [b"2", b"3"]


def test_inconsistent_protocols_are_refused(coord: GroupCoordinator, clock: FakeClock) -> None:
    assert join(coord, protocols=[], version=3).value.error == E.inconsistent_group_protocol
    assert join(coord, protocol_type="", version=3).value.error == E.inconsistent_group_protocol
    ids = stable_group(coord, clock, 1)
    group = coord.groups["g"]
    gen = group.generation_id
    # A new member with another protocol type, or no protocol in common.
    r = join(coord, protocol_type="connect", version=3).value
    assert r.error == E.inconsistent_group_protocol
    r = join(coord, protocols=[("other", b"")], version=3).value
    assert r.error == E.inconsistent_group_protocol
    r = join(coord, ids[0], protocols=[("other", b"")]).value
    assert r.error == E.inconsistent_group_protocol
    assert group.state == GroupState.STABLE and group.generation_id == gen
    assert list(group.members) == ids


def test_session_timeout_bounds(coord: GroupCoordinator) -> None:
    assert join(coord, session=999).value.error == E.invalid_session_timeout
    assert join(coord, session=60_001).value.error == E.invalid_session_timeout
    assert join(coord, group="").value.error == E.invalid_group_id


def test_unknown_member_of_unknown_group(coord: GroupCoordinator) -> None:
    assert join(coord, "nobody").value.error == E.unknown_member_id
    assert sync(coord, "nobody", 1).value.error == E.unknown_member_id
    assert coord.heartbeat("g", "nobody", None, 1) == E.unknown_member_id


def test_not_coordinator_for_partitions_not_owned(clock: FakeClock, store: MemoryStore) -> None:
    c = GroupCoordinator(CONFIG, store, clock, clock)
    assert join(c).value.error == E.not_coordinator
    assert c.heartbeat("g", "m", None, 1) == E.not_coordinator
    assert c.commit_offsets("g", "", None, -1, [CommitEntry("t", 0, 1, -1, "")], 8) == [
        E.not_coordinator
    ]


def test_group_max_size(clock: FakeClock, store: MemoryStore) -> None:
    c = make(clock, store, max_size=2)
    stable_group(c, clock, 2)
    r = join(c, version=3).value
    assert r.error == E.group_max_size_reached and r.member_id == ""
    assert len(c.groups["g"].members) == 2


# ----------------------------------------------------------------- fencing


def test_heartbeat_errors(coord: GroupCoordinator, clock: FakeClock) -> None:
    leader, follower = stable_group(coord, clock, 2)
    assert coord.heartbeat("g", follower, None, 1) == E.none
    assert coord.heartbeat("g", follower, None, 0) == E.illegal_generation
    assert coord.heartbeat("g", "ghost", None, 1) == E.unknown_member_id
    join(coord, leader, client_id="c0")  # the leader rejoins: a rebalance starts
    assert coord.heartbeat("g", follower, None, 1) == E.rebalance_in_progress
    assert sync(coord, follower, 1).value.error == E.rebalance_in_progress


def test_commit_fencing(coord: GroupCoordinator, clock: FakeClock) -> None:
    leader, follower = stable_group(coord, clock, 2)
    entry = [CommitEntry("t", 0, 10, -1, "")]
    assert coord.commit_offsets("g", follower, None, 1, entry, 8) == [E.none]
    assert coord.commit_offsets("g", follower, None, 0, entry, 8) == [E.illegal_generation]
    assert coord.commit_offsets("g", "ghost", None, 1, entry, 8) == [E.unknown_member_id]
    # Not a member, no generation: only an empty group takes such a commit.
    assert coord.commit_offsets("g", "", None, -1, entry, 8) == [E.unknown_member_id]
    join(coord, leader, client_id="c0")
    # PreparingRebalance: the follower commits before it rejoins, and that commit counts.
    assert coord.commit_offsets("g", follower, None, 1, entry, 8) == [E.none]
    # Unknown group with a generation: v9+ says so, older versions ILLEGAL_GENERATION.
    assert coord.commit_offsets("nope", "m", None, 3, entry, 9) == [E.group_id_not_found]
    assert coord.commit_offsets("nope", "m", None, 3, entry, 8) == [E.illegal_generation]
    assert "nope" not in coord.groups
    assert coord.commit_offsets("", "", None, -1, entry, 8) == [E.invalid_group_id]
    # Only the good commit is stored.
    assert coord.groups["g"].offsets[("t", 0)].offset == 10


def test_oversize_metadata_is_refused_per_partition(coord: GroupCoordinator) -> None:
    entries = [CommitEntry("t", 0, 1, 4, "x" * 10), CommitEntry("t", 1, 2, 4, "x" * 11)]
    assert coord.commit_offsets("simple", "", None, -1, entries, 8) == [
        E.none,
        E.offset_metadata_too_large,
    ]
    error, data = coord.fetch_offsets("simple", [("t", [0, 1])])
    assert error == E.none
    ((_, parts),) = data
    assert parts[0][1] is not None and parts[0][1].metadata == "x" * 10
    assert parts[0][1].leader_epoch == 4
    assert parts[1][1] is None


def test_store_failure_maps_to_kafka_codes(coord: GroupCoordinator, store: MemoryStore) -> None:
    entry = [CommitEntry("t", 0, 1, -1, None)]
    store.fail = E.message_too_large
    assert coord.commit_offsets("s", "", None, -1, entry, 8) == [E.invalid_commit_offset_size]
    store.fail = E.not_enough_replicas
    assert coord.commit_offsets("s", "", None, -1, entry, 8) == [E.coordinator_not_available]
    store.fail = E.not_leader_or_follower
    assert coord.commit_offsets("s", "", None, -1, entry, 8) == [E.not_coordinator]
    assert "s" not in coord.groups


def test_static_member_rejoin_keeps_assignment(coord: GroupCoordinator, clock: FakeClock) -> None:
    box = join(coord, instance="inst-1", client_id="x")  # static: no MEMBER_ID_REQUIRED
    clock.advance(100)
    old = box.value.member_id
    assert old.startswith("inst-1-")
    assert sync(coord, old, 1, {old: b"mine"}).value.assignment == b"mine"
    group = coord.groups["g"]
    # The same instance restarts with no member id: it takes over, no rebalance.
    r = join(coord, instance="inst-1", client_id="x").value
    assert r.error == E.none and r.member_id != old and r.generation_id == 1
    assert r.leader == old  # the old leader id: a v<9 client must not run an assignment
    assert group.state == GroupState.STABLE
    assert sync(coord, r.member_id, 1, instance="inst-1").value.assignment == b"mine"
    # The old incarnation is fenced.
    assert coord.heartbeat("g", old, "inst-1", 1) == E.fenced_instance_id
    assert sync(coord, old, 1, instance="inst-1").value.error == E.fenced_instance_id
    entry = [CommitEntry("t", 0, 1, -1, "")]
    assert coord.commit_offsets("g", old, "inst-1", 1, entry, 8) == [E.fenced_instance_id]
    assert coord.heartbeat("g", r.member_id, "inst-1", 1) == E.none
    # Group metadata persisted with the new member id.
    key, value = store_last_group_record(coord)
    assert key == GroupMetadataKey("g")
    assert [m.member_id for m in value.members] == [r.member_id]


def store_last_group_record(coord: GroupCoordinator) -> tuple[Any, Any]:
    records = coord.store.read(coord.partition_for("g"))  # type: ignore[attr-defined]
    for k, v in reversed(records):
        key = decode_key(k)
        if isinstance(key, GroupMetadataKey):
            return key, decode_group_metadata_value(v)
    raise AssertionError("no group metadata record")


def test_static_member_v9_leader_skips_assignment(
    coord: GroupCoordinator, clock: FakeClock
) -> None:
    box = join(coord, instance="i", version=9)
    clock.advance(100)
    old = box.value.member_id
    sync(coord, old, 1, {old: b"x"})
    r = join(coord, instance="i", version=9).value
    assert r.error == E.none and r.skip_assignment and r.leader == r.member_id
    assert r.members == [(r.member_id, "i", b"meta-c")]


def test_static_member_survives_rebalance_timeout(
    coord: GroupCoordinator, clock: FakeClock
) -> None:
    static = join(coord, instance="s", client_id="s", rebalance=5000)
    dyn_id = new_member(coord, clock, client_id="d")
    dyn = join(coord, dyn_id, client_id="d", rebalance=5000)
    settle(clock, [static, dyn])
    s_id = static.value.member_id
    leader = static.value.leader
    sync(coord, s_id, 1, {s_id: b"s", dyn_id: b"d"} if leader == s_id else None, instance="s")
    sync(coord, dyn_id, 1, {s_id: b"s", dyn_id: b"d"} if leader == dyn_id else None)
    # The dynamic member rejoins; the static one is silent but within its session.
    join(coord, dyn_id, client_id="d", rebalance=5000)
    clock.advance(5000)
    group = coord.groups["g"]
    assert s_id in group.members  # static members are not dropped at the rebalance timeout


# ----------------------------------------------------------------- expiry and leaving


def test_heartbeat_expiry_removes_member_and_rebalances(
    coord: GroupCoordinator, clock: FakeClock
) -> None:
    a, b = stable_group(coord, clock, 2)
    clock.advance(4000)
    assert coord.heartbeat("g", a, None, 1) == E.none
    assert coord.heartbeat("g", b, None, 1) == E.none  # b's last heartbeat
    clock.advance(4000)
    assert coord.heartbeat("g", a, None, 1) == E.none
    clock.advance(4000)
    assert coord.heartbeat("g", a, None, 1) == E.none
    group = coord.groups["g"]
    assert b in group.members
    clock.advance(2000)  # 10 s after b's last heartbeat
    assert b not in group.members
    assert group.state == GroupState.PREPARING_REBALANCE
    assert coord.heartbeat("g", a, None, 1) == E.rebalance_in_progress
    r = join(coord, a, client_id="c0").value
    assert r.error == E.none and r.generation_id == 2 and [m for m, _, _ in r.members] == [a]


def test_new_member_that_never_rejoins_is_dropped(
    coord: GroupCoordinator, clock: FakeClock
) -> None:
    a, b = stable_group(coord, clock, 2)
    ba = join(coord, a, client_id="c0")  # b never rejoins but keeps heartbeating
    for _ in range(5):
        clock.advance(5000)
        assert coord.heartbeat("g", b, None, 1) == E.rebalance_in_progress
        assert not ba.done
    clock.advance(5000)  # the rebalance timeout (30 s) drops b
    r = ba.value
    assert r.error == E.none and r.generation_id == 2
    assert list(coord.groups["g"].members) == [a]
    assert coord.heartbeat("g", b, None, 1) == E.unknown_member_id


def test_pending_member_expires(coord: GroupCoordinator, clock: FakeClock) -> None:
    pending = new_member(coord, clock, session=5000)
    assert pending in coord.groups["g"].pending_members
    clock.advance(5000)
    assert pending not in coord.groups["g"].pending_members
    assert join(coord, pending).value.error == E.unknown_member_id


def test_pending_sync_expiry(coord: GroupCoordinator, clock: FakeClock) -> None:
    ids = [new_member(coord, clock, client_id=f"c{i}", rebalance=4000) for i in range(2)]
    boxes = [join(coord, m, client_id=f"c{i}", rebalance=4000) for i, m in enumerate(ids)]
    settle(clock, boxes)
    leader = boxes[0].value.leader
    follower = next(m for m in ids if m != leader)
    sync(coord, leader, 1, {m: b"x" for m in ids})
    assert coord.groups["g"].state == GroupState.STABLE
    clock.advance(4000)  # the follower never synced
    assert follower not in coord.groups["g"].members
    assert coord.groups["g"].state == GroupState.PREPARING_REBALANCE


def test_leave_group(coord: GroupCoordinator, clock: FakeClock) -> None:
    a, b = stable_group(coord, clock, 2)
    assert coord.leave_group("g", [(b, None, "bye"), ("ghost", None, None)]) == (
        E.none,
        [E.none, E.unknown_member_id],
    )
    assert coord.groups["g"].state == GroupState.PREPARING_REBALANCE
    assert coord.leave_group("g", [(a, None, None)]) == (E.none, [E.none])
    assert coord.groups["g"].state == GroupState.EMPTY
    assert coord.groups["g"].generation_id == 2
    # Kafka 4.1: an unknown group fails each member, not the request.
    assert coord.leave_group("unknown", [(a, None, None)]) == (E.none, [E.unknown_member_id])


def test_leave_by_instance_id(coord: GroupCoordinator, clock: FakeClock) -> None:
    box = join(coord, instance="inst")
    clock.advance(100)
    assert coord.leave_group("g", [("", "inst", None)]) == (E.none, [E.none])
    assert box.value.member_id not in coord.groups["g"].members
    assert coord.leave_group("g", [("", "inst", None)]) == (E.none, [E.unknown_member_id])


def test_member_leaving_during_join_answers_waiters(
    coord: GroupCoordinator, clock: FakeClock
) -> None:
    a, b = stable_group(coord, clock, 2)
    ba = join(coord, a, client_id="c0")
    assert not ba.done
    coord.leave_group("g", [(b, None, None)])
    assert ba.value.error == E.none and ba.value.generation_id == 2


# ----------------------------------------------------------------- offsets, persistence


def test_offsets_and_groups_survive_reload(clock: FakeClock, store: MemoryStore) -> None:
    c = make(clock, store)
    leader, follower = stable_group(c, clock, 2)
    entries = [CommitEntry("t", 0, 100, 3, "meta"), CommitEntry("t", 1, 200, -1, None)]
    assert c.commit_offsets("g", follower, None, 1, entries, 9) == [E.none, E.none]
    assert c.commit_offsets("simple", "", None, -1, [CommitEntry("u", 0, 5, -1, "")], 9) == [E.none]
    c.shutdown()
    c2 = make(clock, store)
    g = c2.groups["g"]
    assert g.state == GroupState.STABLE and g.generation_id == 1
    assert set(g.members) == {leader, follower} and g.leader_id == leader
    assert g.members[follower].assignment == b"a1"
    assert g.offsets[("t", 0)].offset == 100 and g.offsets[("t", 0)].leader_epoch == 3
    assert g.offsets[("t", 0)].metadata == "meta" and g.offsets[("t", 1)].metadata == ""
    assert c2.heartbeat("g", follower, None, 1) == E.none
    assert c2.groups["simple"].protocol_type is None
    assert c2.groups["simple"].offsets[("u", 0)].offset == 5
    # Members that do not come back expire after their session.
    clock.advance(6000)
    assert c2.heartbeat("g", follower, None, 1) == E.none
    clock.advance(4000)
    assert follower in c2.groups["g"].members and leader not in c2.groups["g"].members


def test_records_are_kafka_records(coord: GroupCoordinator, store: MemoryStore) -> None:
    coord.commit_offsets("s", "", None, -1, [CommitEntry("t", 2, 7, 1, "m")], 8)
    ((key, value),) = store.read(coord.partition_for("s"))
    assert decode_key(key) == OffsetCommitKey("s", "t", 2)
    v = decode_offset_commit_value(value)
    assert (v.offset, v.leader_epoch, v.metadata, v.expire_timestamp) == (7, 1, "m", -1)
    assert value[:2] == b"\x00\x03"  # OffsetCommitValue v3


def test_fetch_all_offsets_and_unknown_group(coord: GroupCoordinator) -> None:
    entries = [CommitEntry("b", 1, 1, -1, ""), CommitEntry("a", 0, 2, -1, "")]
    coord.commit_offsets("s", "", None, -1, entries, 8)
    error, data = coord.fetch_offsets("s", None)
    assert error == E.none and [(t, [p for p, _ in ps]) for t, ps in data] == [
        ("a", [0]),
        ("b", [1]),
    ]
    assert coord.fetch_offsets("none", None) == (E.none, [])
    assert coord.fetch_offsets("none", [("a", [0])]) == (E.none, [("a", [(0, None)])])
    assert coord.fetch_offsets("", None)[0] == E.invalid_group_id


def test_offset_expiration_for_empty_group(clock: FakeClock, store: MemoryStore) -> None:
    c = make(clock, store)
    a, b = stable_group(c, clock, 2)
    c.commit_offsets("g", a, None, 1, [CommitEntry("t", 0, 1, -1, "")], 8)
    for _ in range(14):  # 70 s, beyond retention, but the group is active: kept
        clock.advance(5000)
        for m in (a, b):
            assert c.heartbeat("g", m, None, 1) == E.none
    assert c.groups["g"].offsets
    c.leave_group("g", [(a, None, None), (b, None, None)])
    assert c.groups["g"].state == GroupState.EMPTY
    clock.advance(50_000)  # empty for less than the retention
    assert c.groups["g"].offsets
    clock.advance(20_000)  # the next check after 60 s of emptiness expires, then deletes
    assert "g" not in c.groups
    c2 = make(clock, store)
    assert "g" not in c2.groups


def test_simple_group_offsets_expire_by_commit_time(clock: FakeClock, store: MemoryStore) -> None:
    c = make(clock, store)
    c.commit_offsets("s", "", None, -1, [CommitEntry("t", 0, 1, -1, "")], 8)
    clock.advance(30_000)
    c.commit_offsets("s", "", None, -1, [CommitEntry("t", 1, 1, -1, "")], 8)
    clock.advance(40_000)
    assert set(c.groups["s"].offsets) == {("t", 1)}
    clock.advance(30_000)
    assert "s" not in c.groups


def test_delete_groups(coord: GroupCoordinator, clock: FakeClock) -> None:
    stable_group(coord, clock, 1)
    coord.commit_offsets("s", "", None, -1, [CommitEntry("t", 0, 1, -1, "")], 8)
    assert coord.delete_groups(["g", "s", "nope", "s"]) == {
        "g": E.non_empty_group,
        "s": E.group_id_not_found,  # the second "s" sees it gone
        "nope": E.group_id_not_found,
    }
    assert "s" not in coord.groups


def subscription(*topics: str) -> bytes:
    """ConsumerProtocolSubscription v0: version, topics, null user data."""
    out = struct.pack(">hi", 0, len(topics))
    for t in topics:
        out += struct.pack(">h", len(t)) + t.encode()
    return out + struct.pack(">i", -1)


def test_delete_offsets(coord: GroupCoordinator, clock: FakeClock) -> None:
    box = join(coord, protocols=[("range", subscription("t"))], version=3)
    clock.advance(100)
    m = box.value.member_id
    sync(coord, m, 1, {m: b""})
    coord.commit_offsets(
        "g", m, None, 1, [CommitEntry("t", 0, 1, -1, ""), CommitEntry("u", 0, 1, -1, "")], 8
    )
    # A consumer group may drop offsets of topics it does not subscribe to (KIP-496).
    assert coord.delete_offsets("g", [("t", [0]), ("u", [0])]) == (
        E.none,
        [("t", [(0, E.group_subscribed_to_topic)]), ("u", [(0, E.none)])],
    )
    assert set(coord.groups["g"].offsets) == {("t", 0)}
    # Any other non-empty group may not.
    box = join(coord, group="conn", protocol_type="connect", version=3)
    clock.advance(100)
    assert coord.delete_offsets("conn", [("t", [0])]) == (E.non_empty_group, [])
    coord.commit_offsets("s", "", None, -1, [CommitEntry("t", 0, 1, -1, "")], 8)
    assert coord.delete_offsets("s", [("t", [0, 1])]) == (
        E.none,
        [("t", [(0, E.none), (1, E.none)])],
    )
    assert not coord.groups["s"].offsets
    assert coord.delete_offsets("nope", [("t", [0])]) == (E.group_id_not_found, [])


def test_list_and_describe(coord: GroupCoordinator, clock: FakeClock) -> None:
    stable_group(coord, clock, 1, group="g1")
    coord.commit_offsets("s", "", None, -1, [CommitEntry("t", 0, 1, -1, "")], 8)
    error, groups = coord.list_groups()
    assert error == E.none
    assert [(g.group_id, g.protocol_type, g.state) for g in groups] == [
        ("g1", "consumer", "Stable"),
        ("s", "", "Empty"),
    ]
    assert [g.group_id for g in coord.list_groups(["empty"])[1]] == ["s"]
    assert coord.list_groups(types=["consumer"])[1] == []
    assert coord.describe_group("missing") == (E.group_id_not_found, None)
    error, group = coord.describe_group("g1")
    assert error == E.none and group is not None and group.protocol_name == "range"


def test_shutdown_answers_waiters(coord: GroupCoordinator, clock: FakeClock) -> None:
    m = new_member(coord, clock)
    box = join(coord, m)
    coord.shutdown()
    assert box.value.error == E.not_coordinator
    assert join(coord).value.error == E.coordinator_not_available


def test_retried_join_answers_the_superseded_one(coord: GroupCoordinator, clock: FakeClock) -> None:
    a, b, c = stable_group(coord, clock, 3)
    ja = join(coord, a, client_id="c0")  # the leader rejoins: a rebalance starts
    first = join(coord, b, client_id="c1")  # waits for c
    retry = join(coord, b, client_id="c1")  # b's client gave up and retried
    assert first.value.error == E.rebalance_in_progress
    assert not retry.done and not ja.done
    join(coord, c, client_id="c2")
    assert retry.value.error == E.none and retry.value.generation_id == 2
    assert coord.groups["g"].num_members_awaiting_join == 0


def test_unreadable_partition_is_not_served(clock: FakeClock, store: MemoryStore) -> None:
    c = make(clock, store)
    c.commit_offsets("s", "", None, -1, [CommitEntry("t", 0, 1, -1, "")], 8)
    c.shutdown()
    p = c.partition_for("s")

    class Broken(MemoryStore):
        def read(self, partition: int) -> Any:
            if partition == p:
                raise OSError("disk on fire")
            return super().read(partition)

    broken = Broken()
    broken.logs = store.logs
    c2 = make(clock, broken)
    assert p not in c2.owned and "s" not in c2.groups
    assert c2.fetch_offsets("s", None)[0] == E.not_coordinator
    assert len(c2.owned) == PARTITIONS - 1


# ----------------------------------------------------------------- commits while rebalancing
# Kafka 4's ClassicGroup.validateOffsetCommit: only CompletingRebalance refuses a commit of
# the current generation; members commit their positions in PreparingRebalance as they
# rejoin (eager clients before revoking), and those commits must be kept.


def completing_rebalance(coord: GroupCoordinator, clock: FakeClock) -> tuple[str, str]:
    """Two members, both rejoined: generation 2 awaits the leader's SyncGroup."""
    a, b = stable_group(coord, clock, 2)
    ja, jb = join(coord, a, client_id="c0"), join(coord, b, client_id="c1")
    assert ja.value.error == E.none and jb.value.generation_id == 2
    assert coord.groups["g"].state == GroupState.COMPLETING_REBALANCE
    return a, b


def test_commit_in_preparing_rebalance_is_kept(coord: GroupCoordinator, clock: FakeClock) -> None:
    a, b = stable_group(coord, clock, 2)
    join(coord, a, client_id="c0")  # a new rebalance: b must rejoin
    group = coord.groups["g"]
    assert group.state == GroupState.PREPARING_REBALANCE
    # Both the rejoined member and the one about to rejoin commit generation 1.
    assert coord.commit_offsets("g", b, None, 1, [CommitEntry("t", 1, 7, -1, "")], 8) == [E.none]
    assert coord.commit_offsets("g", a, None, 1, [CommitEntry("t", 0, 5, -1, "")], 8) == [E.none]
    assert group.offsets[("t", 1)].offset == 7 and group.offsets[("t", 0)].offset == 5
    # A stale generation or an unknown member is still refused.
    entry = [CommitEntry("t", 1, 99, -1, "")]
    assert coord.commit_offsets("g", b, None, 0, entry, 8) == [E.illegal_generation]
    assert coord.commit_offsets("g", b, None, 2, entry, 8) == [E.illegal_generation]
    assert coord.commit_offsets("g", "ghost", None, 1, entry, 8) == [E.unknown_member_id]
    assert coord.commit_offsets("g", "", None, -1, entry, 8) == [E.unknown_member_id]
    assert group.offsets[("t", 1)].offset == 7
    # The commits stay through the rebalance.
    jb = join(coord, b, client_id="c1")
    assert jb.value.generation_id == 2
    error, data = coord.fetch_offsets("g", [("t", [0, 1])])
    assert error == E.none
    assert [(p, om.offset) for p, om in data[0][1] if om is not None] == [(0, 5), (1, 7)]


def test_commit_in_completing_rebalance_is_refused(
    coord: GroupCoordinator, clock: FakeClock
) -> None:
    a, b = completing_rebalance(coord, clock)
    entry = [CommitEntry("t", 0, 3, -1, "")]
    # The new generation, before its assignment: the client syncs and retries.
    assert coord.commit_offsets("g", b, None, 2, entry, 8) == [E.rebalance_in_progress]
    assert coord.commit_offsets("g", a, None, 2, entry, 8) == [E.rebalance_in_progress]
    # The generation just ended is stale, whatever the state.
    assert coord.commit_offsets("g", b, None, 1, entry, 8) == [E.illegal_generation]
    assert coord.commit_offsets("g", "ghost", None, 2, entry, 8) == [E.unknown_member_id]
    assert ("t", 0) not in coord.groups["g"].offsets
    # Once synced, the group is Stable and the same commit passes.
    leader = a if coord.groups["g"].leader_id == a else b
    sync(coord, leader, 2, {a: b"x", b: b"y"})
    assert coord.groups["g"].state == GroupState.STABLE
    assert coord.commit_offsets("g", b, None, 2, entry, 8) == [E.none]


def test_commit_to_empty_group(coord: GroupCoordinator, clock: FakeClock) -> None:
    a, b = stable_group(coord, clock, 2)
    coord.leave_group("g", [(a, None, None), (b, None, None)])
    group = coord.groups["g"]
    assert group.state == GroupState.EMPTY and group.generation_id == 2
    entry = [CommitEntry("t", 0, 4, -1, "")]
    # Admin / manual-assignment commits (no generation) are what an empty group takes,
    # even naming a member id.
    assert coord.commit_offsets("g", "", None, -1, entry, 8) == [E.none]
    assert coord.commit_offsets("g", a, None, -1, entry, 8) == [E.none]
    # A generation names a member, and the group has none.
    assert coord.commit_offsets("g", a, None, 2, entry, 8) == [E.unknown_member_id]
    assert coord.commit_offsets("g", "", None, 2, entry, 8) == [E.unknown_member_id]


def test_commit_by_static_member(coord: GroupCoordinator, clock: FakeClock) -> None:
    box = join(coord, instance="s1", client_id="x")
    clock.advance(100)
    member = box.value.member_id
    sync(coord, member, 1, {member: b"mine"})
    entry = [CommitEntry("t", 0, 1, -1, "")]
    assert coord.commit_offsets("g", member, "s1", 1, entry, 8) == [E.none]
    assert coord.commit_offsets("g", "other", "s1", 1, entry, 8) == [E.fenced_instance_id]
    assert coord.commit_offsets("g", member, "s2", 1, entry, 8) == [E.unknown_member_id]
    assert coord.commit_offsets("g", member, "s1", 0, entry, 8) == [E.illegal_generation]


def test_commit_keeps_the_session_alive(coord: GroupCoordinator, clock: FakeClock) -> None:
    """OffsetMetadataManager.commitOffset reschedules the member's heartbeat in Stable and
    PreparingRebalance: a member busy committing is not expired."""
    a, b = stable_group(coord, clock, 2)
    entry = [CommitEntry("t", 0, 1, -1, "")]
    for _ in range(3):  # 18 s of commits and no heartbeat from b (session 10 s)
        clock.advance(6000)
        coord.heartbeat("g", a, None, 1)
        assert coord.commit_offsets("g", b, None, 1, entry, 8) == [E.none]
    assert b in coord.groups["g"].members
    join(coord, a, client_id="c0")  # PreparingRebalance: b is yet to rejoin
    clock.advance(6000)
    assert coord.commit_offsets("g", b, None, 1, entry, 8) == [E.none]
    clock.advance(6000)
    assert b in coord.groups["g"].members
    clock.advance(4000)  # 10 s after b's last commit
    assert b not in coord.groups["g"].members


def test_classic_group_commit_validation_per_state() -> None:
    """ClassicGroup.validateOffsetCommit directly, including Dead and TxnOffsetCommit."""
    from pybroker.broker.groups.group import ClassicGroup, Member

    def error(group: ClassicGroup, *args: Any, transactional: bool = False) -> ErrorCode:
        try:
            group.validate_offset_commit(*args, transactional=transactional)
        except KafkaError as exc:
            return exc.code
        return E.none

    g = ClassicGroup("g", 0)
    g.add(Member("m", None, "c", "h", 1000, 1000, "consumer", [("range", b"")]))
    g.generation_id = 3
    expected = {
        GroupState.EMPTY: E.none,
        GroupState.PREPARING_REBALANCE: E.none,
        GroupState.COMPLETING_REBALANCE: E.rebalance_in_progress,
        GroupState.STABLE: E.none,
        GroupState.DEAD: E.coordinator_not_available,
    }
    for state, code in expected.items():
        g.state = state
        assert error(g, "m", None, 3) == code, state
        # TxnOffsetCommit: no state refuses it but Dead.
        txn = E.coordinator_not_available if state == GroupState.DEAD else E.none
        assert error(g, "m", None, 3, transactional=True) == txn, state
        assert error(g, "", None, -1, transactional=True) == txn, state
        if state != GroupState.DEAD:
            assert error(g, "m", None, 2) == E.illegal_generation, state
            assert error(g, "m", None, 2, transactional=True) == E.illegal_generation, state
            assert error(g, "x", None, 3, transactional=True) == E.unknown_member_id, state
            simple = E.none if state == GroupState.EMPTY else E.unknown_member_id
            assert error(g, "", None, -1) == simple, state
