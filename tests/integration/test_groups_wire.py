"""Group and offset APIs over raw frames: every advertised version, and bad input.

Requests are built with kio (tests/support/wire.py), so a test sends exactly what it
means to, including what stock clients refuse to send. Expected answers are Kafka 4.x's
(KafkaApis in front of the classic group coordinator):

- OffsetCommit: ILLEGAL_GENERATION for a stale generation, UNKNOWN_MEMBER_ID for a member
  the group does not have, GROUP_ID_NOT_FOUND (v9+) or ILLEGAL_GENERATION (older) for a
  generation against a group that does not exist, OFFSET_METADATA_TOO_LARGE per partition
  above offset.metadata.max.bytes, UNKNOWN_TOPIC_OR_PARTITION / UNKNOWN_TOPIC_ID for
  partitions the cluster does not have.
- JoinGroup: INCONSISTENT_GROUP_PROTOCOL with no protocols, no protocol type, or a type /
  protocol set the group cannot take; INVALID_SESSION_TIMEOUT outside the broker's bounds;
  INVALID_GROUP_ID for an empty group id; MEMBER_ID_REQUIRED (v4+, KIP-394).
- None of these changes the group: generation, members and offsets stay as they were.
"""

from __future__ import annotations

import struct
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from kio.index import load_request_schema
from kio.schema.errors import ErrorCode as E

from pybroker.broker.groups.records import (
    GroupMetadataKey,
    OffsetCommitKey,
    decode_group_metadata_value,
    decode_key,
    decode_offset_commit_value,
    partition_for,
)
from pybroker.protocol.codec import build
from tests.support.broker import BrokerProcess
from tests.support.clients import confluent_create_topic
from tests.support.wire import KafkaWire

pytestmark = pytest.mark.timeout(120)

FIND_COORDINATOR, JOIN, HEARTBEAT, LEAVE, SYNC = 10, 11, 12, 13, 14
OFFSET_COMMIT, OFFSET_FETCH, DESCRIBE, LIST, DELETE, OFFSET_DELETE, METADATA = (
    8,
    9,
    15,
    16,
    42,
    47,
    3,
)
OVERRIDES = {
    "group.initial.rebalance.delay.ms": "50",
    "group.min.session.timeout.ms": "1000",
    "offsets.topic.num.partitions": "10",
}
SESSION_MS = 20_000


@pytest.fixture(scope="module")
def wbroker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(tmp_path_factory.mktemp("gwire") / "data", overrides=OVERRIDES).start()
    try:
        yield proc
    finally:
        if proc.proc is not None:
            proc.stop()


@pytest.fixture
def wire(wbroker: BrokerProcess) -> Iterator[KafkaWire]:
    with KafkaWire(port=wbroker.port, timeout=20) as w:
        yield w


def req(api_key: int, version: int, **fields: Any) -> Any:
    return build(load_request_schema(api_key, version), fields)


def subscription(*topics: str) -> bytes:
    out = struct.pack(">hi", 0, len(topics))
    for t in topics:
        out += struct.pack(">h", len(t)) + t.encode()
    return out + struct.pack(">i", -1)


def new_topic(broker: BrokerProcess, partitions: int = 2) -> str:
    topic = f"w-{uuid.uuid4().hex[:8]}"
    confluent_create_topic(broker.bootstrap, topic, partitions)
    return topic


def find(w: KafkaWire, group: str) -> None:
    r = w.request(req(FIND_COORDINATOR, 3, key=group, key_type=0))
    assert r.error_code == E.none, r


def join(
    w: KafkaWire,
    group: str,
    member_id: str = "",
    version: int = 5,
    protocols: list[tuple[str, bytes]] | None = None,
    protocol_type: str = "consumer",
    session: int = SESSION_MS,
    instance: str | None = None,
) -> Any:
    return w.request(
        req(
            JOIN,
            version,
            group_id=group,
            session_timeout=session,
            rebalance_timeout=10_000,
            member_id=member_id,
            group_instance_id=instance,
            protocol_type=protocol_type,
            protocols=[
                dict(name=n, metadata=m)
                for n, m in (protocols if protocols is not None else [("range", b"")])
            ],
        )
    )


