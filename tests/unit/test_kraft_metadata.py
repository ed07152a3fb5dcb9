"""Reading an Apache Kafka KRaft metadata log for migration, and the adoption plan.

The records are encoded here byte for byte in Kafka's metadata record format (frame
version, api key, version, flexible body); the integration test
tests/integration/test_kafka_logdir_migration.py reads a log Kafka itself wrote.
"""

from __future__ import annotations

import struct
import uuid
from pathlib import Path

from pybroker.protocol.records import NewRecord, build_batch
from pybroker.replication.producer_id_store import LocalProducerIdStore, ProducerIdsBlock
from pybroker.storage.kraft_metadata import (
    METADATA_DIR,
    AdoptedTopic,
    KraftMetadata,
    KraftTopic,
    plan_adoption,
    read_kraft_metadata,
)

ZERO = uuid.UUID(int=0)
A, B = uuid.uuid4(), uuid.uuid4()


def uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        if n < 0x80:
            out.append(n)
            return bytes(out)
        out.append((n & 0x7F) | 0x80)
        n >>= 7


def cstr(s: str | None) -> bytes:
    if s is None:
        return b"\x00"
    raw = s.encode()
    return uvarint(len(raw) + 1) + raw


def record(api_key: int, body: bytes) -> bytes:
    return uvarint(1) + uvarint(api_key) + uvarint(0) + body + b"\x00"  # no tagged fields


def topic(name: str, tid: uuid.UUID) -> bytes:
    return record(2, cstr(name) + tid.bytes)


def partition(p: int, tid: uuid.UUID) -> bytes:
    # PartitionId, TopicId, then replicas/isr/... which the reader does not need.
    return record(3, struct.pack(">i", p) + tid.bytes + b"\x02\x00\x00\x00\x01")


def config(resource: str, name: str, value: str | None) -> bytes:
    return record(4, b"\x02" + cstr(resource) + cstr(name) + cstr(value))


def remove(tid: uuid.UUID) -> bytes:
    return record(5, tid.bytes)


def producer_ids(next_id: int) -> bytes:
    return record(15, struct.pack(">iqq", 1, 5, next_id))


def write_log(path: Path, values: list[bytes], base: int = 0) -> None:
    batch = build_batch([NewRecord(None, v) for v in values], base_offset=base)
    path.write_bytes(batch)


def test_reads_topics_partitions_configs_and_producer_ids(tmp_path: Path) -> None:
    meta = tmp_path / METADATA_DIR
    meta.mkdir()
    (tmp_path / "meta.properties").write_text("#\nnode.id=1\ncluster.id=abcDEF\nversion=1\n")
    write_log(
        meta / "00000000000000000000.log",
        [
            topic("orders", A),
            partition(0, A),
            partition(1, A),
            config("orders", "cleanup.policy", "compact"),
            config("orders", "retention.ms", "1000"),
            config("orders", "retention.ms", None),  # deleted again
            topic("gone", B),
            config("gone", "retention.ms", "5"),
            remove(B),
            producer_ids(2000),
            producer_ids(1000),  # never goes back
        ],
    )
    md = read_kraft_metadata([tmp_path / "elsewhere", tmp_path])
    assert md is not None
    assert md.cluster_id == "abcDEF"
    assert list(md.topics) == [A]
    assert md.topics[A].name == "orders" and md.topics[A].partitions == {0, 1}
    assert md.configs == {"orders": {"cleanup.policy": "compact"}}
    assert md.next_producer_id == 2000


def test_snapshot_then_log_after_it(tmp_path: Path) -> None:
    meta = tmp_path / METADATA_DIR
    meta.mkdir()
    write_log(meta / "00000000000000000003-0000000001.checkpoint", [topic("t", A), partition(0, A)])
    # The log still holds the snapshot's records (offsets 0-2) and one more after it.
    write_log(
        meta / "00000000000000000000.log",
        [topic("t", A), partition(0, A), config("t", "x", "old"), partition(1, A)],
    )
    md = read_kraft_metadata([tmp_path])
    assert md is not None
    assert md.topics[A].partitions == {0, 1}
    assert md.configs == {}  # offset 2 is covered by the snapshot (which has no config)


def test_damaged_log_keeps_what_was_read(tmp_path: Path) -> None:
    meta = tmp_path / METADATA_DIR
    meta.mkdir()
    good = build_batch([NewRecord(None, topic("t", A))])
    (meta / "00000000000000000000.log").write_bytes(good + b"\x00" * 12 + b"\xff" * 60)
    md = read_kraft_metadata([tmp_path])
    assert md is not None and md.topics[A].name == "t"
    assert read_kraft_metadata([tmp_path / "none"]) is None


def test_plan_adoption() -> None:
    md = KraftMetadata(
        topics={A: KraftTopic("a", A, {0, 1, 2})},
        configs={"a": {"cleanup.policy": "compact"}},
    )
    logs = [
        ("a", 0, A),
        ("a", 2, A),
        ("known", 0, B),
        ("fresh", 1, ZERO),  # no partition.metadata, not in Kafka's metadata either
        ("clash", 0, A),
        ("clash", 1, B),
    ]
    plan = plan_adoption(logs, {"known"}, md, ZERO)
    by_name = {t.name: t for t in plan}
    assert set(by_name) == {"a", "fresh"}  # "clash" has two topic ids: refused
    assert by_name["a"] == AdoptedTopic("a", A, 3, {"cleanup.policy": "compact"})
    assert by_name["fresh"].partitions == 2 and by_name["fresh"].configs == {}
    assert by_name["fresh"].topic_id not in (ZERO, A, B)
    # A topic whose dirs carry another id than Kafka's metadata gets no configs from it.
    other = plan_adoption([("a", 0, B)], set(), md, ZERO)
    assert other == [AdoptedTopic("a", B, 1, {})]


def test_producer_ids_skip_what_kafka_handed_out(tmp_path: Path) -> None:
    store = LocalProducerIdStore(tmp_path)
    store.skip_below(0, 1000)
    assert store.latest() == ProducerIdsBlock(0, 0, 1000)
    assert store.allocate(0).first_producer_id == 1000
    store.skip_below(0, 500)  # below what is already used: nothing changes
    assert store.latest() == ProducerIdsBlock(0, 1000, 1000)
    store.skip_below(0, 5000)
    assert store.allocate(0).first_producer_id == 5000
