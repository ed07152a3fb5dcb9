"""KIP-848 consumer groups (``group.protocol=consumer``) with librdkafka and raw frames.

confluent-kafka 2.16 (librdkafka) consumers join with ConsumerGroupHeartbeat, receive
server-side assignments and reconcile them epoch by epoch; ownership is tracked from
their (incremental) assignment callbacks, and a partition may never be assigned to one
member while another still holds it. A member whose process is killed is expelled after
``group.consumer.session.timeout.ms``; committed offsets (OffsetCommit v9 with member
epochs) survive a broker restart together with the group; AdminClient's
describe_consumer_groups reads ConsumerGroupDescribe. Bad input goes over raw frames
(tests/support/wire.py) and gets Kafka 4.0's error codes and messages.

The broker runs with a 300 ms heartbeat interval and a 3 s session timeout (and their
minimums lowered accordingly) so that every rebalance and expiry takes about a second;
every wait is bounded.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient
from kio.schema.errors import ErrorCode as E

from pybroker.broker.groups.consumer_records import CONSUMER_RECORD_TYPES, decode_consumer_key
from pybroker.protocol.codec import build
from tests.support.broker import BrokerProcess
from tests.support.clients import confluent_create_topic, confluent_produce, index_of_value
from tests.support.wire import KafkaWire, request_module

pytestmark = pytest.mark.timeout(120)

HEARTBEAT, DESCRIBE = 68, 69
SESSION_MS = 3000
OVERRIDES = {
    "group.consumer.heartbeat.interval.ms": "300",
    "group.consumer.min.heartbeat.interval.ms": "100",
    "group.consumer.session.timeout.ms": str(SESSION_MS),
    "group.consumer.min.session.timeout.ms": "1000",
    "offsets.topic.num.partitions": "5",
    "group.initial.rebalance.delay.ms": "50",
    "group.min.session.timeout.ms": "1000",
}
PARTITIONS = 4


@pytest.fixture(scope="module")
def kbroker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(tmp_path_factory.mktemp("kip848") / "data", overrides=OVERRIDES).start()
    try:
        yield proc
    finally:
        if proc.proc is not None:
            proc.stop()


def fresh_topic(broker: BrokerProcess, count: int) -> str:
    topic = f"k848-{uuid.uuid4().hex[:8]}"
    confluent_create_topic(broker.bootstrap, topic, PARTITIONS)
    if count:
        confluent_produce(broker.bootstrap, topic, range(count))
    return topic


def wait_until(
    cond: Callable[[], bool], timeout: float, step: Callable[[], None], what: str
) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        step()


class Ownership:
    """Who holds each partition, from the assignment callbacks; records any overlap."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.owner: dict[int, str] = {}
        self.violations: list[str] = []

    def assign(self, who: str, parts: set[int]) -> None:
        with self.lock:
            for p in parts:
                holder = self.owner.get(p)
                if holder is not None and holder != who:
                    self.violations.append(f"{who} got partition {p} still held by {holder}")
                self.owner[p] = who

    def revoke(self, who: str, parts: set[int]) -> None:
        with self.lock:
            for p in parts:
                if self.owner.get(p) == who:
                    del self.owner[p]