def sync(
    w: KafkaWire,
    group: str,
    member_id: str,
    generation: int,
    assignments: dict[str, bytes] | None = None,
    version: int = 3,
    **extra: Any,
) -> Any:
    return w.request(
        req(
            SYNC,
            version,
            group_id=group,
            generation_id=generation,
            member_id=member_id,
            assignments=[dict(member_id=m, assignment=a) for m, a in (assignments or {}).items()],
            **extra,
        )
    )


def heartbeat(w: KafkaWire, group: str, member_id: str, generation: int, version: int = 3) -> Any:
    r = w.request(
        req(HEARTBEAT, version, group_id=group, generation_id=generation, member_id=member_id)
    )
    return r.error_code


def stable_member(w: KafkaWire, group: str, topic: str) -> tuple[str, int]:
    """One raw consumer-protocol member, joined and synced: (member id, generation)."""
    find(w, group)
    first = join(w, group, protocols=[("range", subscription(topic))])
    assert first.error_code == E.member_id_required
    joined = join(w, group, first.member_id, protocols=[("range", subscription(topic))])
    assert joined.error_code == E.none, joined
    assert joined.leader == joined.member_id
    answer = sync(w, group, joined.member_id, joined.generation_id, {joined.member_id: b"asg"})
    assert answer.error_code == E.none and answer.assignment == b"asg"
    return joined.member_id, joined.generation_id


def commit(
    w: KafkaWire,
    group: str,
    member_id: str,
    generation: int,
    topic: str,
    offsets: dict[int, tuple[int, str | None]],
    version: int = 8,
    **extra: Any,
) -> dict[int, Any]:
    r = w.request(
        req(
            OFFSET_COMMIT,
            version,
            group_id=group,
            generation_id_or_member_epoch=generation,
            member_id=member_id,
            topics=[
                dict(
                    name=topic,
                    partitions=[
                        dict(
                            partition_index=p,
                            committed_offset=o,
                            committed_leader_epoch=-1,
                            committed_metadata=m,
                        )
                        for p, (o, m) in offsets.items()
                    ],
                )
            ],
            **extra,
        )
    )
    ((t,),) = [r.topics]
    return {p.partition_index: p.error_code for p in t.partitions}


def fetch(w: KafkaWire, group: str, topic: str, partitions: list[int], version: int = 7) -> Any:
    r = w.request(
        req(
            OFFSET_FETCH,
            version,
            group_id=group,
            topics=[dict(name=topic, partition_indexes=partitions)],
        )
    )
    return {
        p.partition_index: (p.committed_offset, p.metadata, p.error_code)
        for t in r.topics
        for p in t.partitions
    }


def describe(w: KafkaWire, group: str, version: int = 5) -> Any:
    (g,) = w.request(req(DESCRIBE, version, groups=[group])).groups
    return g


# ---------------------------------------------------------------------- FindCoordinator


@pytest.mark.parametrize("version", range(7))
def test_find_coordinator_every_version(
    wbroker: BrokerProcess, wire: KafkaWire, version: int
) -> None:
    if version < 4:
        r = wire.request(req(FIND_COORDINATOR, version, key="g-any", key_type=0))
        assert (r.error_code, r.node_id, r.host, r.port) == (E.none, 0, "127.0.0.1", wbroker.port)
        if version >= 1:
            assert r.error_message == "NONE"
            # A transactional id: the leader of its __transaction_state partition.
            t = wire.request(req(FIND_COORDINATOR, version, key="txn", key_type=1))
            assert (t.error_code, t.node_id, t.port) == (E.none, 0, wbroker.port)
        return
    r = wire.request(req(FIND_COORDINATOR, version, key_type=0, coordinator_keys=["a", "b", ""]))
    assert [(c.key, c.error_code, c.node_id, c.port) for c in r.coordinators] == [
        (k, E.none, 0, wbroker.port) for k in ("a", "b", "")
    ]
    t = wire.request(req(FIND_COORDINATOR, version, key_type=1, coordinator_keys=["txn"]))
    assert [(c.key, c.error_code, c.node_id) for c in t.coordinators] == [("txn", E.none, 0)]
    if version >= 6:
        s = wire.request(req(FIND_COORDINATOR, version, key_type=2, coordinator_keys=["g:x:0"]))
        assert s.coordinators[0].error_code == E.invalid_request


