"""Storage through stock clients against a real broker process: retention by time and by
size, compaction (latest value per key, tombstones gone after delete.retention.ms),
DeleteRecords (confluent-kafka, kafka-python and every wire version).

Topic configs are set with AdminClient (CreateTopics configs and
IncrementalAlterConfigs); the broker checks retention every 200 ms, removes deleted
files after 300 ms and the cleaner backs off 200 ms, so every wait below is short and
bounded.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)
from kafka import KafkaAdminClient
from kafka import TopicPartition as KTopicPartition
from kafka.errors import OffsetOutOfRangeError as KOffsetOutOfRangeError
from kio.schema.errors import ErrorCode

from pybroker.protocol.codec import build
from tests.support.broker import BrokerProcess
from tests.support.wire import KafkaWire, request_module

pytestmark = pytest.mark.timeout(120)

TIMEOUT = 30
FAST = {
    "log.retention.check.interval.ms": "200",
    "log.segment.delete.delay.ms": "300",
    "log.cleaner.backoff.ms": "200",
}


@pytest.fixture(scope="module")
def sbroker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(tmp_path_factory.mktemp("storage") / "data", overrides=FAST).start()
    try:
        yield proc
    finally:
        if proc.proc is not None:
            proc.stop()


@pytest.fixture(scope="module")
def admin(sbroker: BrokerProcess) -> AdminClient:
    return AdminClient({"bootstrap.servers": sbroker.bootstrap})


def wait_until(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def create(admin: AdminClient, topic: str, partitions: int = 1, **configs: str) -> None:
    fut = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=configs)],
        operation_timeout=TIMEOUT,
    )[topic]
    fut.result(TIMEOUT)


def alter(admin: AdminClient, topic: str, **configs: str) -> None:
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
            for k, v in configs.items()
        ],
    )
    for fut in admin.incremental_alter_configs([resource]).values():
        fut.result(TIMEOUT)


def produce(
    bootstrap: str,
    topic: str,
    items: list[tuple[bytes | None, bytes | None, int | None]],
    partition: int = 0,
    codec: str = "none",
) -> list[int]:
    """acks=all; returns the offsets in order. items: (key, value, timestamp or None)."""
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "linger.ms": 5,
            "compression.type": codec,
            "batch.size": 1500,  # below the tests' segment.bytes
        }
    )
    offsets: dict[int, int] = {}
    errors: list[KafkaError] = []

    def report(i: int) -> Callable[[KafkaError | None, Any], None]:
        def cb(err: KafkaError | None, msg: Any) -> None:
            if err is not None:
                errors.append(err)
            else:
                offsets[i] = msg.offset()

        return cb

    for i, (key, value, ts) in enumerate(items):
        kwargs = {"timestamp": ts} if ts is not None else {}
        producer.produce(
            topic, key=key, value=value, partition=partition, on_delivery=report(i), **kwargs
        )
        if i % 500 == 0:
            producer.poll(0)
    assert producer.flush(TIMEOUT) == 0
    assert not errors, errors[:3]
    return [offsets[i] for i in range(len(items))]


def consume_all(
    bootstrap: str, topic: str, partition: int = 0
) -> list[tuple[int, bytes | None, bytes | None]]:
    """(offset, key, value) of every record from the log start to the high watermark."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"storage-{topic}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
        out = []
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                assert err.code() == KafkaError._PARTITION_EOF, err
                return out
            out.append((msg.offset(), msg.key(), msg.value()))
        raise AssertionError(f"{topic}: no partition EOF within {TIMEOUT}s")
    finally:
        consumer.close()


def watermarks(bootstrap: str, topic: str, partition: int = 0) -> tuple[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "storage-marks"})
    try:
        return consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=10, cached=False
        )
    finally:
        consumer.close()


def log_files(broker: BrokerProcess, topic: str, partition: int = 0) -> list[Path]:
    return sorted((broker.data_dir / f"{topic}-{partition}").iterdir())


def segment_sizes(broker: BrokerProcess, topic: str, partition: int = 0) -> dict[int, int]:
    """Base offset -> size of each .log file; the cleaner may swap a segment between the
    listing and the stat, so a listing that changed underneath is taken again."""
    for _ in range(50):
        try:
            return {
                int(p.name[:-4]): p.stat().st_size
                for p in log_files(broker, topic, partition)
                if p.name.endswith(".log")
            }
        except FileNotFoundError:
            time.sleep(0.05)
    raise AssertionError(f"the segments of {topic}-{partition} kept changing while listed")


def no_deleted_files(broker: BrokerProcess, topic: str) -> bool:
    return not [p for p in log_files(broker, topic) if ".deleted" in p.name]


VALUE = b"v" * 100


# ------------------------------------------------------------------------ retention


