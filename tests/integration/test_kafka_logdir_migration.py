"""An Apache Kafka 4.1 log dir, copied as it is, served by pybroker.

Kafka (KRaft, its own fresh data dir) writes a plain 3-partition topic (keys, headers,
explicit timestamps, gzip and zstd batches), a compacted topic its cleaner has compacted,
a topic with committed and aborted transactions, a consumer group's offsets and a
transactional id. After Kafka's clean shutdown the whole log dir (partition dirs,
checkpoints, ``meta.properties``, ``__consumer_offsets``, ``__transaction_state`` and
Kafka's own ``__cluster_metadata-0``) is copied into a fresh dir and pybroker is started
on it. pybroker must serve every record at the same offset, in both isolation levels,
keep the topic ids, configs and cluster id, the group's offsets and the transactional
state, hand out producer ids above Kafka's, and leave the metadata log untouched.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from tests.support.broker import BrokerProcess
from tests.support.kafka_ref import KafkaReference, run_tool

pytestmark = pytest.mark.timeout(300)

PLAIN, COMPACT, TXN = "mig-plain", "mig-compact", "mig-txn"
GROUP, TXN_ID = "mig-group", "mig-txn-id"
COMPACT_CONFIGS = {
    "cleanup.policy": "compact",
    "segment.ms": "300",
    "min.cleanable.dirty.ratio": "0.01",
    "delete.retention.ms": "0",
}
Row = tuple[int, bytes | None, bytes | None, int, tuple[tuple[str, bytes], ...]]


def read_partition(bootstrap: str, topic: str, partition: int, isolation: str) -> list[Row]:
    """Every record of one partition up to its end: (offset, key, value, ts, headers)."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            "enable.partition.eof": True,
        }
    )
    c.assign([TopicPartition(topic, partition, 0)])
    out: list[Row] = []
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error() is not None:
                if m.error().code() == -191:  # _PARTITION_EOF
                    return out
                raise AssertionError(f"{topic}-{partition}: {m.error()}")
            headers = tuple((k, v) for k, v in (m.headers() or []))
            out.append((m.offset(), m.key(), m.value(), m.timestamp()[1], headers))
    finally:
        c.close()
    raise AssertionError(f"{topic}-{partition}: no end of partition within 20 s")


@dataclass
class KafkaWrote:
    """What Kafka served before it stopped, and where its log dir was."""

    log_dir: Path
    cluster_id: str
    topic_ids: dict[str, str]
    reads: dict[tuple[str, int, str], list[Row]]
    ends: dict[tuple[str, int], tuple[int, int]]
    committed: dict[int, int]


PARTITIONS = {PLAIN: 3, COMPACT: 1, TXN: 1}


def snapshot_reads(bootstrap: str) -> dict[tuple[str, int, str], list[Row]]:
    return {
        (topic, p, iso): read_partition(bootstrap, topic, p, iso)
        for topic, count in PARTITIONS.items()
        for p in range(count)
        for iso in ("read_committed", "read_uncommitted")
    }


def watermarks(bootstrap: str) -> dict[tuple[str, int], tuple[int, int]]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    try:
        return {
            (t, p): c.get_watermark_offsets(TopicPartition(t, p), timeout=10)
            for t, count in PARTITIONS.items()
            for p in range(count)
        }
    finally:
        c.close()


def committed_offsets(bootstrap: str) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP})
    try:
        tps = c.committed([TopicPartition(PLAIN, p) for p in range(3)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def topic_ids(bootstrap: str) -> dict[str, str]:
    out = run_tool("kafka-topics", "--bootstrap-server", bootstrap, "--describe").check()
    ids: dict[str, str] = {}
    for line in out.stdout.splitlines():
        if line.startswith("Topic:"):
            fields = dict(f.split(": ", 1) for f in line.split("\t") if ": " in f)
            ids[fields["Topic"]] = fields["TopicId"]
    return ids


def write_to_kafka(bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [
            NewTopic(PLAIN, 3, 1),
            NewTopic(COMPACT, 1, 1, config=COMPACT_CONFIGS),
            NewTopic(TXN, 1, 1),
        ]
    )
    for f in futures.values():
        f.result(30)
    base = int(time.time() * 1000) - 100_000
    for codec in ("none", "gzip", "zstd"):
        p = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "linger.ms": 5})
        for i in range(30):
            p.produce(
                PLAIN,
                key=f"{codec}-{i}".encode(),
                value=f"value {codec} {i}".encode() * 3,
                partition=i % 3,
                timestamp=base + i,
                headers=[("codec", codec.encode()), ("n", str(i).encode())],
            )
        assert p.flush(30) == 0
    # Compacted topic: rounds a segment.ms apart so the cleaner has closed segments.
    p = Producer({"bootstrap.servers": bootstrap})
    for r in range(4):
        for k in range(5):
            p.produce(COMPACT, key=b"key%d" % k, value=b"round%d" % r)
        assert p.flush(30) == 0
        time.sleep(0.4)
    p.produce(COMPACT, key=b"key0", value=None)  # a tombstone
    assert p.flush(30) == 0
    time.sleep(0.4)
    p.produce(COMPACT, key=b"tail", value=b"last")
    assert p.flush(30) == 0

    t = Producer({"bootstrap.servers": bootstrap, "transactional.id": TXN_ID})
    t.init_transactions(30)
    for i, commit in enumerate((True, False, True, False, True)):
        t.begin_transaction()
        for j in range(3):
            t.produce(TXN, key=b"t%d" % i, value=b"txn%d-%d" % (i, j), partition=0)
        assert t.flush(30) == 0
        if commit:
            t.commit_transaction(30)
        else:
            t.abort_transaction(30)

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP, "enable.auto.commit": False})
    deadline = time.monotonic() + 30
    while True:  # Kafka answers NOT_COORDINATOR while __consumer_offsets is being created
        try:
            c.commit(
                offsets=[TopicPartition(PLAIN, p, 5 + p) for p in range(3)], asynchronous=False
            )
            break
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    c.close()