def test_offsets_topic_is_internal_and_compacted(wbroker: BrokerProcess, wire: KafkaWire) -> None:
    find(wire, "make-sure-it-exists")
    r = wire.request(req(METADATA, 12, topics=[dict(name="__consumer_offsets")]))
    (t,) = r.topics
    assert t.error_code == E.none and t.is_internal and len(t.partitions) == 10
    d = wire.request(
        req(
            32,
            4,
            resources=[
                dict(resource_type=2, resource_name="__consumer_offsets", configuration_keys=None)
            ],
        )
    )
    configs = {c.name: c.value for c in d.results[0].configs}
    assert configs["cleanup.policy"] == "compact"


# ---------------------------------------------------------------------- the protocol, versions


@pytest.mark.parametrize("version", range(10))
def test_join_sync_heartbeat_leave_every_version(wire: KafkaWire, version: int) -> None:
    group = f"jv{version}-{uuid.uuid4().hex[:6]}"
    find(wire, group)
    member = ""
    if version >= 4:
        first = join(wire, group, version=version)
        assert first.error_code == E.member_id_required and first.member_id.startswith(
            "pybroker-tests-"
        )
        assert first.generation_id == -1
        member = first.member_id
    r = join(wire, group, member, version=version, protocols=[("range", b"md")])
    assert r.error_code == E.none and r.generation_id == 1
    assert r.leader == r.member_id and (not member or r.member_id == member)
    assert r.protocol_name == "range"
    assert [(m.member_id, m.metadata) for m in r.members] == [(r.member_id, b"md")]
    if version >= 7:
        assert r.protocol_type == "consumer"
    if version >= 9:
        assert r.skip_assignment is False
    sv = min(version, 5)
    extra = dict(protocol_type="consumer", protocol_name="range") if sv >= 5 else {}
    s = sync(wire, group, r.member_id, 1, {r.member_id: b"mine"}, version=sv, **extra)
    assert s.error_code == E.none and s.assignment == b"mine"
    if sv >= 5:
        assert (s.protocol_type, s.protocol_name) == ("consumer", "range")
    hv = min(version, 4)
    assert heartbeat(wire, group, r.member_id, 1, version=hv) == E.none
    assert heartbeat(wire, group, r.member_id, 2, version=hv) == E.illegal_generation
    assert heartbeat(wire, group, "nobody", 1, version=hv) == E.unknown_member_id
    lv = min(version, 5)
    if lv < 3:
        out = wire.request(req(LEAVE, lv, group_id=group, member_id=r.member_id))
        assert out.error_code == E.none
    else:
        out = wire.request(
            req(
                LEAVE,
                lv,
                group_id=group,
                members=[
                    dict(member_id=r.member_id, group_instance_id=None, reason="done"),
                    dict(member_id="ghost", group_instance_id=None),
                ],
            )
        )
        assert out.error_code == E.none
        assert [(m.member_id, m.error_code) for m in out.members] == [
            (r.member_id, E.none),
            ("ghost", E.unknown_member_id),
        ]
    g = describe(wire, group)
    assert (g.error_code, g.group_state, g.members) == (E.none, "Empty", ())


def test_leave_group_v0_unknown_member_and_group(wire: KafkaWire) -> None:
    group = f"leave-{uuid.uuid4().hex[:6]}"
    find(wire, group)
    r = wire.request(req(LEAVE, 0, group_id=group, member_id="nobody"))
    assert r.error_code == E.unknown_member_id  # no such group
    # Kafka 4.1 (checked against it in tests/differential/test_groups.py): the request
    # succeeds and each member of the unknown group is UNKNOWN_MEMBER_ID.
    r = wire.request(req(LEAVE, 4, group_id=group, members=[dict(member_id="nobody")]))
    assert (r.error_code, [(m.member_id, m.error_code) for m in r.members]) == (
        E.none,
        [("nobody", E.unknown_member_id)],
    )