def test_retention_by_time(sbroker: BrokerProcess, admin: AdminClient) -> None:
    topic = "retention-time"
    create(admin, topic, **{"segment.bytes": "2048"})
    now = int(time.time() * 1000)
    old = produce(sbroker.bootstrap, topic, [(b"k", VALUE, now - 7_200_000)] * 150)
    recent = produce(sbroker.bootstrap, topic, [(b"k", VALUE, now)] * 30)
    assert old == list(range(150)) and recent == list(range(150, 180))
    before = segment_sizes(sbroker, topic)
    assert len(before) > 8
    time.sleep(0.5)  # retention.ms is still 7 days: nothing goes
    assert watermarks(sbroker.bootstrap, topic) == (0, 180)

    alter(admin, topic, **{"retention.ms": "3600000"})
    low, high = wait_until(
        lambda: (m := watermarks(sbroker.bootstrap, topic))[0] > 0 and m, "retention by time"
    )
    assert high == 180 and 100 < low <= 150
    # Old segments (max timestamp 2 h ago) are gone from disk once the delay has passed;
    # the one holding recent records stays.
    wait_until(lambda: no_deleted_files(sbroker, topic), ".deleted files to be removed")
    after = segment_sizes(sbroker, topic)
    assert min(after) == low and set(after) <= set(before) | {max(after)}
    records = consume_all(sbroker.bootstrap, topic)
    assert [o for o, _, _ in records] == list(range(low, 180))
    assert all(v == VALUE for _, _, v in records)


def test_retention_by_size(sbroker: BrokerProcess, admin: AdminClient) -> None:
    topic = "retention-size"
    create(admin, topic, **{"segment.bytes": "2048", "retention.bytes": "6000"})
    produce(sbroker.bootstrap, topic, [(b"k", VALUE, None)] * 200)
    low, high = wait_until(
        lambda: (m := watermarks(sbroker.bootstrap, topic))[0] > 0 and m, "retention by size"
    )
    wait_until(lambda: no_deleted_files(sbroker, topic), ".deleted files to be removed")
    sizes = wait_until(
        lambda: (s := segment_sizes(sbroker, topic)) and sum(s.values()) <= 6000 + 2048 and s,
        "the log to shrink to retention.bytes",
    )
    low, high = watermarks(sbroker.bootstrap, topic)
    assert high == 200 and min(sizes) == low
    records = consume_all(sbroker.bootstrap, topic)
    assert [o for o, _, _ in records] == list(range(low, 200))


# ------------------------------------------------------------------------ compaction


def test_compaction_keeps_latest_value_per_key_and_drops_tombstones(
    sbroker: BrokerProcess, admin: AdminClient
) -> None:
    topic = "compacted"
    create(
        admin,
        topic,
        **{
            "cleanup.policy": "compact",
            "segment.bytes": "4096",
            "min.cleanable.dirty.ratio": "0.01",
            "delete.retention.ms": "6000",
        },
    )
    items: list[tuple[bytes | None, bytes | None, int | None]] = []
    for round_ in range(8):
        items += [(b"key-%02d" % k, b"value-%02d-%d" % (k, round_), None) for k in range(40)]
    items += [(b"key-%02d" % k, None, None) for k in range(10)]  # tombstones
    offsets = produce(sbroker.bootstrap, topic, items, codec="lz4")
    # Incompressible fillers with unique keys push all of the above out of the active
    # segment (the cleaner never touches the active segment).
    fillers = [(b"filler-%03d" % i, os.urandom(100), None) for i in range(120)]
    offsets += produce(sbroker.bootstrap, topic, fillers)
    items += fillers
    assert max(segment_sizes(sbroker, topic)) > offsets[len(items) - len(fillers) - 1]
    latest: dict[bytes, tuple[int, bytes | None]] = {}
    for (key, value, _), offset in zip(items, offsets, strict=True):
        assert key is not None
        latest[key] = (offset, value)
    expected = sorted((o, k, v) for k, (o, v) in latest.items())

    def compacted() -> list | None:
        got = consume_all(sbroker.bootstrap, topic)
        keys = [k for _, k, _ in got]
        return got if len(keys) == len(set(keys)) else None

    got = wait_until(compacted, "the cleaner to compact the topic")
    # Read from the beginning: exactly the latest record of each key at its original
    # offset; the tombstones are still there (delete.retention.ms has not passed).
    assert got == expected
    assert sum(1 for _, _, v in got if v is None) == 10
    assert len(segment_sizes(sbroker, topic)) >= 2

    got = wait_until(
        lambda: (
            (g := consume_all(sbroker.bootstrap, topic))
            and not any(v is None for _, _, v in g)
            and g
        ),
        "tombstones to disappear after delete.retention.ms",
    )
    assert got == [(o, k, v) for o, k, v in expected if v is not None]
    assert (sbroker.data_dir / "cleaner-offset-checkpoint").read_text().count(topic) == 1


def test_compacted_topic_rejects_keyless_records(
    sbroker: BrokerProcess, admin: AdminClient
) -> None:
    topic = "compacted-nokey"
    create(admin, topic, **{"cleanup.policy": "compact"})
    producer = Producer({"bootstrap.servers": sbroker.bootstrap, "retries": 0})
    errs: list[KafkaError | None] = []
    producer.produce(topic, value=b"x", on_delivery=lambda e, m: errs.append(e))
    assert producer.flush(TIMEOUT) == 0
    assert errs and errs[0] is not None and errs[0].code() == KafkaError.INVALID_RECORD