def wait_compacted(bootstrap: str) -> None:
    """Kafka's cleaner has removed the overwritten rounds (bounded wait)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = read_partition(bootstrap, COMPACT, 0, "read_uncommitted")
        if rows and rows[0][0] > 0 and (b"key0", b"round3") not in [(r[1], r[2]) for r in rows]:
            return
        time.sleep(0.5)
    raise AssertionError("Kafka's cleaner did not compact mig-compact within 60 s")


@pytest.fixture(scope="module")
def kafka_wrote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaWrote]:
    ref = KafkaReference(
        tmp_path_factory.mktemp("kafka-own") / "data",
        overrides={"log.cleaner.backoff.ms": "200"},
    ).start()
    try:
        write_to_kafka(ref.bootstrap)
        wait_compacted(ref.bootstrap)
        wrote = KafkaWrote(
            log_dir=ref.log_dir,
            cluster_id=ref.cluster_id,
            topic_ids=topic_ids(ref.bootstrap),
            reads=snapshot_reads(ref.bootstrap),
            ends=watermarks(ref.bootstrap),
            committed=committed_offsets(ref.bootstrap),
        )
    finally:
        ref.stop()
    assert (ref.log_dir / ".kafka_cleanshutdown").exists(), ref.log_tail()
    yield wrote


@pytest.fixture(scope="module")
def migrated(
    kafka_wrote: KafkaWrote, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrokerProcess]:
    data = tmp_path_factory.mktemp("migrated") / "data"
    shutil.copytree(kafka_wrote.log_dir, data)
    proc = BrokerProcess(data, overrides={"log.cleaner.backoff.ms": "200"}).start()
    try:
        yield proc
    finally:
        proc.kill()


def test_kafka_wrote_what_the_test_needs(kafka_wrote: KafkaWrote) -> None:
    """The scenario is real: aborted data, a compacted prefix, a metadata log."""
    committed = kafka_wrote.reads[(TXN, 0, "read_committed")]
    everything = kafka_wrote.reads[(TXN, 0, "read_uncommitted")]
    assert len(committed) == 9 and len(everything) == 15
    assert kafka_wrote.reads[(COMPACT, 0, "read_uncommitted")][0][0] > 0
    assert (kafka_wrote.log_dir / "__cluster_metadata-0").is_dir()
    assert list((kafka_wrote.log_dir / f"{TXN}-0").glob("*.txnindex"))
    assert kafka_wrote.committed == {0: 5, 1: 6, 2: 7}


def test_every_record_at_the_same_offset(kafka_wrote: KafkaWrote, migrated: BrokerProcess) -> None:
    assert watermarks(migrated.bootstrap) == kafka_wrote.ends
    for key, rows in kafka_wrote.reads.items():
        topic, partition, isolation = key
        assert read_partition(migrated.bootstrap, topic, partition, isolation) == rows, key
    # read_committed hides exactly the aborted transactions' records.
    hidden = {r[2] for r in kafka_wrote.reads[(TXN, 0, "read_uncommitted")]} - {
        r[2] for r in kafka_wrote.reads[(TXN, 0, "read_committed")]
    }
    assert hidden == {b"txn%d-%d" % (i, j) for i in (1, 3) for j in range(3)}


def test_topics_configs_and_cluster_id_kept(
    kafka_wrote: KafkaWrote, migrated: BrokerProcess
) -> None:
    ids = topic_ids(migrated.bootstrap)
    for topic in (PLAIN, COMPACT, TXN, "__consumer_offsets", "__transaction_state"):
        assert ids[topic] == kafka_wrote.topic_ids[topic], topic
    assert "__cluster_metadata" not in ids
    admin = AdminClient({"bootstrap.servers": migrated.bootstrap})
    meta = admin.list_topics(timeout=10)
    assert meta.cluster_id == kafka_wrote.cluster_id
    assert {t: len(meta.topics[t].partitions) for t in PARTITIONS} == PARTITIONS
    (resource,) = admin.describe_configs([ConfigResource("topic", COMPACT)]).values()
    described = resource.result(10)
    for name, value in COMPACT_CONFIGS.items():
        assert described[name].value == value, name
        assert described[name].source == 1  # DYNAMIC_TOPIC_CONFIG


def test_group_offsets_and_transactions_kept(
    kafka_wrote: KafkaWrote, migrated: BrokerProcess
) -> None:
    assert committed_offsets(migrated.bootstrap) == kafka_wrote.committed
    listed = run_tool(
        "kafka-transactions", "--bootstrap-server", migrated.bootstrap, "list"
    ).check()
    rows = [ln.split() for ln in listed.stdout.splitlines()[1:] if ln.strip()]
    assert [(r[0], r[3]) for r in rows] == [(TXN_ID, "CompleteCommit")]
    kafka_pid = int(rows[0][2])

    # The transactional id goes on (epoch bumped), new data lands after Kafka's end.
    t = Producer({"bootstrap.servers": migrated.bootstrap, "transactional.id": TXN_ID})
    t.init_transactions(30)
    t.begin_transaction()
    t.produce(TXN, value=b"after-migration", partition=0)
    t.commit_transaction(30)
    end = kafka_wrote.ends[(TXN, 0)][1]
    rows_after = read_partition(migrated.bootstrap, TXN, 0, "read_committed")
    assert rows_after[-1][0] == end and rows_after[-1][2] == b"after-migration"

    # A new idempotent producer gets an id Kafka never handed out.
    p = Producer({"bootstrap.servers": migrated.bootstrap, "enable.idempotence": True})
    p.produce(PLAIN, value=b"idempotent", partition=0)
    assert p.flush(30) == 0
    out = run_tool(
        "kafka-transactions",
        "--bootstrap-server",
        migrated.bootstrap,
        "describe-producers",
        "--topic",
        PLAIN,
        "--partition",
        "0",
    ).check()
    pids = {int(ln.split()[0]) for ln in out.stdout.splitlines()[1:] if ln.strip()}
    assert len(pids) == 1
    assert pids.pop() >= 1000 > kafka_pid  # Kafka's first block was [0, 999]


def test_metadata_log_untouched_and_restart_keeps_everything(
    kafka_wrote: KafkaWrote, migrated: BrokerProcess
) -> None:
    meta_dir = "__cluster_metadata-0"
    original = {p.name: p.read_bytes() for p in (kafka_wrote.log_dir / meta_dir).iterdir()}
    copied = {p.name: p.read_bytes() for p in (migrated.data_dir / meta_dir).iterdir()}
    assert copied == original
    assert "Leaving Kafka's metadata log __cluster_metadata-0" in migrated.log_path.read_text()

    before = {k: read_partition(migrated.bootstrap, *k) for k in kafka_wrote.reads}
    ids = topic_ids(migrated.bootstrap)
    assert migrated.stop() == 0
    migrated.start()
    assert topic_ids(migrated.bootstrap) == ids
    for key, rows in before.items():
        assert read_partition(migrated.bootstrap, *key) == rows, key


def test_compaction_goes_on_after_restart(migrated: BrokerProcess) -> None:
    """The adopted cleanup.policy=compact reaches the logs pybroker opened at start-up
    (before its metadata was loaded): its cleaner compacts what is written now."""
    before = read_partition(migrated.bootstrap, COMPACT, 0, "read_uncommitted")
    p = Producer({"bootstrap.servers": migrated.bootstrap})
    for r in range(3):
        p.produce(COMPACT, key=b"key1", value=b"pybroker%d" % r)
        assert p.flush(30) == 0
        time.sleep(0.4)  # > segment.ms: each round rolls a segment
    p.produce(COMPACT, key=b"tail", value=b"newest")
    assert p.flush(30) == 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = read_partition(migrated.bootstrap, COMPACT, 0, "read_uncommitted")
        values = {(r[1], r[2]) for r in rows}
        if (b"key1", b"round3") not in values and (b"key1", b"pybroker0") not in values:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"pybroker did not compact {COMPACT}: {rows}")
    latest = {r[1]: r[2] for r in rows}
    assert latest[b"key1"] == b"pybroker2" and latest[b"tail"] == b"newest"
    # Keys nobody rewrote keep Kafka's record at Kafka's offset.
    kept = [r for r in before if r[1] in (b"key2", b"key3", b"key4")]
    assert kept and all(r in rows for r in kept)