def test_sync_waits_for_leader_and_rebalance_fences(
    wire: KafkaWire, wbroker: BrokerProcess
) -> None:
    group = f"two-{uuid.uuid4().hex[:6]}"
    find(wire, group)
    with KafkaWire(port=wbroker.port, timeout=20) as other:
        a = join(wire, group, version=3)  # v3: no member id round
        assert a.error_code == E.none and a.generation_id == 1
        # b joins: a rebalance; a learns from its heartbeat and rejoins.
        cid = other.send(
            req(
                JOIN,
                3,
                group_id=group,
                session_timeout=SESSION_MS,
                rebalance_timeout=10_000,
                member_id="",
                protocol_type="consumer",
                protocols=[dict(name="range", metadata=b"b")],
            )
        )
        deadline = time.monotonic() + 10
        while heartbeat(wire, group, a.member_id, 1) != E.rebalance_in_progress:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert sync(wire, group, a.member_id, 1).error_code == E.rebalance_in_progress
        a2 = join(wire, group, a.member_id, version=3, protocols=[("range", b"a")])
        from kio.index import load_response_schema

        b = other.recv(load_response_schema(JOIN, 3), cid).body
        assert a2.generation_id == b.generation_id == 2
        assert a2.leader == a.member_id and len(a2.members) == 2 and not b.members
        # The follower's SyncGroup waits for the leader's.
        scid = other.send(req(SYNC, 3, group_id=group, generation_id=2, member_id=b.member_id))
        s = sync(wire, group, a.member_id, 2, {a.member_id: b"A", b.member_id: b"B"})
        assert s.assignment == b"A"
        sb = other.recv(load_response_schema(SYNC, 3), scid).body
        assert (sb.error_code, sb.assignment) == (E.none, b"B")


# ---------------------------------------------------------------------- bad input