# ------------------------------------------------------------------------ DeleteRecords


def test_delete_records_confluent(sbroker: BrokerProcess, admin: AdminClient) -> None:
    topic = "delete-records-c"
    create(admin, topic, partitions=2, **{"segment.bytes": "2048"})
    for p in (0, 1):
        produce(sbroker.bootstrap, topic, [(b"k", VALUE, None)] * 100, partition=p)
    futures = admin.delete_records(
        [TopicPartition(topic, 0, 42), TopicPartition(topic, 1, -1)], operation_timeout=10
    )
    results = {tp.partition: f.result(TIMEOUT) for tp, f in futures.items()}
    assert results[0].low_watermark == 42 and results[1].low_watermark == 100
    assert watermarks(sbroker.bootstrap, topic, 0) == (42, 100)
    assert watermarks(sbroker.bootstrap, topic, 1) == (100, 100)
    assert [o for o, _, _ in consume_all(sbroker.bootstrap, topic, 0)] == list(range(42, 100))
    assert consume_all(sbroker.bootstrap, topic, 1) == []
    # Whole segments below the new start are deleted, like retention's.
    wait_until(lambda: min(segment_sizes(sbroker, topic)) > 0, "segments below 42 to go")
    assert min(segment_sizes(sbroker, topic)) <= 42
    # Moving backwards changes nothing; beyond the high watermark is OFFSET_OUT_OF_RANGE.
    fut = admin.delete_records([TopicPartition(topic, 0, 10)])[TopicPartition(topic, 0, 10)]
    assert fut.result(TIMEOUT).low_watermark == 42
    bad = TopicPartition(topic, 0, 101)
    with pytest.raises(KafkaException) as info:
        admin.delete_records([bad])[bad].result(TIMEOUT)
    assert info.value.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE


def test_delete_records_kafka_python(sbroker: BrokerProcess, admin: AdminClient) -> None:
    topic = "delete-records-k"
    create(admin, topic, **{"segment.bytes": "2048"})
    produce(sbroker.bootstrap, topic, [(b"k", VALUE, None)] * 60)
    client = KafkaAdminClient(bootstrap_servers=sbroker.bootstrap, request_timeout_ms=30_000)
    try:
        result = client.delete_records({KTopicPartition(topic, 0): 25})
        assert result[KTopicPartition(topic, 0)]["low_watermark"] == 25
        with pytest.raises(KOffsetOutOfRangeError):
            client.delete_records({KTopicPartition(topic, 0): 61})
    finally:
        client.close()
    assert watermarks(sbroker.bootstrap, topic) == (25, 60)
    # The new log start survives a restart (checkpointed at shutdown).


@pytest.mark.parametrize("version", [0, 1, 2])
def test_delete_records_every_version(
    sbroker: BrokerProcess, admin: AdminClient, version: int
) -> None:
    topic = f"delete-records-v{version}"
    create(admin, topic, **{"segment.bytes": "2048"})
    compacted = f"delete-records-compact-v{version}"
    create(admin, compacted, **{"cleanup.policy": "compact"})
    produce(sbroker.bootstrap, topic, [(b"k", VALUE, None)] * 10)
    cls = request_module(21, version).DeleteRecordsRequest
    parts = [
        {"partition_index": 0, "offset": 3},
        {"partition_index": 7, "offset": 0},
    ]
    with KafkaWire("127.0.0.1", sbroker.port) as conn:
        body = conn.request(
            build(
                cls,
                timeout=5000,
                topics=[
                    {"name": topic, "partitions": parts},
                    {"name": compacted, "partitions": [{"partition_index": 0, "offset": 0}]},
                    {"name": "no-such-topic", "partitions": [{"partition_index": 0, "offset": 0}]},
                    {"name": topic + "", "partitions": []},
                ],
            )
        )
        got = {
            (t.name, p.partition_index): (p.error_code, p.low_watermark)
            for t in body.topics
            for p in t.partitions
        }
        assert got[(topic, 0)] == (ErrorCode.none, 3)
        assert got[(topic, 7)] == (ErrorCode.unknown_topic_or_partition, -1)
        assert got[(compacted, 0)] == (ErrorCode.policy_violation, -1)
        assert got[("no-such-topic", 0)] == (ErrorCode.unknown_topic_or_partition, -1)
        for offset, code, low in ((-2, ErrorCode.offset_out_of_range, -1), (-1, 0, 10)):
            body = conn.request(
                build(
                    cls,
                    timeout=5000,
                    topics=[
                        {"name": topic, "partitions": [{"partition_index": 0, "offset": offset}]}
                    ],
                )
            )
            p = body.topics[0].partitions[0]
            assert (p.error_code, p.low_watermark) == (code, low)