class Member:
    """A confluent-kafka consumer with group.protocol=consumer, polled by the test."""

    def __init__(
        self,
        name: str,
        broker: BrokerProcess,
        group: str,
        topic: str,
        ownership: Ownership,
        **conf: Any,
    ) -> None:
        self.name = name
        self.ownership = ownership
        self.assigned: set[int] = set()
        self.seen: list[tuple[int, int, int]] = []  # (partition, offset, index)
        self.consumer = Consumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": group,
                "group.protocol": "consumer",
                "auto.offset.reset": "earliest",
                "enable.partition.eof": False,
                **conf,
            }
        )
        self.consumer.subscribe(
            [topic], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
        )

    def _on_assign(self, _c: Any, parts: list[TopicPartition]) -> None:
        ps = {p.partition for p in parts}
        self.ownership.assign(self.name, ps)
        self.assigned |= ps

    def _on_revoke(self, _c: Any, parts: list[TopicPartition]) -> None:
        ps = {p.partition for p in parts}
        self.ownership.revoke(self.name, ps)
        self.assigned -= ps

    def poll(self, timeout: float = 0.02) -> None:
        for msg in self.consumer.consume(500, timeout):
            err = msg.error()
            if err is not None:
                assert err.code() == KafkaError._PARTITION_EOF, f"{self.name}: {err}"
                continue
            self.seen.append((msg.partition(), msg.offset(), index_of_value(msg.value())))

    def indices(self) -> set[int]:
        return {i for _, _, i in self.seen}

    def close(self) -> None:
        self.consumer.close()


def poll_all(members: list[Member]) -> Callable[[], None]:
    def step() -> None:
        for m in members:
            m.poll()

    return step


# ---------------------------------------------------------------------- clients


def test_two_members_split_disjointly(kbroker: BrokerProcess) -> None:
    topic = fresh_topic(kbroker, 400)
    own = Ownership()
    members = [Member(n, kbroker, f"split-{topic}", topic, own) for n in ("a", "b")]
    try:
        wait_until(
            lambda: (
                len(members[0].indices() | members[1].indices()) == 400
                and all(len(m.assigned) == 2 for m in members)
            ),
            30,
            poll_all(members),
            "two members to split the topic and read it all",
        )
        a, b = (m.assigned for m in members)
        assert a.isdisjoint(b) and a | b == set(range(PARTITIONS)), (a, b)
        assert not own.violations, own.violations
        # Each record was read once, by the member that held its partition.
        assert len(members[0].seen) + len(members[1].seen) == 400
    finally:
        for m in members:
            m.close()


def test_third_member_joins_mid_stream(kbroker: BrokerProcess) -> None:
    topic = fresh_topic(kbroker, 0)
    own = Ownership()
    group = f"third-{topic}"
    members = [Member(n, kbroker, group, topic, own) for n in ("a", "b")]
    produced = 0

    def produce(n: int) -> None:
        nonlocal produced
        confluent_produce(kbroker.bootstrap, topic, range(produced, produced + n))
        produced += n

    try:
        produce(200)
        wait_until(
            lambda: (
                all(len(m.assigned) == 2 for m in members)
                and len(set().union(*(m.indices() for m in members))) >= 100
            ),
            30,
            poll_all(members),
            "two members consuming",
        )
        members.append(Member("c", kbroker, group, topic, own))
        for _ in range(4):  # keep producing while the group rebalances
            produce(100)
            poll_all(members)()
        wait_until(
            lambda: (
                len(set().union(*(m.indices() for m in members))) == produced
                and all(m.assigned for m in members)
                and sum(len(m.assigned) for m in members) == PARTITIONS
            ),
            30,
            poll_all(members),
            "three members sharing the topic, every record delivered",
        )
        assert not own.violations, own.violations
        assert sorted(len(m.assigned) for m in members) == [1, 1, 2]
        assert set().union(*(m.assigned for m in members)) == set(range(PARTITIONS))
    finally:
        for m in members:
            m.close()


CHILD = textwrap.dedent(
    """
    import sys
    from confluent_kafka import Consumer
    bootstrap, group, topic = sys.argv[1:4]
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "group.protocol": "consumer", "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    held = set()
    def on_assign(_c, parts):
        held.update(p.partition for p in parts)
        print("HOLDS", ",".join(map(str, sorted(held))), flush=True)
    def on_revoke(_c, parts):
        held.difference_update(p.partition for p in parts)
        print("HOLDS", ",".join(map(str, sorted(held))), flush=True)
    c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
    while True:
        c.poll(0.05)
    """
)