def test_bad_input_leaves_the_group_intact(wbroker: BrokerProcess, wire: KafkaWire) -> None:
    topic = new_topic(wbroker)
    group = f"bad-{uuid.uuid4().hex[:6]}"
    member, gen = stable_member(wire, group, topic)
    assert commit(wire, group, member, gen, topic, {0: (10, "good")}) == {0: E.none}

    committed_1: tuple[int, str, Any] = (-1, "", E.none)

    def unchanged() -> None:
        g = describe(wire, group)
        assert (g.group_state, g.protocol_data) == ("Stable", "range")
        assert [m.member_id for m in g.members] == [member]
        assert g.members[0].member_assignment == b"asg"
        assert heartbeat(wire, group, member, gen) == E.none
        assert fetch(wire, group, topic, [0, 1]) == {0: (10, "good", E.none), 1: committed_1}

    # Commits: stale generation, unknown member, a member of another group.
    assert commit(wire, group, member, gen - 1, topic, {0: (1, "x")}) == {0: E.illegal_generation}
    assert commit(wire, group, member, gen + 1, topic, {0: (1, "x")}) == {0: E.illegal_generation}
    assert commit(wire, group, "nobody", gen, topic, {0: (1, "x")}) == {0: E.unknown_member_id}
    assert commit(wire, group, "", -1, topic, {0: (1, "x")}) == {0: E.unknown_member_id}
    other = f"other-{uuid.uuid4().hex[:6]}"
    find(wire, other)
    assert commit(wire, other, member, gen, topic, {0: (1, "x")}, version=8) == {
        0: E.illegal_generation
    }
    assert commit(wire, other, member, gen, topic, {0: (1, "x")}, version=9) == {
        0: E.group_id_not_found
    }
    assert heartbeat(wire, other, member, gen) == E.unknown_member_id
    assert sync(wire, other, member, gen).error_code == E.unknown_member_id
    assert commit(wire, "", "", -1, topic, {0: (1, "x")}) == {0: E.invalid_group_id}
    unchanged()

    # Metadata above offset.metadata.max.bytes (4096) fails that partition only.
    assert commit(wire, group, member, gen, topic, {0: (11, "m" * 4097), 1: (5, "m" * 4096)}) == {
        0: E.offset_metadata_too_large,
        1: E.none,
    }
    committed_1 = (5, "m" * 4096, E.none)
    assert fetch(wire, group, topic, [0, 1])[1] == committed_1
    # Topics the cluster does not have never reach the group.
    assert commit(wire, group, member, gen, "no-such-topic", {0: (1, "")}) == {
        0: E.unknown_topic_or_partition
    }
    assert commit(wire, group, member, gen, topic, {7: (1, "")}) == {
        7: E.unknown_topic_or_partition
    }
    r = wire.request(
        req(
            OFFSET_COMMIT,
            10,
            group_id=group,
            generation_id_or_member_epoch=gen,
            member_id=member,
            topics=[dict(topic_id=uuid.uuid4(), partitions=[dict(partition_index=0)])],
        )
    )
    assert r.topics[0].partitions[0].error_code == E.unknown_topic_id
    assert commit(wire, group, member, gen, topic, {1: (5, "m" * 4096)}) == {1: E.none}

    # Joins the group cannot take.
    assert join(wire, group, protocols=[]).error_code == E.inconsistent_group_protocol
    assert join(wire, group, protocol_type="connect").error_code == E.inconsistent_group_protocol
    assert join(wire, group, protocol_type="").error_code == E.inconsistent_group_protocol
    assert (
        join(wire, group, protocols=[("roundrobin", b"")]).error_code
        == E.inconsistent_group_protocol
    )
    assert join(wire, group, member, protocols=[]).error_code == E.inconsistent_group_protocol
    assert join(wire, group, member, session=500).error_code == E.invalid_session_timeout
    assert join(wire, "", version=3).error_code == E.invalid_group_id
    assert join(wire, group, "nobody").error_code == E.unknown_member_id
    r = sync(wire, group, member, gen, version=5, protocol_type="consumer", protocol_name="rr")
    assert r.error_code == E.inconsistent_group_protocol
    r = sync(wire, group, member, gen, version=5, protocol_type="connect", protocol_name="range")
    assert r.error_code == E.inconsistent_group_protocol
    assert sync(wire, group, member, gen + 5).error_code == E.illegal_generation
    assert heartbeat(wire, "", member, gen) == E.invalid_group_id
    unchanged()

    # A new group with nothing to agree on is refused too.
    fresh = f"fresh-{uuid.uuid4().hex[:6]}"
    find(wire, fresh)
    assert join(wire, fresh, protocols=[], version=3).error_code == E.inconsistent_group_protocol
    assert (
        join(wire, fresh, protocol_type="", version=3).error_code == E.inconsistent_group_protocol
    )
    g = describe(wire, fresh)
    assert (g.group_state, g.members) in (("Empty", ()), ("Dead", ()))


def test_group_max_size_and_metadata_created_offsets_topic(tmp_path: Any) -> None:
    broker = BrokerProcess(
        tmp_path / "data", overrides={**OVERRIDES, "group.max.size": "1"}
    ).start()
    try:
        with KafkaWire(port=broker.port, timeout=20) as w:
            # Auto-created through Metadata before any FindCoordinator: still the internal
            # topic's partition count and compaction (Kafka's AutoTopicCreationManager).
            md = req(METADATA, 12, topics=[dict(name="__consumer_offsets")])
            r = w.request(md)
            # Kafka 4 answers the creating request UNKNOWN_TOPIC_OR_PARTITION (internal).
            assert (r.topics[0].error_code, r.topics[0].is_internal) == (
                E.unknown_topic_or_partition,
                True,
            )
            r = w.request(md)
            assert r.topics[0].error_code == E.none and len(r.topics[0].partitions) == 10
            d = w.request(
                req(
                    32,
                    4,
                    resources=[dict(resource_type=2, resource_name="__consumer_offsets")],
                )
            )
            assert {c.name: c.value for c in d.results[0].configs}["cleanup.policy"] == "compact"
            group = "tiny"
            find(w, group)
            a = join(w, group, version=3)
            assert a.error_code == E.none
            b = join(w, group, version=3)
            assert (b.error_code, b.member_id) == (E.group_max_size_reached, "")
            assert [m.member_id for m in describe(w, group).members] == [a.member_id]
    finally:
        broker.stop()


