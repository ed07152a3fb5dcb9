"""Online migration between the classic and the consumer protocol, as a pure state machine
(fake clock, memory log): upgrade when a KIP-848 member joins a classic group, classic
members served JoinGroup/SyncGroup/Heartbeat by the consumer group (with their own session,
join and sync timeouts), persistence of their classic metadata, and the downgrade when the
last consumer-protocol member leaves. The wire answers are checked against Kafka 4.1 by
tests/differential/test_groups.py; here the states between them are checked."""

from __future__ import annotations

from typing import Any

import pytest

from pybroker.broker.groups.consumer_group import ConsumerGroup, MemberState
from pybroker.broker.groups.consumer_protocol import parse_assignment
from pybroker.broker.groups.consumer_records import ClassicMemberMetadata
from pybroker.broker.groups.coordinator import CommitEntry, GroupCoordinator
from pybroker.broker.groups.group import ClassicGroup, GroupState
from pybroker.protocol.errors import ErrorCode
from tests.differential.group_support import assignment, subscription
from tests.unit.test_consumer_group_coordinator import build, group_of, hb, parts
from tests.unit.test_groups_coordinator import Box, FakeClock, MemoryStore, join, settle, sync

E = ErrorCode
SESSION = 10_000
REBALANCE = 30_000
PROTOCOLS = [("range", subscription("a")), ("roundrobin", subscription("a"))]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def coord(clock: FakeClock, store: MemoryStore) -> GroupCoordinator:
    return build(clock, store)


def classic_join(c: GroupCoordinator, member_id: str, name: str) -> Box:
    return join(
        c, member_id, protocols=PROTOCOLS, session=SESSION, rebalance=REBALANCE, client_id=name
    )


def classic_group(c: GroupCoordinator, clock: FakeClock) -> tuple[str, str]:
    """Two classic consumers at generation 1: c1 owns a-0 and a-1, c2 a-2 and a-3."""
    ids = [classic_join(c, "", n).value.member_id for n in ("c1", "c2")]
    boxes = [classic_join(c, m, n) for m, n in zip(ids, ("c1", "c2"), strict=True)]
    settle(clock, boxes)
    assert [b.value.generation_id for b in boxes] == [1, 1]
    leader = boxes[0].value.leader
    plan = {ids[0]: assignment({"a": [0, 1]}), ids[1]: assignment({"a": [2, 3]})}
    for m in ids:
        assert sync(c, m, 1, plan if m == leader else None).value.error == E.none
    entries = [CommitEntry("a", 0, 5, -1, "")]
    assert c.commit_offsets("g", ids[0], None, 1, entries, 8) == [E.none]
    return ids[0], ids[1]


def synced_partitions(c: GroupCoordinator, member_id: str, generation: int) -> set[int]:
    box = Box()
    c.sync_group("g", generation, member_id, "consumer", "range", None, {}, box)
    result = box.value
    assert result.error == E.none, result
    return set(parse_assignment(result.assignment).get("a", ()))


def upgraded(c: GroupCoordinator, clock: FakeClock) -> tuple[str, str]:
    c1, c2 = classic_group(c, clock)
    r = hb(c, "k1", 0, topics=["a"])
    assert (r.error, r.member_epoch, parts(r)) == (E.none, 2, set())  # a-x still held
    return c1, c2


def test_a_consumer_member_upgrades_a_classic_group(
    coord: GroupCoordinator, clock: FakeClock
) -> None:
    c1, c2 = upgraded(coord, clock)
    group = group_of(coord)
    assert (group.group_epoch, group.assignment_epoch) == (2, 2)
    first, second = group.members[c1], group.members[c2]
    # The classic members keep their generation and partitions, as Stable members.
    assert (first.member_epoch, first.state, parts(first.assigned)) == (
        1,
        MemberState.STABLE,
        {("a", 0), ("a", 1)},
    )
    assert first.classic == ClassicMemberMetadata(SESSION, tuple(PROTOCOLS))
    assert (second.client_id, parts(second.assigned)) == ("c2", {("a", 2), ("a", 3)})
    # Each of the three gets a share of a's 4 partitions in the new target.
    targets = [parts(group.target[m]) for m in (c1, c2, "k1")]
    assert sorted(len(t) for t in targets) == [1, 1, 2]
    assert set().union(*targets) == {("a", p) for p in range(4)}
    # The offsets stay; the classic APIs see a consumer group.
    assert coord.fetch_offsets("g", [("a", [0])])[1][0][1][0][1].offset == 5  # type: ignore[union-attr]
    assert coord.describe_group("g") == (E.group_id_not_found, None)