def test_killed_member_is_expelled_after_the_session_timeout(kbroker: BrokerProcess) -> None:
    topic = fresh_topic(kbroker, 40)
    group = f"kill-{topic}"
    own = Ownership()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, kbroker.bootstrap, group, topic],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(child.stdout or ()), daemon=True)
    reader.start()
    member: Member | None = None
    try:
        wait_until(
            lambda: any(line.startswith("HOLDS 0,1,2,3") for line in lines),
            30,
            lambda: time.sleep(0.05),
            "the child to hold every partition",
        )
        member = Member("survivor", kbroker, group, topic, own)
        wait_until(lambda: len(member.assigned) == 2, 30, member.poll, "a split with the child")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        killed = time.monotonic()
        wait_until(
            lambda: len(member.assigned) == PARTITIONS,
            20,
            member.poll,
            "the survivor to take over the dead member's partitions",
        )
        waited = time.monotonic() - killed
        assert waited >= SESSION_MS / 1000 * 0.8, f"reassigned after {waited:.1f}s"
        admin = AdminClient({"bootstrap.servers": kbroker.bootstrap})
        desc = admin.describe_consumer_groups([group])[group].result(15)
        assert [d.member_id for d in desc.members] == [member.consumer.memberid()]
        # Nothing was committed: the survivor reads all of the dead member's partitions.
        wait_until(lambda: len(member.indices()) == 40, 20, member.poll, "every record")
        assert not own.violations, own.violations
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(10)
        if member is not None:
            member.close()


def test_describe_and_list_consumer_groups_with_admin_client(kbroker: BrokerProcess) -> None:
    from confluent_kafka import ConsumerGroupState, ConsumerGroupType

    topic = fresh_topic(kbroker, 10)
    group = f"desc-{topic}"
    own = Ownership()
    members = [
        Member(n, kbroker, group, topic, own, **{"client.id": f"client-{n}"}) for n in ("a", "b")
    ]
    admin = AdminClient({"bootstrap.servers": kbroker.bootstrap})
    try:
        wait_until(
            lambda: all(len(m.assigned) == 2 for m in members),
            30,
            poll_all(members),
            "a stable split",
        )
        desc = None

        def described() -> bool:
            nonlocal desc
            poll_all(members)()
            desc = admin.describe_consumer_groups([group])[group].result(15)
            return desc.state == ConsumerGroupState.STABLE

        wait_until(described, 20, lambda: time.sleep(0.1), "a stable description")
        assert desc is not None
        assert desc.type == ConsumerGroupType.CONSUMER
        assert desc.partition_assignor == "uniform"
        assert not desc.is_simple_consumer_group
        by_client = {m.client_id: m for m in desc.members}
        assert set(by_client) == {"client-a", "client-b"}
        for m in members:
            d = by_client[f"client-{m.name}"]
            assert d.member_id == m.consumer.memberid()
            assert d.host.strip("/") == "127.0.0.1"
            assert {tp.partition for tp in d.assignment.topic_partitions} == m.assigned
            assert {tp.topic for tp in d.assignment.topic_partitions} == {topic}
            assert {tp.partition for tp in d.target_assignment.topic_partitions} == m.assigned
        listed = admin.list_consumer_groups(types={ConsumerGroupType.CONSUMER}).result(15)
        mine = [g for g in listed.valid if g.group_id == group]
        assert len(mine) == 1 and mine[0].type == ConsumerGroupType.CONSUMER
        assert mine[0].state == ConsumerGroupState.STABLE
        classic = admin.list_consumer_groups(types={ConsumerGroupType.CLASSIC}).result(15)
        assert group not in {g.group_id for g in classic.valid}
        missing = admin.describe_consumer_groups([f"nope-{topic}"])[f"nope-{topic}"].result(15)
        assert missing.state in (ConsumerGroupState.DEAD, ConsumerGroupState.UNKNOWN)
    finally:
        for m in members:
            m.close()