def test_static_member_fencing(wire: KafkaWire) -> None:
    group = f"static-{uuid.uuid4().hex[:6]}"
    find(wire, group)
    a = join(wire, group, instance="inst-1")  # static members skip MEMBER_ID_REQUIRED
    assert a.error_code == E.none and a.member_id.startswith("inst-1-")
    assert sync(wire, group, a.member_id, 1, {a.member_id: b"x"}, instance_id=None).error_code == 0
    b = join(wire, group, instance="inst-1")  # the same instance, restarted
    assert b.error_code == E.none and b.member_id != a.member_id and b.generation_id == 1
    r = wire.request(
        req(
            HEARTBEAT,
            3,
            group_id=group,
            generation_id=1,
            member_id=a.member_id,
            group_instance_id="inst-1",
        )
    )
    assert r.error_code == E.fenced_instance_id
    r = wire.request(
        req(
            OFFSET_COMMIT,
            8,
            group_id=group,
            generation_id_or_member_epoch=1,
            member_id=a.member_id,
            group_instance_id="inst-1",
            topics=[],
        )
    )
    assert r.topics == ()
    g = describe(wire, group)
    assert [(m.member_id, m.group_instance_id) for m in g.members] == [(b.member_id, "inst-1")]
    r = wire.request(
        req(LEAVE, 4, group_id=group, members=[dict(member_id="", group_instance_id="inst-1")])
    )
    assert [(m.group_instance_id, m.error_code) for m in r.members] == [("inst-1", E.none)]
    assert describe(wire, group).group_state == "Empty"


# ---------------------------------------------------------------------- offsets, all versions


@pytest.mark.parametrize("version", range(2, 11))
def test_offset_commit_and_fetch_every_version(
    wbroker: BrokerProcess, wire: KafkaWire, version: int
) -> None:
    topic = new_topic(wbroker)
    group = f"oc{version}-{uuid.uuid4().hex[:6]}"
    find(wire, group)
    info = wire.request(req(METADATA, 12, topics=[dict(name=topic)])).topics[0]
    r = wire.request(
        req(
            OFFSET_COMMIT,
            version,
            group_id=group,
            generation_id_or_member_epoch=-1,
            member_id="",
            retention_time=-1,
            topics=[
                dict(
                    name=topic,
                    topic_id=info.topic_id,
                    partitions=[
                        dict(
                            partition_index=1,
                            committed_offset=33,
                            committed_leader_epoch=4,
                            committed_metadata="meta ☃",
                        ),
                        dict(partition_index=0, committed_offset=7, committed_metadata=None),
                    ],
                )
            ],
        )
    )
    (t,) = r.topics
    assert [(p.partition_index, p.error_code) for p in t.partitions] == [(1, E.none), (0, E.none)]
    if version >= 10:
        assert t.topic_id == info.topic_id
    else:
        assert t.name == topic
    epoch = 4 if version >= 6 else -1
    for fv in range(1, 11):
        if fv < 8:
            f = wire.request(
                req(
                    OFFSET_FETCH,
                    fv,
                    group_id=group,
                    topics=[dict(name=topic, partition_indexes=[0, 1, 2])],
                )
            )
            topics = f.topics
            if fv >= 2:
                assert f.error_code == E.none
        else:
            f = wire.request(
                req(
                    OFFSET_FETCH,
                    fv,
                    groups=[
                        dict(
                            group_id=group,
                            topics=[
                                dict(
                                    name=topic, topic_id=info.topic_id, partition_indexes=[0, 1, 2]
                                )
                            ],
                        )
                    ],
                )
            )
            (g,) = f.groups
            assert g.error_code == E.none
            topics = g.topics
        (ft,) = topics
        got = {
            p.partition_index: (
                p.committed_offset,
                getattr(p, "committed_leader_epoch", -1),
                p.metadata,
                p.error_code,
            )
            for p in ft.partitions
        }
        assert got == {
            0: (7, -1, "", E.none),
            1: (33, epoch if fv >= 5 else -1, "meta ☃", E.none),
            2: (-1, -1, "", E.none),
        }, (version, fv)


