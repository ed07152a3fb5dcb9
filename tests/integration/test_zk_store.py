"""KafkaZkStore against a real ZooKeeper: Kafka's layout, elections, fencing, watches,
ZooKeeper restarts and session expiry. Raw znodes are read back with a plain kazoo client,
as an operator would with zkCli. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from kazoo.client import KazooClient

from pybroker.replication import zk_data as zd
from pybroker.replication.zk_client import (
    SessionEvent,
    SessionState,
    ZkClient,
    ZkConnectionTimeoutError,
    parse_zookeeper_connect,
)
from pybroker.replication.zk_data import (
    BrokerEndpoint,
    BrokerRegistration,
    PartitionStateZnode,
    TopicAssignment,
)
from pybroker.replication.zk_store import (
    BrokerIdInUseError,
    ControllerMovedError,
    KafkaZkStore,
    StaleZkVersionError,
    TopicExistsError,
)
from tests.support.broker import free_port
from tests.support.zk_fixtures import zookeeper_fixture  # noqa: F401 - provides `zookeeper`
from tests.support.zookeeper import ZooKeeperProcess

pytestmark = pytest.mark.timeout(120)

SESSION_MS = 4000  # granted as asked: the test server's tickTime is 500 ms (max 10 s)


async def wait_until(pred: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or pred}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def open_store(zk: ZooKeeperProcess, chroot: str = "") -> AsyncIterator[KafkaZkStore]:
    client = ZkClient(
        zk.connect + chroot, session_timeout_ms=SESSION_MS, connection_timeout_ms=10_000
    )
    await client.start()
    try:
        yield KafkaZkStore(client)
    finally:
        await client.close()


@contextlib.contextmanager
def raw_zk(zk: ZooKeeperProcess, **kwargs: object) -> Iterator[KazooClient]:
    """A plain kazoo client: what zkCli would show."""
    kz = KazooClient(hosts=zk.connect, timeout=SESSION_MS / 1000, **kwargs)
    kz.start(timeout=10)
    try:
        yield kz
    finally:
        kz.stop()
        kz.close()


def registration(broker_id: int, port: int = 9092, rack: str | None = None) -> BrokerRegistration:
    return BrokerRegistration(
        broker_id, (BrokerEndpoint("PLAINTEXT", "127.0.0.1", port + broker_id),), rack=rack
    )


def new_topic(
    store_epoch_states: int, name: str = "t", replicas: tuple[int, ...] = (1, 2)
) -> tuple[TopicAssignment, dict[int, PartitionStateZnode]]:
    assignment = TopicAssignment(
        name, zd.new_kafka_uuid(), {p: replicas for p in range(store_epoch_states)}
    )
    states = {
        p: PartitionStateZnode(replicas[0], 0, replicas, controller_epoch=0)
        for p in range(store_epoch_states)
    }
    return assignment, states


# ------------------------------------------------------------------------------------- config


def test_parse_zookeeper_connect():
    c = parse_zookeeper_connect("h1:2181,h2:2182/kafka/prod")
    assert (c.hosts, c.chroot) == ("h1:2181,h2:2182", "/kafka/prod")
    assert parse_zookeeper_connect("localhost:2181").chroot == ""
    assert parse_zookeeper_connect("localhost:2181/").chroot == ""
    assert parse_zookeeper_connect(" a:1 , b /x").hosts == "a:1,b"
    assert parse_zookeeper_connect("[::1]:2181").hosts == "[::1]:2181"
    for bad in ("", "/kafka", "h:2181/kafka/", "h:2181//x", "h:x:y"):
        with pytest.raises(ValueError):
            parse_zookeeper_connect(bad)


async def test_connection_timeout_when_nothing_listens():
    client = ZkClient(f"127.0.0.1:{free_port()}", connection_timeout_ms=800)
    t0 = time.monotonic()
    with pytest.raises(ZkConnectionTimeoutError):
        await client.start()
    assert time.monotonic() - t0 < 5


# ------------------------------------------------------------------------------------- layout


async def test_layout_and_json_as_kafka_writes_them(zookeeper):
    async with open_store(zookeeper) as store:
        await store.create_top_level_paths()
        cluster_id = await store.get_or_create_cluster_id()
        assert await store.get_or_create_cluster_id("other") == cluster_id
        epoch_of_broker = await store.register_broker(registration(1, rack="r1"))
        epoch = await store.try_elect_controller(1)
        assert epoch is not None and epoch.epoch == 1
        assignment, states = new_topic(2)
        await store.create_topic(assignment, {"cleanup.policy": "compact"}, states, epoch)
        change = await store.change_topic_config("t", {"retention.ms": "1000"})
        isr_change = await store.propagate_isr_changes([("t", 1), ("t", 0)])
        block = await store.allocate_producer_id_block(1)
        await store.mark_topic_for_deletion("t")

        with raw_zk(zookeeper) as kz:
            for path in zd.PERSISTENT_PATHS:
                assert kz.exists(path) is not None, path
            # Containers carry null data, as Kafka's createRecursive writes them.
            assert kz.get("/brokers/ids")[0] is None
            assert kz.get("/brokers/topics/t/partitions")[0] is None

            assert json.loads(kz.get("/cluster/id")[0]) == {"version": "1", "id": cluster_id}

            data, stat = kz.get("/brokers/ids/1")
            assert stat.ephemeralOwner == store.client.session_id
            assert stat.czxid == epoch_of_broker
            broker = json.loads(data)
            ts = broker.pop("timestamp")
            assert isinstance(ts, str) and abs(int(ts) - time.time() * 1000) < 60_000
            assert broker == {
                "features": {},
                "listener_security_protocol_map": {"PLAINTEXT": "PLAINTEXT"},
                "endpoints": ["PLAINTEXT://127.0.0.1:9093"],
                "jmx_port": -1,
                "rack": "r1",
                "port": 9093,
                "host": "127.0.0.1",
                "version": 5,
            }

            data, stat = kz.get("/controller")
            controller = json.loads(data)
            assert stat.ephemeralOwner == store.client.session_id
            assert isinstance(controller.pop("timestamp"), str)
            assert controller == {"version": 2, "brokerid": 1, "kraftControllerEpoch": -1}
            assert kz.get("/controller_epoch")[0] == b"1"

            topic = json.loads(kz.get("/brokers/topics/t")[0])
            assert topic == {
                "partitions": {"0": [1, 2], "1": [1, 2]},
                "topic_id": zd.topic_id_to_str(assignment.topic_id),
                "adding_replicas": {},
                "removing_replicas": {},
                "version": 3,
            }
            for p in (0, 1):
                data, stat = kz.get(f"/brokers/topics/t/partitions/{p}/state")
                assert json.loads(data) == {
                    "controller_epoch": 1,
                    "leader": 1,
                    "version": 1,
                    "leader_epoch": 0,
                    "isr": [1, 2],
                }
                assert stat.version == 0

            assert json.loads(kz.get("/config/topics/t")[0]) == {
                "version": 1,
                "config": {"retention.ms": "1000"},
            }
            assert change == "/config/changes/config_change_0000000000"
            assert json.loads(kz.get(change)[0]) == {"version": 2, "entity_path": "topics/t"}
            assert isr_change == "/isr_change_notification/isr_change_0000000000"
            assert json.loads(kz.get(isr_change)[0]) == {
                "version": 1,
                "partitions": [{"topic": "t", "partition": 0}, {"topic": "t", "partition": 1}],
            }
            assert json.loads(kz.get("/latest_producer_id_block")[0]) == {
                "version": 1,
                "broker": 1,
                "block_start": "0",
                "block_end": "999",
            }
            assert (block.first_producer_id, block.last_producer_id) == (0, 999)
            assert kz.get_children("/admin/delete_topics") == ["t"]

        # The store reads back what it wrote.
        got = await store.get_topic_assignment("t")
        assert got is not None and got.partitions == assignment.partitions
        assert got.topic_id == assignment.topic_id and got.zk_version == 0
        assert await store.get_topics() == ["t"]
        assert await store.get_topic_config("t") == {"retention.ms": "1000"}
        assert await store.get_config_change("config_change_0000000000") == "topics/t"
        assert await store.get_isr_change_notifications() == ["0000000000"]
        assert await store.get_partitions_from_isr_changes(["0000000000"]) == {
            ("t", 0),
            ("t", 1),
        }
        st = await store.get_partition_state("t", 1)
        assert st == PartitionStateZnode(1, 0, (1, 2), 1, zk_version=0)
        brokers = await store.get_brokers()
        assert list(brokers) == [1] and brokers[1].rack == "r1"
        assert brokers[1].epoch == epoch_of_broker
        assert (await store.get_controller()).broker_id == 1
        assert await store.get_topic_deletions() == ["t"]
        with pytest.raises(TopicExistsError):
            await store.create_topic(assignment, {}, states, epoch)


async def test_chroot_is_created_and_everything_lives_under_it(zookeeper):
    with raw_zk(zookeeper) as kz:
        assert kz.exists("/kafka") is None
    async with open_store(zookeeper, "/kafka/c1") as store:
        await store.create_top_level_paths()
        seen: list[list[int]] = []
        store.watch_broker_ids(seen.append)
        await store.register_broker(registration(7))
        await wait_until(lambda: seen and seen[-1] == [7], what="watch under chroot")
        with raw_zk(zookeeper) as kz:
            assert kz.exists("/kafka/c1/brokers/ids/7") is not None
            assert kz.exists("/brokers") is None
            assert sorted(kz.get_children("/")) == ["kafka", "zookeeper"]
    # A second broker with the same chroot sees the first one's data.
    async with open_store(zookeeper, "/kafka/c1") as store:
        assert await store.get_broker_ids() == []  # the ephemeral went with its session
        assert await store.client.exists("/brokers/topics") is not None


# ------------------------------------------------------------------------------------- membership


async def test_ephemeral_registration_and_membership_watch_on_the_loop(zookeeper):
    loop_thread = threading.get_ident()
    async with open_store(zookeeper) as watcher:
        await watcher.create_top_level_paths()
        seen: list[list[int]] = []
        threads: set[int] = set()

        def on_ids(ids: list[int]) -> None:
            threads.add(threading.get_ident())
            seen.append(ids)

        sub = watcher.watch_broker_ids(on_ids)
        await asyncio.wait_for(sub.initialized.wait(), 10)
        assert seen[-1] == []
        async with open_store(zookeeper) as b2, open_store(zookeeper) as b3:
            await b2.register_broker(registration(2))
            await b3.register_broker(registration(3))
            await wait_until(lambda: seen[-1] == [2, 3], what="both brokers")
            assert (await watcher.get_broker(3)).endpoint("PLAINTEXT").port == 9095
        await wait_until(lambda: seen[-1] == [], what="closed sessions remove ephemerals")
        assert threads == {loop_thread}
        sub.cancel()


@contextlib.asynccontextmanager
async def crashed_broker(zookeeper) -> AsyncIterator[subprocess.Popen[bytes]]:
    """A "crashed broker": a process that registered id 1, to be killed -9 by the test,
    leaving its session (and ephemeral) alive on the server until the session timeout."""
    script = (
        "import sys, time\n"
        "from kazoo.client import KazooClient\n"
        f"c = KazooClient(hosts='{zookeeper.connect}', timeout=2.0)\n"
        "c.start(timeout=10)\n"
        "c.create('/brokers/ids/1', b'{}', ephemeral=True, makepath=True)\n"
        "print('registered', flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
        assert line.strip() == b"registered"
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


async def test_register_waits_for_a_stale_ephemeral_to_expire(zookeeper, tmp_path):
    async with crashed_broker(zookeeper) as proc, open_store(zookeeper) as store:
        with pytest.raises(BrokerIdInUseError):
            await store.register_broker(registration(1), stale_timeout_s=0.3)
        proc.kill()
        proc.wait(10)
        t0 = time.monotonic()
        await store.register_broker(registration(1), stale_timeout_s=20)
        waited = time.monotonic() - t0
        assert 0.5 < waited < 15, waited
        reg = await store.get_broker(1)
        assert reg is not None and reg.endpoints[0].port == 9093
        # Registering again on the same session is idempotent.
        await store.register_broker(registration(1))


async def test_register_outlasts_a_zookeeper_restart_while_waiting(zookeeper, tmp_path):
    """A broker restarted after kill -9 waits for its old session's ephemeral; ZooKeeper
    restarting meanwhile (longer than the connection timeout) must not end its start-up:
    the restarted server gives the old session a fresh timeout, and the wait goes on."""
    async with crashed_broker(zookeeper) as proc:
        proc.kill()
        proc.wait(10)
        async with open_store(zookeeper) as store:
            store.client.connection_timeout_ms = 700
            registering = asyncio.ensure_future(
                store.register_broker(registration(1), stale_timeout_s=6)
            )
            await asyncio.sleep(0.3)
            assert not registering.done()  # waiting for the stale ephemeral
            await asyncio.to_thread(zookeeper.stop)
            await asyncio.sleep(1.5)  # over the connection timeout
            await asyncio.to_thread(zookeeper.start)
            epoch = await asyncio.wait_for(registering, 30)
            reg = await store.get_broker(1)
            assert reg is not None and reg.epoch == epoch and reg.endpoints[0].port == 9093


# ------------------------------------------------------------------------------------- controller


async def test_exactly_one_controller_and_epochs_increase(zookeeper):
    async with open_store(zookeeper) as a, open_store(zookeeper) as b:
        await a.create_top_level_paths()
        results = await asyncio.gather(a.try_elect_controller(1), b.try_elect_controller(2))
        winners = [r for r in results if r is not None]
        assert len(winners) == 1
        assert winners[0].epoch == 1
        winner_id = 1 if results[0] is not None else 2
        loser = b if winner_id == 1 else a
        loser_id = 3 - winner_id
        assert (await loser.get_controller()).broker_id == winner_id
        assert await loser.try_elect_controller(loser_id) is None

        seen: list[int | None] = []
        loser.watch_controller(lambda c: seen.append(c.broker_id if c else None))
        await wait_until(lambda: seen == [winner_id], what="controller watch")
        winner = a if winner_id == 1 else b
        await winner.client.close()  # the controller dies
        await wait_until(lambda: seen[-1] is None, what="controller gone")
        epoch = await loser.try_elect_controller(loser_id)
        assert epoch is not None and epoch.epoch == 2
        assert epoch == await loser.get_controller_epoch()
        await wait_until(lambda: seen[-1] == loser_id, what="new controller seen")
        # Resigning removes /controller, only with the current epoch.
        await loser.resign_controller(epoch)
        assert await loser.get_controller() is None


async def test_a_deposed_controller_changes_nothing(zookeeper):
    async with open_store(zookeeper) as old, open_store(zookeeper) as new:
        await old.create_top_level_paths()
        old_epoch = await old.try_elect_controller(1)
        assert old_epoch is not None
        assignment, states = new_topic(1, "kept")
        await old.create_topic(assignment, {}, states, old_epoch)
        # The old controller is deposed (as when its session expires): another wins.
        await old.client.delete(zd.CONTROLLER_PATH)
        new_epoch = await new.try_elect_controller(2)
        assert new_epoch is not None and new_epoch.epoch == 2

        with raw_zk(zookeeper) as kz:
            before = {p: kz.get(p)[0] for p in _tree(kz, "/brokers") + _tree(kz, "/config")}

        a2, s2 = new_topic(2, "fresh")
        with pytest.raises(ControllerMovedError):
            await old.create_topic(a2, {"x": "y"}, s2, old_epoch)
        state = await old.get_partition_state("kept", 0)
        moved = PartitionStateZnode(2, 1, (2,), 1, zk_version=state.zk_version)
        with pytest.raises(ControllerMovedError):
            await old.update_partition_states({("kept", 0): moved}, old_epoch)
        with pytest.raises(ControllerMovedError):
            await old.delete_topic("kept", old_epoch)
        with pytest.raises(ControllerMovedError):
            await old.resign_controller(old_epoch)

        with raw_zk(zookeeper) as kz:
            after = {p: kz.get(p)[0] for p in _tree(kz, "/brokers") + _tree(kz, "/config")}
            assert kz.exists("/controller") is not None
        assert after == before

        # The new controller's writes go through.
        result = await new.update_partition_states({("kept", 0): moved}, new_epoch)
        assert result.updated[("kept", 0)].controller_epoch == 2
        assert result.updated[("kept", 0)].zk_version == 1
        await new.delete_topic("kept", new_epoch)
        assert await new.get_topics() == []
        assert await new.client.exists("/brokers/topics/kept") is None
        assert await new.client.exists("/config/topics/kept") is None


def _tree(kz: KazooClient, path: str) -> list[str]:
    out = [path]
    for child in kz.get_children(path):
        out += _tree(kz, f"{path.rstrip('/')}/{child}")
    return out


async def test_stale_partition_state_versions_are_refused(zookeeper):
    async with open_store(zookeeper) as ctl, open_store(zookeeper) as leader:
        await ctl.create_top_level_paths()
        epoch = await ctl.try_elect_controller(1)
        assignment, states = new_topic(2, "t", (1, 2, 3))
        await ctl.create_topic(assignment, {}, states, epoch)
        s0 = await ctl.get_partition_state("t", 0)
        assert s0.zk_version == 0

        # The leader shrinks the ISR (ZooKeeper-mode ReplicaManager) ...
        shrunk = PartitionStateZnode(1, 0, (1, 2), s0.controller_epoch, zk_version=0)
        written = await leader.update_leader_and_isr("t", 0, shrunk)
        assert written.zk_version == 1
        # ... a retry of the same write (after a lost reply) counts as done ...
        assert await leader.update_leader_and_isr("t", 0, shrunk) == written
        # ... but a different write from the stale version is refused.
        with pytest.raises(StaleZkVersionError) as e:
            await leader.update_leader_and_isr(
                "t", 0, PartitionStateZnode(1, 0, (1,), 1, zk_version=0)
            )
        assert e.value.current == written

        # The controller, from its stale read, cannot overwrite the leader's change.
        elect = PartitionStateZnode(2, 1, (2, 3), 1, zk_version=0)
        fresh_p1 = await ctl.get_partition_state("t", 1)
        result = await ctl.update_partition_states(
            {("t", 0): elect, ("t", 1): PartitionStateZnode(3, 1, (3,), 1, fresh_p1.zk_version)},
            epoch,
        )
        assert result.stale == [("t", 0)]
        assert list(result.updated) == [("t", 1)] and result.missing == []
        assert await ctl.get_partition_state("t", 0) == written
        # Re-read and retry: accepted.
        retry = PartitionStateZnode(2, 1, (2,), 1, zk_version=written.zk_version)
        result = await ctl.update_partition_states({("t", 0): retry}, epoch)
        assert result.updated[("t", 0)].zk_version == 2
        result = await ctl.update_partition_states(
            {("gone", 0): PartitionStateZnode(1, 0, (1,), 1, 0)}, epoch
        )
        assert result.missing == [("gone", 0)]


async def test_isr_change_notifications_flow_to_the_controller(zookeeper):
    async with open_store(zookeeper) as ctl, open_store(zookeeper) as leader:
        await ctl.create_top_level_paths()
        epoch = await ctl.try_elect_controller(1)
        seen: list[list[str]] = []
        ctl.watch_isr_changes(seen.append)
        await wait_until(lambda: seen == [[]], what="initial")
        assignment, states = new_topic(1, "a")
        await ctl.create_topic(assignment, {}, states, epoch)
        await leader.update_isr_and_notify("a", 0, PartitionStateZnode(1, 0, (1,), 1, 0))
        await leader.propagate_isr_changes([("b", 3)])
        await wait_until(lambda: len(seen[-1]) == 2, what="two notifications")
        assert await ctl.get_partitions_from_isr_changes(seen[-1]) == {("a", 0), ("b", 3)}
        await ctl.delete_isr_change_notifications(seen[-1], epoch)
        await wait_until(lambda: seen[-1] == [], what="deleted")


async def test_topic_deletion_and_config_change_watches(zookeeper):
    async with open_store(zookeeper) as ctl, open_store(zookeeper) as admin:
        await ctl.create_top_level_paths()
        epoch = await ctl.try_elect_controller(1)
        assignment, states = new_topic(3, "doomed")
        await ctl.create_topic(assignment, {"a": "1"}, states, epoch)
        deletions: list[list[str]] = []
        changes: list[list[str]] = []
        assignments: list[TopicAssignment | None] = []
        ctl.watch_topic_deletions(deletions.append)
        ctl.watch_config_changes(changes.append)
        ctl.watch_topic_assignment("doomed", assignments.append)
        await wait_until(lambda: deletions and changes and assignments, what="initial")

        await admin.change_topic_config("doomed", {"a": "2"})
        await wait_until(lambda: changes[-1] == ["config_change_0000000000"], what="change")
        assert await ctl.get_config_change(changes[-1][0]) == "topics/doomed"
        assert await ctl.get_topic_config("doomed") == {"a": "2"}

        grown = TopicAssignment(
            "doomed",
            assignment.topic_id,
            {**assignment.partitions, 3: (2, 1)},
            zk_version=assignments[-1].zk_version,
        )
        new_state = {3: PartitionStateZnode(2, 0, (2, 1), 0)}
        written = await ctl.add_partitions(grown, new_state, epoch)
        assert written[3].controller_epoch == epoch.epoch and written[3].zk_version == 0
        await wait_until(lambda: 3 in (assignments[-1] or grown).partitions, what="grown")
        assert (await ctl.get_partition_state("doomed", 3)).leader == 2

        await admin.mark_topic_for_deletion("doomed")
        await wait_until(lambda: deletions[-1] == ["doomed"], what="deletion request")
        await ctl.delete_topic("doomed", epoch)
        await wait_until(lambda: deletions[-1] == [], what="deletion done")
        await wait_until(lambda: assignments[-1] is None, what="assignment gone")
        assert await ctl.get_topics() == []
        assert await ctl.get_topic_config("doomed") == {}


# ------------------------------------------------------------------------------------- restarts


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_watches_and_session_survive_a_short_zookeeper_restart(zookeeper, how):
    async with open_store(zookeeper) as watcher:
        await watcher.create_top_level_paths()
        epoch = await watcher.try_elect_controller(1)
        await watcher.register_broker(registration(1))
        assignment, states = new_topic(1)
        await watcher.create_topic(assignment, {}, states, epoch)
        events: list[SessionEvent] = []
        watcher.client.add_session_listener(events.append)
        ids: list[list[int]] = []
        st: list[PartitionStateZnode | None] = []
        topics: list[list[str]] = []
        watcher.watch_broker_ids(ids.append)
        watcher.watch_partition_state("t", 0, st.append)
        watcher.watch_topics(topics.append)
        await wait_until(lambda: ids and st and topics, what="initial deliveries")
        session = watcher.client.session_id

        if how == "kill":
            await asyncio.to_thread(zookeeper.kill)
            await asyncio.sleep(0.5)
            await asyncio.to_thread(zookeeper.start)
        else:
            await asyncio.to_thread(zookeeper.restart, 0.5)
        await wait_until(lambda: watcher.client.connected, what="reconnect")
        states_seen = [e.state for e in events]
        assert SessionState.SUSPENDED in states_seen and SessionState.EXPIRED not in states_seen
        assert events[-1] == SessionEvent(SessionState.CONNECTED, session, new_session=False)
        assert watcher.client.session_id == session

        async with open_store(zookeeper) as other:
            await other.register_broker(registration(2))
            s = await other.get_partition_state("t", 0)
            await other.update_leader_and_isr(
                "t", 0, PartitionStateZnode(1, 0, (1,), 1, s.zk_version)
            )
            a2, s2 = new_topic(1, "u")
            await watcher.create_topic(a2, {}, s2, epoch)  # still the controller
            await wait_until(lambda: ids[-1] == [1, 2], what="membership after restart")
            await wait_until(lambda: st[-1] is not None and st[-1].isr == (1,), what="state")
            await wait_until(lambda: topics[-1] == ["t", "u"], what="topics after restart")
        assert await watcher.get_broker(1) is not None  # our ephemeral survived


async def test_session_expiry_is_surfaced_and_recovered_from(zookeeper):
    async with open_store(zookeeper) as store:
        await store.create_top_level_paths()
        await store.register_broker(registration(1))
        epoch = await store.try_elect_controller(1)
        assert epoch is not None
        events: list[SessionEvent] = []
        store.client.add_session_listener(events.append)
        ids: list[list[int]] = []
        store.watch_broker_ids(ids.append)
        await wait_until(lambda: ids == [[1]], what="initial")
        old_session = store.client.session_id

        # Expire the session the classic way: another client attaches to it and closes it.
        session_id, password = store.client.client_id
        with raw_zk(zookeeper, client_id=(session_id, password)):
            pass

        await wait_until(
            lambda: any(e.state is SessionState.EXPIRED for e in events), what="expiry event"
        )
        await wait_until(
            lambda: events[-1].state is SessionState.CONNECTED and events[-1].new_session,
            what="new session",
        )
        assert store.client.session_id not in (None, old_session)
        # The ephemerals went with the old session; the watch (re-armed) says so.
        await wait_until(lambda: ids[-1] == [], what="registration gone")
        assert await store.get_controller() is None
        # The broker registers again and re-runs the election: a new, higher epoch.
        await store.register_broker(registration(1))
        await wait_until(lambda: ids[-1] == [1], what="re-registered")
        again = await store.try_elect_controller(1)
        assert again is not None and again.epoch == 2
        with pytest.raises(ControllerMovedError):
            await store.resign_controller(epoch)


async def test_requests_time_out_while_zookeeper_is_down(zookeeper):
    async with open_store(zookeeper) as store:
        store.client.connection_timeout_ms = 700
        await asyncio.to_thread(zookeeper.stop)
        await wait_until(lambda: not store.client.connected, what="disconnect")
        t0 = time.monotonic()
        with pytest.raises(ZkConnectionTimeoutError):
            await store.get_topics()
        assert time.monotonic() - t0 < 5
        await asyncio.to_thread(zookeeper.start)
        store.client.connection_timeout_ms = 10_000
        await store.create_top_level_paths()
        assert await store.get_topics() == []


# ------------------------------------------------------------------------------------- producer ids


async def test_producer_id_blocks_from_two_brokers_never_overlap(zookeeper):
    async with open_store(zookeeper) as a, open_store(zookeeper) as b:
        await a.create_top_level_paths()
        blocks = await asyncio.gather(
            *(a.allocate_producer_id_block(1) for _ in range(15)),
            *(b.allocate_producer_id_block(2) for _ in range(15)),
        )
        ranges = sorted((x.first_producer_id, x.last_producer_id) for x in blocks)
        assert ranges == [(i * 1000, i * 1000 + 999) for i in range(30)]
        assert {x.assigned_broker_id for x in blocks} == {1, 2}
        latest = zd.decode_producer_id_block((await a.client.get(zd.PRODUCER_ID_BLOCK_PATH))[0])
        assert latest.last_producer_id == 29_999


async def test_producer_id_block_without_top_level_paths(zookeeper):
    async with open_store(zookeeper, f"/c{uuid.uuid4().hex[:6]}") as store:
        block = await store.allocate_producer_id_block(0)
        assert block.first_producer_id == 0
        assert (await store.allocate_producer_id_block(0)).first_producer_id == 1000