def test_committed_offsets_and_the_group_survive_a_restart(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    broker = BrokerProcess(tmp_path_factory.mktemp("kip848r") / "data", overrides=OVERRIDES)
    broker.start()
    try:
        topic = fresh_topic(broker, 200)
        group = f"restart-{topic}"
        own = Ownership()
        m = Member("a", broker, group, topic, own, **{"enable.auto.commit": False})
        wait_until(lambda: len(m.indices()) == 200, 30, m.poll, "the first 200 records")
        m.consumer.commit(asynchronous=False)
        committed = m.consumer.committed(
            [TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10
        )
        assert sum(tp.offset for tp in committed) == 200
        m.close()
        # A second member stays in the group across the restart.
        stayer = Member("b", broker, group, topic, own, **{"enable.auto.commit": False})
        wait_until(lambda: len(stayer.assigned) == PARTITIONS, 30, stayer.poll, "b to join")
        stayer_id = stayer.consumer.memberid()
        broker.restart()
        confluent_produce(broker.bootstrap, topic, range(200, 300))
        # The group came back with its member and epochs: b keeps its id and partitions,
        # and resumes from the committed offsets (it never reads 0..199 again).
        wait_until(lambda: len(stayer.indices()) == 100, 40, stayer.poll, "b to read 100 more")
        assert stayer.indices() == set(range(200, 300))
        assert stayer.consumer.memberid() == stayer_id
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        desc = admin.describe_consumer_groups([group])[group].result(15)
        assert [d.member_id for d in desc.members] == [stayer_id]
        stayer.close()
        # And a new member of the group, after the last one left, starts where b stopped.
        late = Member("c", broker, group, topic, own)
        wait_until(lambda: len(late.assigned) == PARTITIONS, 30, late.poll, "c to join")
        time.sleep(0.5)
        late.poll(0.2)
        assert late.indices() <= set(range(200, 300))
        late.close()
    finally:
        broker.stop()


def test_group_records_are_kafkas_in_the_offsets_topic(kbroker: BrokerProcess) -> None:
    topic = fresh_topic(kbroker, 0)
    group = f"rec-{topic}"
    own = Ownership()
    m = Member("a", kbroker, group, topic, own)
    try:
        wait_until(lambda: len(m.assigned) == PARTITIONS, 30, m.poll, "a member")
    finally:
        m.close()
    reader = Consumer(
        {
            "bootstrap.servers": kbroker.bootstrap,
            "group.id": f"reader-{topic}",
            "enable.auto.commit": False,
        }
    )
    try:
        reader.assign([TopicPartition("__consumer_offsets", p, 0) for p in range(5)])
        kinds: set[int] = set()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not {3, 4, 5, 6, 7, 8} <= kinds:
            for msg in reader.consume(500, 0.2):
                if msg.error() is None and msg.key() is not None:
                    key = decode_consumer_key(msg.key())
                    if key is not None and key.group_id == group:
                        kinds.add(key.record_type)
        assert {3, 4, 5, 6, 7, 8} <= kinds <= CONSUMER_RECORD_TYPES
    finally:
        reader.close()


# ---------------------------------------------------------------------- raw frames


@pytest.fixture
def wire(kbroker: BrokerProcess) -> Iterator[KafkaWire]:
    with KafkaWire(port=kbroker.port, timeout=20) as w:
        yield w


def heartbeat(w: KafkaWire, version: int = 1, **fields: Any) -> Any:
    mod = request_module(HEARTBEAT, version)
    fields.setdefault("topic_partitions", None)
    tps = fields["topic_partitions"]
    if tps is not None:
        fields["topic_partitions"] = [
            mod.TopicPartitions(topic_id=t, partitions=ps) for t, ps in tps
        ]
    return w.request(build(mod.ConsumerGroupHeartbeatRequest, **fields))


def join(w: KafkaWire, group: str, member: str, topics: list[str], **kw: Any) -> Any:
    return heartbeat(
        w,
        group_id=group,
        member_id=member,
        member_epoch=0,
        rebalance_timeout=30000,
        subscribed_topic_names=topics,
        topic_partitions=[],
        **kw,
    )


def ensure_coordinator(w: KafkaWire, group: str) -> None:
    mod = request_module(10, 4)
    body = w.request(build(mod.FindCoordinatorRequest, key_type=0, coordinator_keys=[group]))
    assert body.coordinators[0].error_code == E.none


def test_api_versions_advertise_kafka_4_0_ranges(wire: KafkaWire) -> None:
    versions = wire.api_versions()
    assert versions[HEARTBEAT] == (0, 1)
    assert versions[DESCRIBE] == (0, 1)


def test_heartbeat_errors_over_the_wire(kbroker: BrokerProcess, wire: KafkaWire) -> None:
    topic = fresh_topic(kbroker, 0)
    group = f"wire-{topic}"
    ensure_coordinator(wire, group)
    member = uuid.uuid4().hex
    r = join(wire, group, member, [topic])
    assert (r.error_code, r.member_id, r.member_epoch) == (E.none, member, 1)
    assert r.heartbeat_interval.total_seconds() == 0.3
    assert sorted(p for tp in r.assignment.topic_partitions for p in tp.partitions) == [0, 1, 2, 3]
    topic_id = r.assignment.topic_partitions[0].topic_id
    owned = [(topic_id, [0, 1, 2, 3])]
    # Fenced: an epoch ahead of the member's, or behind it (not the previous one).
    r = heartbeat(wire, group_id=group, member_id=member, member_epoch=7, topic_partitions=owned)
    assert r.error_code == E.fenced_member_epoch and "greater member epoch (7)" in r.error_message
    # Unknown member.
    r = heartbeat(wire, group_id=group, member_id="ghost", member_epoch=1, topic_partitions=[])
    assert (r.error_code, r.error_message) == (
        E.unknown_member_id,
        f"Member ghost is not a member of group {group}.",
    )
    # Unsupported assignor, missing subscription on join, empty member id (v1).
    r = join(wire, group, "x", [topic], server_assignor="sticky")
    assert r.error_code == E.unsupported_assignor
    assert r.error_message == (
        "ServerAssignor sticky is not supported. Supported assignors: uniform, range."
    )
    r = heartbeat(
        wire,
        group_id=group,
        member_id="x",
        member_epoch=0,
        rebalance_timeout=1000,
        topic_partitions=[],
    )
    assert r.error_code == E.invalid_request
    assert "SubscribedTopicNames or SubscribedTopicRegex" in r.error_message
    assert join(wire, group, "", [topic]).error_code == E.invalid_request
    r = join(wire, group, "y", [topic], subscribed_topic_regex="(unclosed")
    assert r.error_code == E.invalid_regular_expression
    # v0: the coordinator names a member that did not name itself.
    r = heartbeat(
        wire,
        0,
        group_id=f"{group}-v0",
        member_id="",
        member_epoch=0,
        rebalance_timeout=1000,
        subscribed_topic_names=[topic],
        topic_partitions=[],
    )
    assert r.error_code == E.none and len(r.member_id) == 22
    heartbeat(wire, 0, group_id=f"{group}-v0", member_id=r.member_id, member_epoch=-1)
    # None of this disturbed the member.
    r = heartbeat(wire, group_id=group, member_id=member, member_epoch=1, topic_partitions=owned)
    assert (r.error_code, r.member_epoch) == (E.none, 1)
    # Commits with the member epoch: the current one is accepted, others are stale.
    oc = request_module(8, 9)

    def commit(epoch: int, member_id: str = member) -> Any:
        return (
            wire.request(
                build(
                    oc.OffsetCommitRequest,
                    group_id=group,
                    generation_id_or_member_epoch=epoch,
                    member_id=member_id,
                    topics=[
                        dict(name=topic, partitions=[dict(partition_index=0, committed_offset=5)])
                    ],
                )
            )
            .topics[0]
            .partitions[0]
            .error_code
        )

    assert commit(1) == E.none
    assert commit(0) == E.stale_member_epoch
    assert commit(1, "ghost") == E.unknown_member_id
    of = request_module(9, 9)
    body = wire.request(
        build(
            of.OffsetFetchRequest,
            groups=[dict(group_id=group, member_id=member, member_epoch=9, topics=None)],
        )
    )
    assert body.groups[0].error_code == E.stale_member_epoch
    body = wire.request(
        build(
            of.OffsetFetchRequest,
            groups=[dict(group_id=group, member_id=member, member_epoch=1, topics=None)],
        )
    )
    assert body.groups[0].error_code == E.none
    assert body.groups[0].topics[0].partitions[0].committed_offset == 5
    # Leaving: the member is gone, its id unknown afterwards.
    r = heartbeat(wire, group_id=group, member_id=member, member_epoch=-1)
    assert (r.error_code, r.member_epoch) == (E.none, -1)
    r = heartbeat(wire, group_id=group, member_id=member, member_epoch=1, topic_partitions=[])
    assert r.error_code == E.unknown_member_id


def test_describe_over_the_wire_and_classic_apis(kbroker: BrokerProcess, wire: KafkaWire) -> None:
    topic = fresh_topic(kbroker, 0)
    group = f"mixed-{topic}"
    ensure_coordinator(wire, group)
    member = uuid.uuid4().hex
    assert join(wire, group, member, [topic]).error_code == E.none
    dmod = request_module(DESCRIBE, 1)
    body = wire.request(
        build(
            dmod.ConsumerGroupDescribeRequest,
            group_ids=[group, "", f"none-{topic}"],
            include_authorized_operations=True,
        )
    )
    found, empty, missing = body.groups
    assert (found.error_code, found.group_state, found.group_epoch, found.assignment_epoch) == (
        E.none,
        "Stable",
        1,
        1,
    )
    assert found.assignor_name == "uniform" and found.authorized_operations > 0
    (m,) = found.members
    assert (m.member_id, m.member_epoch, m.member_type, m.subscribed_topic_names) == (
        member,
        1,
        1,
        (topic,),
    )
    assert m.assignment.topic_partitions[0].topic_name == topic
    assert empty.error_code == E.invalid_group_id
    assert (missing.error_code, missing.error_message) == (
        E.group_id_not_found,
        f"Group none-{topic} not found.",
    )
    # DescribeGroups (classic) on a consumer group: Kafka 4.0 calls it not a classic group.
    g6 = wire.request(build(request_module(15, 6).DescribeGroupsRequest, groups=[group]))
    assert (g6.groups[0].error_code, g6.groups[0].group_state, g6.groups[0].error_message) == (
        E.group_id_not_found,
        "Dead",
        f"Group {group} is not a classic group.",
    )
    g5 = wire.request(build(request_module(15, 5).DescribeGroupsRequest, groups=[group]))
    assert (g5.groups[0].error_code, g5.groups[0].group_state) == (E.none, "Dead")
    # ListGroups v5 reports the type.
    lg = wire.request(build(request_module(16, 5).ListGroupsRequest, types_filter=["consumer"]))
    assert (group, "consumer", "Stable", "consumer") in {
        (g.group_id, g.group_type, g.group_state, g.protocol_type) for g in lg.groups
    }
    # A classic member may join it (online migration): first it gets a member id.
    jmod = request_module(11, 9)
    joined = wire.request(
        build(
            jmod.JoinGroupRequest,
            group_id=group,
            session_timeout=10000,
            rebalance_timeout=10000,
            member_id="",
            protocol_type="consumer",
            protocols=[dict(name="range", metadata=b"")],
        )
    )
    assert (joined.error_code, len(joined.member_id)) == (E.member_id_required, 22)
    # DeleteGroups refuses a non-empty consumer group.
    dg = wire.request(build(request_module(42, 2).DeleteGroupsRequest, groups_names=[group]))
    assert dg.results[0].error_code == E.non_empty_group
    heartbeat(wire, group_id=group, member_id=member, member_epoch=-1)
    dg = wire.request(build(request_module(42, 2).DeleteGroupsRequest, groups_names=[group]))
    assert dg.results[0].error_code == E.none


def test_consumer_heartbeat_upgrades_a_classic_group(
    kbroker: BrokerProcess, wire: KafkaWire
) -> None:
    """Kafka 4.1's online upgrade: the classic group becomes a consumer group in which the
    classic consumer goes on (tests/integration/test_group_migration.py rolls a group)."""
    topic = fresh_topic(kbroker, 0)
    group = f"classic-{topic}"
    classic = Consumer(
        {
            "bootstrap.servers": kbroker.bootstrap,
            "group.id": group,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 250,
        }
    )
    try:
        classic.subscribe([topic])
        deadline = time.monotonic() + 20
        while not classic.assignment():
            assert time.monotonic() < deadline, "the classic member never got an assignment"
            classic.poll(0.05)
        ensure_coordinator(wire, group)
        r = join(wire, group, uuid.uuid4().hex, [topic])
        assert (r.error_code, r.member_epoch) == (E.none, 2)  # the classic generation was 1
        d = wire.request(build(request_module(15, 6).DescribeGroupsRequest, groups=[group]))
        assert d.groups[0].error_message == f"Group {group} is not a classic group."
        deadline = time.monotonic() + 20
        while not (classic.poll(0.05) is None and classic.assignment()):
            assert time.monotonic() < deadline
        assert classic.assignment()  # still a member, now of the consumer group
    finally:
        classic.close()


def test_new_partitions_start_a_new_epoch(kbroker: BrokerProcess) -> None:
    from confluent_kafka.admin import NewPartitions

    topic = f"k848-grow-{uuid.uuid4().hex[:8]}"
    confluent_create_topic(kbroker.bootstrap, topic, 2)
    own = Ownership()
    group = f"grow-{topic}"
    members = [Member(n, kbroker, group, topic, own) for n in ("a", "b")]
    try:
        wait_until(
            lambda: all(len(m.assigned) == 1 for m in members),
            30,
            poll_all(members),
            "one partition each",
        )
        admin = AdminClient({"bootstrap.servers": kbroker.bootstrap})
        admin.create_partitions([NewPartitions(topic, 4)])[topic].result(15)
        confluent_produce(kbroker.bootstrap, topic, range(100))
        wait_until(
            lambda: (
                all(len(m.assigned) == 2 for m in members)
                and len(members[0].indices() | members[1].indices()) == 100
            ),
            30,
            poll_all(members),
            "the new partitions to be assigned and read",
        )
        assert members[0].assigned.isdisjoint(members[1].assigned)
        assert not own.violations, own.violations
    finally:
        for m in members:
            m.close()


def test_regex_subscription(kbroker: BrokerProcess) -> None:
    prefix = f"k848-rx{uuid.uuid4().hex[:6]}"
    for suffix in ("one", "two"):
        confluent_create_topic(kbroker.bootstrap, f"{prefix}-{suffix}", 2)
    confluent_create_topic(kbroker.bootstrap, f"other-{prefix}", 2)
    own = Ownership()
    m = Member("a", kbroker, f"rx-{prefix}", f"^{prefix}-.*", own)
    try:
        wait_until(
            lambda: len(m.consumer.assignment()) == 4, 30, m.poll, "the regex's 4 partitions"
        )
        topics = {tp.topic for tp in m.consumer.assignment()}
        assert topics == {f"{prefix}-one", f"{prefix}-two"}
    finally:
        m.close()