def test_offset_fetch_multi_group_and_all_topics(wbroker: BrokerProcess, wire: KafkaWire) -> None:
    topic = new_topic(wbroker)
    g1, g2, g3 = (f"mg{i}-{uuid.uuid4().hex[:6]}" for i in range(3))
    for g, off in ((g1, 1), (g2, 2)):
        find(wire, g)
        assert commit(wire, g, "", -1, topic, {0: (off, f"m{off}")}) == {0: E.none}
    find(wire, g3)
    r = wire.request(
        req(
            OFFSET_FETCH,
            9,
            groups=[
                dict(group_id=g1, topics=None),
                dict(group_id=g2, topics=[dict(name=topic, partition_indexes=[0, 1])]),
                dict(group_id=g3, topics=None),
                dict(group_id="", topics=None),
            ],
            require_stable=True,
        )
    )
    out = {
        g.group_id: (
            g.error_code,
            [
                (t.name, [(p.partition_index, p.committed_offset) for p in t.partitions])
                for t in g.topics
            ],
        )
        for g in r.groups
    }
    assert out == {
        g1: (E.none, [(topic, [(0, 1)])]),
        g2: (E.none, [(topic, [(0, 2), (1, -1)])]),
        g3: (E.none, []),
        "": (E.invalid_group_id, []),
    }
    # v1 has no group-level error: it goes on each partition.
    r = wire.request(
        req(OFFSET_FETCH, 1, group_id="", topics=[dict(name=topic, partition_indexes=[0])])
    )
    assert r.topics[0].partitions[0].error_code == E.invalid_group_id
    # v2+ with a null topic list: every committed offset.
    r = wire.request(req(OFFSET_FETCH, 2, group_id=g1, topics=None))
    assert [(t.name, len(t.partitions)) for t in r.topics] == [(topic, 1)]


# ---------------------------------------------------------------------- admin APIs


@pytest.mark.parametrize("version", range(6))
def test_list_groups_every_version(wbroker: BrokerProcess, wire: KafkaWire, version: int) -> None:
    topic = new_topic(wbroker)
    active = f"la{version}-{uuid.uuid4().hex[:6]}"
    simple = f"ls{version}-{uuid.uuid4().hex[:6]}"
    stable_member(wire, active, topic)
    find(wire, simple)
    commit(wire, simple, "", -1, topic, {0: (1, "")})
    r = wire.request(req(LIST, version))
    assert r.error_code == E.none
    listed = {g.group_id: g for g in r.groups}
    assert listed[active].protocol_type == "consumer" and listed[simple].protocol_type == ""
    if version >= 4:
        assert (listed[active].group_state, listed[simple].group_state) == ("Stable", "Empty")
        r = wire.request(req(LIST, version, states_filter=["stable"]))
        names = {g.group_id for g in r.groups}
        assert active in names and simple not in names
    if version >= 5:
        assert listed[active].group_type == "classic"
        assert wire.request(req(LIST, version, types_filter=["consumer"])).groups == ()
        r = wire.request(req(LIST, version, types_filter=["Classic"]))
        assert active in {g.group_id for g in r.groups}


@pytest.mark.parametrize("version", range(7))
def test_describe_groups_every_version(
    wbroker: BrokerProcess, wire: KafkaWire, version: int
) -> None:
    topic = new_topic(wbroker)
    group = f"d{version}-{uuid.uuid4().hex[:6]}"
    member, _ = stable_member(wire, group, topic)
    missing = f"missing-{uuid.uuid4().hex[:6]}"
    r = wire.request(
        req(DESCRIBE, version, groups=[group, missing], include_authorized_operations=True)
    )
    g, m = r.groups
    assert (g.error_code, g.group_state, g.protocol_type, g.protocol_data) == (
        E.none,
        "Stable",
        "consumer",
        "range",
    )
    (mem,) = g.members
    assert (mem.member_id, mem.client_id, mem.client_host) == (
        member,
        "pybroker-tests",
        "/127.0.0.1",
    )
    assert mem.member_metadata == subscription(topic) and mem.member_assignment == b"asg"
    if version >= 3:
        assert g.authorized_operations == sum(1 << op for op in (3, 6, 8, 10, 11))
    assert m.group_state == "Dead" and m.members == ()
    if version >= 6:
        assert m.error_code == E.group_id_not_found and m.error_message
    else:
        assert m.error_code == E.none