def test_classic_members_rejoin_and_sync_inside_the_consumer_group(
    coord: GroupCoordinator, clock: FakeClock
) -> None:
    c1, c2 = upgraded(coord, clock)
    group = group_of(coord)
    # Told to rejoin; a wrong generation or an unknown member is refused.
    assert coord.heartbeat("g", c1, None, 1) == E.rebalance_in_progress
    assert coord.heartbeat("g", c1, None, 5) == E.illegal_generation
    assert coord.heartbeat("g", "nobody", None, 1) == E.unknown_member_id
    assert coord.heartbeat("g", "k1", None, 2) == E.unknown_member_id  # not a classic member
    # An eager member rejoins owning nothing: it moves to the group epoch at once.
    for m, name in ((c1, "c1"), (c2, "c2")):
        result = classic_join(coord, m, name).value
        assert (result.error, result.generation_id) == (E.none, 2)
        assert (result.protocol_type, result.protocol_name, result.leader) == (
            "consumer",
            "range",
            "",
        )
        assert synced_partitions(coord, m, 2) == {p for _, p in parts(group.target[m])}
        assert coord.heartbeat("g", m, None, 2) == E.none
    # Partitions released, the consumer-protocol member gets its share.
    r = hb(coord, "k1", 2, owned=[])
    assert parts(r) == parts(group.target["k1"]) and parts(r)
    assert group.state.value == "Stable"
    # Classic members commit with their generation, as OffsetCommit v8 sends it.
    entries = [CommitEntry("a", 0, 9, -1, "")]
    assert coord.commit_offsets("g", c1, None, 2, entries, 8) == [E.none]
    assert coord.commit_offsets("g", c1, None, 1, entries, 8) == [E.illegal_generation]


def test_classic_metadata_survives_a_reload(
    coord: GroupCoordinator, store: MemoryStore, clock: FakeClock
) -> None:
    c1, _ = upgraded(coord, clock)
    before = group_of(coord)
    again = build(clock, store)
    after = group_of(again)
    assert after.members == before.members
    assert after.members[c1].classic == ClassicMemberMetadata(SESSION, tuple(PROTOCOLS))
    assert ("session", "g", c1) in again.consumer.timers
    assert classic_join(again, c1, "c1").value.generation_id == 2