@pytest.mark.parametrize("version", range(3))
def test_delete_groups_every_version(wbroker: BrokerProcess, wire: KafkaWire, version: int) -> None:
    topic = new_topic(wbroker)
    active = f"da{version}-{uuid.uuid4().hex[:6]}"
    idle = f"di{version}-{uuid.uuid4().hex[:6]}"
    stable_member(wire, active, topic)
    find(wire, idle)
    commit(wire, idle, "", -1, topic, {0: (3, "")})
    r = wire.request(req(DELETE, version, groups_names=[active, idle, idle, "never-was"]))
    assert {x.group_id: x.error_code for x in r.results} == {
        active: E.non_empty_group,
        idle: E.none,
        "never-was": E.group_id_not_found,
    }
    assert fetch(wire, idle, topic, [0]) == {0: (-1, "", E.none)}


def test_offset_delete(wbroker: BrokerProcess, wire: KafkaWire) -> None:
    topic, other_topic = new_topic(wbroker), new_topic(wbroker)
    group = f"od-{uuid.uuid4().hex[:6]}"
    member, gen = stable_member(wire, group, topic)
    commit(wire, group, member, gen, topic, {0: (1, "")})
    commit(wire, group, member, gen, other_topic, {0: (2, "")})
    r = wire.request(
        req(
            OFFSET_DELETE,
            0,
            group_id=group,
            topics=[
                dict(name=topic, partitions=[dict(partition_index=0)]),
                dict(name=other_topic, partitions=[dict(partition_index=0)]),
                dict(name="no-such-topic", partitions=[dict(partition_index=0)]),
            ],
        )
    )
    assert r.error_code == E.none
    got = {(t.name, p.partition_index): p.error_code for t in r.topics for p in t.partitions}
    assert got == {
        (topic, 0): E.group_subscribed_to_topic,
        (other_topic, 0): E.none,
        ("no-such-topic", 0): E.unknown_topic_or_partition,
    }
    assert fetch(wire, group, other_topic, [0]) == {0: (-1, "", E.none)}
    assert fetch(wire, group, topic, [0]) == {0: (1, "", E.none)}
    r = wire.request(req(OFFSET_DELETE, 0, group_id="nope-group", topics=[]))
    assert (r.error_code, r.topics) == (E.group_id_not_found, ())


# ---------------------------------------------------------------------- the topic's records


def test_records_in_offsets_topic_are_kafkas(wbroker: BrokerProcess, wire: KafkaWire) -> None:
    topic = new_topic(wbroker)
    group = f"rec-{uuid.uuid4().hex[:6]}"
    member, gen = stable_member(wire, group, topic)
    assert commit(wire, group, member, gen, topic, {1: (99, "md")}) == {1: E.none}
    partition = partition_for(group, 10)
    c = Consumer(
        {
            "bootstrap.servers": wbroker.bootstrap,
            "group.id": "inspector",
            "enable.partition.eof": True,
        }
    )
    try:
        c.assign([TopicPartition("__consumer_offsets", partition, OFFSET_BEGINNING)])
        records = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            msg = c.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                break
            records.append((msg.key(), msg.value()))
    finally:
        c.close()
    mine = [(decode_key(k), v) for k, v in records if k and group.encode() in k]
    offsets = [
        (k, decode_offset_commit_value(v)) for k, v in mine if isinstance(k, OffsetCommitKey)
    ]
    assert [(k.topic, k.partition, v.offset, v.metadata) for k, v in offsets] == [
        (topic, 1, 99, "md")
    ]
    groups = [decode_group_metadata_value(v) for k, v in mine if isinstance(k, GroupMetadataKey)]
    assert groups[-1].generation == gen and groups[-1].protocol == "range"
    assert [(m.member_id, m.assignment) for m in groups[-1].members] == [(member, b"asg")]
    assert all(v[:2] == b"\x00\x03" for _, v in mine)  # value schema v3 throughout