def test_classic_members_have_their_own_timeouts(coord: GroupCoordinator, clock: FakeClock) -> None:
    c1, c2 = upgraded(coord, clock)
    group = group_of(coord)
    # c2 joins but never syncs: fenced after its rebalance timeout. c1 keeps heartbeating
    # after its join (told to rejoin) but never rejoins: fenced after the rebalance timeout.
    assert classic_join(coord, c2, "c2").value.error == E.none
    assert coord.heartbeat("g", c1, None, 1) == E.rebalance_in_progress
    for _ in range(REBALANCE // 5_000):
        clock.advance(5_000)
        hb(coord, "k1", group.members["k1"].member_epoch, owned=[])
        if c1 in group.members:
            coord.heartbeat("g", c1, None, 1)
    assert c1 not in group.members and c2 not in group.members
    assert list(group.members) == ["k1"]
    # A classic member whose session lapses goes too (its own session timeout, 10 s).
    k1_epoch = group.members["k1"].member_epoch
    m = classic_join(coord, "", "c3").value.member_id
    result = classic_join(coord, m, "c3").value
    assert result.error == E.none and m in group.members
    clock.advance(SESSION - 1_000)
    hb(coord, "k1", group.members["k1"].member_epoch, owned=[])
    assert m in group.members
    clock.advance(2_000)
    assert m not in group.members and group.group_epoch > k1_epoch


def test_the_last_consumer_member_leaving_downgrades_the_group(
    coord: GroupCoordinator, store: MemoryStore, clock: FakeClock
) -> None:
    c1, c2 = upgraded(coord, clock)
    epoch = group_of(coord).group_epoch
    targets = {m: {p for _, p in parts(group_of(coord).target[m])} for m in (c1, c2)}
    assert hb(coord, "k1", -1).error == E.none
    classic = coord.groups["g"]
    assert isinstance(classic, ClassicGroup)
    assert (classic.state, classic.generation_id, classic.protocol_name) == (
        GroupState.PREPARING_REBALANCE,
        epoch,
        "range",
    )
    assert set(classic.members) == {c1, c2}
    for m in (c1, c2):
        kept = parse_assignment(classic.members[m].assignment)
        assert set(kept.get("a", ())) == targets[m]
    assert coord.fetch_offsets("g", [("a", [0])])[1][0][1][0][1].offset == 5  # type: ignore[union-attr]
    # The members rejoin as a classic group and complete a rebalance.
    assert coord.heartbeat("g", c1, None, epoch) == E.rebalance_in_progress
    boxes = [classic_join(coord, c1, "c1"), classic_join(coord, c2, "c2")]
    settle(clock, boxes)
    assert {b.value.generation_id for b in boxes} == {epoch + 1}
    # What was written is a classic group: a reload finds one.
    again = build(clock, store)
    assert isinstance(again.groups["g"], ClassicGroup)
    assert set(again.groups["g"].members) == {c1, c2}


@pytest.mark.parametrize("policy", ["disabled", "downgrade"])
def test_no_upgrade_unless_the_policy_allows_it(
    clock: FakeClock, store: MemoryStore, policy: str
) -> None:
    coord = build(clock, store, migration_policy=policy)
    classic_group(coord, clock)
    r = hb(coord, "k1", 0, topics=["a"])
    assert (r.error, r.message) == (
        E.group_id_not_found,
        "Cannot upgrade classic group g to consumer group because the online upgrade is disabled.",
    )
    assert isinstance(coord.groups["g"], ClassicGroup)


def test_no_downgrade_unless_the_policy_allows_it(clock: FakeClock, store: MemoryStore) -> None:
    coord = build(clock, store, migration_policy="upgrade")
    c1, c2 = upgraded(coord, clock)
    assert hb(coord, "k1", -1).error == E.none
    group = coord.groups["g"]
    assert isinstance(group, ConsumerGroup) and set(group.members) == {c1, c2}


def test_a_classic_join_needs_a_protocol_every_classic_member_supports(
    coord: GroupCoordinator, clock: FakeClock
) -> None:
    c1, c2 = upgraded(coord, clock)
    other: list[Any] = [("sticky", subscription("a"))]
    box = join(coord, "", protocols=other, session=SESSION, client_id="c9")
    assert box.value.error == E.inconsistent_group_protocol
    box = join(coord, "", protocol_type="connect", protocols=PROTOCOLS, client_id="c9")
    assert box.value.error == E.inconsistent_group_protocol
    assert set(group_of(coord).members) == {c1, c2, "k1"}
    # One the classic members all support is enough.
    box = join(coord, "", protocols=[other[0], PROTOCOLS[1]], session=SESSION, client_id="c9")
    assert box.value.error == E.member_id_required


def test_a_classic_static_member_replacing_the_last_consumer_member_downgrades(
    coord: GroupCoordinator, store: MemoryStore, clock: FakeClock
) -> None:
    c1, c2 = classic_group(coord, clock)
    hb(coord, "k1", 0, topics=["a"], instance_id="ik")
    target = {p for _, p in parts(group_of(coord).target["k1"])}
    box = join(coord, "", instance="ik", protocols=PROTOCOLS, session=SESSION, client_id="k1")
    result = box.value
    assert (result.error, result.generation_id) == (E.none, 2)
    classic = coord.groups["g"]
    assert isinstance(classic, ClassicGroup)
    # No rebalance: the new member holds the replaced member's target at once.
    assert (classic.state, classic.generation_id) == (GroupState.STABLE, 2)
    assert set(classic.members) == {c1, c2, result.member_id}
    assert classic.static_members == {"ik": result.member_id}
    assert set(parse_assignment(classic.members[result.member_id].assignment)["a"]) == target
    again = build(clock, store)
    assert set(again.groups["g"].members) == {c1, c2, result.member_id}
