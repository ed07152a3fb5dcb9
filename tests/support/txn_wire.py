"""Raw transaction requests for tests (kio entities over tests.support.wire.KafkaWire).

Each helper sends one request at an explicit version and returns the decoded response
(or the interesting part of it), so a test sees exactly what the broker answered.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from typing import Any

from kafka.record.default_records import DefaultRecordBatchBuilder
from kio.schema.errors import ErrorCode
from kio.static.primitive import Records, i8, i16, i32, i64

from pybroker.protocol.records import decode_records, iter_batches
from tests.support.wire import KafkaWire, request_module

PRODUCE, FETCH, LIST_OFFSETS, OFFSET_FETCH, FIND_COORDINATOR = 0, 1, 2, 9, 10
CREATE_TOPICS, INIT_PRODUCER_ID, ADD_PARTITIONS, ADD_OFFSETS, END_TXN = 19, 22, 24, 25, 26
WRITE_TXN_MARKERS, TXN_OFFSET_COMMIT = 27, 28
DESCRIBE_PRODUCERS, DESCRIBE_TRANSACTIONS, LIST_TRANSACTIONS = 61, 65, 66
READ_UNCOMMITTED, READ_COMMITTED = 0, 1

TopicPartition = tuple[str, int]


def build(cls: type, **kwargs: Any) -> Any:
    """A kio entity from the fields this version has (others are dropped)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in kwargs.items() if k in names})


def create_topic(conn: KafkaWire, name: str, partitions: int = 1) -> None:
    m = request_module(CREATE_TOPICS, 5)
    resp = conn.request(
        build(
            m.CreateTopicsRequest,
            topics=(
                build(
                    m.CreatableTopic,
                    name=name,
                    num_partitions=i32(partitions),
                    replication_factor=i16(1),
                    assignments=(),
                    configs=(),
                ),
            ),
            timeout=datetime.timedelta(seconds=30),
            validate_only=False,
        )
    )
    assert [(t.name, t.error_code) for t in resp.topics] == [(name, ErrorCode.none)]


def find_coordinator(conn: KafkaWire, key: str, key_type: int = 1, version: int = 4) -> Any:
    m = request_module(FIND_COORDINATOR, version)
    if version >= 4:
        resp = conn.request(
            build(m.FindCoordinatorRequest, key_type=i8(key_type), coordinator_keys=(key,))
        )
        return resp.coordinators[0]
    return conn.request(build(m.FindCoordinatorRequest, key=key, key_type=i8(key_type)))


def init_producer(
    conn: KafkaWire,
    txn_id: str | None,
    timeout_ms: int = 60_000,
    version: int = 5,
    expected: tuple[int, int] = (-1, -1),
) -> tuple[ErrorCode, int, int]:
    m = request_module(INIT_PRODUCER_ID, version)
    resp = conn.request(
        build(
            m.InitProducerIdRequest,
            transactional_id=txn_id,
            transaction_timeout=datetime.timedelta(milliseconds=timeout_ms),
            producer_id=i64(expected[0]),
            producer_epoch=i16(expected[1]),
        )
    )
    return resp.error_code, int(resp.producer_id), int(resp.producer_epoch)


def init_txn(conn: KafkaWire, txn_id: str, timeout_ms: int = 60_000) -> tuple[int, int]:
    """InitProducerId, retrying CONCURRENT_TRANSACTIONS as clients do; (pid, epoch)."""
    deadline = time.monotonic() + 15
    while True:
        code, pid, epoch = init_producer(conn, txn_id, timeout_ms)
        if code != ErrorCode.concurrent_transactions or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert code == ErrorCode.none, code
    return pid, epoch


def add_partitions(
    conn: KafkaWire,
    txn_id: str,
    pid: int,
    epoch: int,
    partitions: list[TopicPartition],
    version: int = 3,
) -> dict[TopicPartition, ErrorCode]:
    m = request_module(ADD_PARTITIONS, version)
    by_topic: dict[str, list[int]] = {}
    for t, p in partitions:
        by_topic.setdefault(t, []).append(p)
    topics = tuple(
        build(m.AddPartitionsToTxnTopic, name=t, partitions=tuple(i32(p) for p in ps))
        for t, ps in by_topic.items()
    )
    resp = conn.request(
        build(
            m.AddPartitionsToTxnRequest,
            v3_and_below_transactional_id=txn_id,
            v3_and_below_producer_id=i64(pid),
            v3_and_below_producer_epoch=i16(epoch),
            v3_and_below_topics=topics,
        )
    )
    return {
        (t.name, int(r.partition_index)): r.partition_error_code
        for t in resp.results_by_topic_v3_and_below
        for r in t.results_by_partition
    }


def verify_partitions(
    conn: KafkaWire,
    txn_id: str,
    pid: int,
    epoch: int,
    partitions: list[TopicPartition],
    verify_only: bool = True,
    version: int = 4,
) -> dict[TopicPartition, ErrorCode]:
    """The broker-to-broker form (v4+, KIP-890): one transaction of the batch."""
    m = request_module(ADD_PARTITIONS, version)
    by_topic: dict[str, list[int]] = {}
    for t, p in partitions:
        by_topic.setdefault(t, []).append(p)
    txn = build(
        m.AddPartitionsToTxnTransaction,
        transactional_id=txn_id,
        producer_id=i64(pid),
        producer_epoch=i16(epoch),
        verify_only=verify_only,
        topics=tuple(
            build(m.AddPartitionsToTxnTopic, name=t, partitions=tuple(i32(p) for p in ps))
            for t, ps in by_topic.items()
        ),
    )
    resp = conn.request(build(m.AddPartitionsToTxnRequest, transactions=(txn,)))
    assert resp.error_code == ErrorCode.none
    (result,) = resp.results_by_transaction
    return {
        (t.name, int(r.partition_index)): r.partition_error_code
        for t in result.topic_results
        for r in t.results_by_partition
    }


def add_offsets(
    conn: KafkaWire, txn_id: str, pid: int, epoch: int, group: str, version: int = 3
) -> ErrorCode:
    m = request_module(ADD_OFFSETS, version)
    resp = conn.request(
        build(
            m.AddOffsetsToTxnRequest,
            transactional_id=txn_id,
            producer_id=i64(pid),
            producer_epoch=i16(epoch),
            group_id=group,
        )
    )
    return resp.error_code


def end_txn(
    conn: KafkaWire, txn_id: str, pid: int, epoch: int, commit: bool, version: int = 3
) -> Any:
    m = request_module(END_TXN, version)
    return conn.request(
        build(
            m.EndTxnRequest,
            transactional_id=txn_id,
            producer_id=i64(pid),
            producer_epoch=i16(epoch),
            committed=commit,
        )
    )


def txn_offset_commit(
    conn: KafkaWire,
    txn_id: str,
    group: str,
    pid: int,
    epoch: int,
    offsets: dict[TopicPartition, int],
    version: int = 3,
) -> dict[TopicPartition, ErrorCode]:
    m = request_module(TXN_OFFSET_COMMIT, version)
    by_topic: dict[str, list[Any]] = {}
    for (t, p), o in offsets.items():
        by_topic.setdefault(t, []).append(
            build(
                m.TxnOffsetCommitRequestPartition,
                partition_index=i32(p),
                committed_offset=i64(o),
                committed_leader_epoch=i32(-1),
                committed_metadata="",
            )
        )
    resp = conn.request(
        build(
            m.TxnOffsetCommitRequest,
            transactional_id=txn_id,
            group_id=group,
            producer_id=i64(pid),
            producer_epoch=i16(epoch),
            generation_id=i32(-1),
            member_id="",
            group_instance_id=None,
            topics=tuple(
                build(m.TxnOffsetCommitRequestTopic, name=t, partitions=tuple(ps))
                for t, ps in by_topic.items()
            ),
        )
    )
    return {
        (t.name, int(p.partition_index)): p.error_code for t in resp.topics for p in t.partitions
    }


def offset_fetch(
    conn: KafkaWire, group: str, partitions: list[TopicPartition], require_stable: bool = False
) -> dict[TopicPartition, tuple[int, ErrorCode]]:
    m = request_module(OFFSET_FETCH, 7)
    by_topic: dict[str, list[int]] = {}
    for t, p in partitions:
        by_topic.setdefault(t, []).append(p)
    resp = conn.request(
        build(
            m.OffsetFetchRequest,
            group_id=group,
            topics=tuple(
                build(
                    m.OffsetFetchRequestTopic,
                    name=t,
                    partition_indexes=tuple(i32(p) for p in ps),
                )
                for t, ps in by_topic.items()
            ),
            require_stable=require_stable,
        )
    )
    assert resp.error_code == ErrorCode.none, resp
    return {
        (t.name, int(p.partition_index)): (int(p.committed_offset), p.error_code)
        for t in resp.topics
        for p in t.partitions
    }


def batch(
    pid: int, epoch: int, seq: int, values: list[bytes], *, transactional: bool = True
) -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=transactional,
        producer_id=pid,
        producer_epoch=epoch,
        base_sequence=seq,
        batch_size=1 << 24,
    )
    for i, value in enumerate(values):
        builder.append(i, timestamp=None, key=b"k", value=value, headers=[])
    return bytes(builder.build())


def produce(
    conn: KafkaWire,
    data: dict[TopicPartition, bytes],
    txn_id: str | None,
    version: int = 9,
) -> dict[TopicPartition, Any]:
    """acks=all Produce; the partition response of each partition."""
    m = request_module(PRODUCE, version)
    by_topic: dict[str, list[Any]] = {}
    for (t, p), records in data.items():
        by_topic.setdefault(t, []).append(
            build(m.PartitionProduceData, index=i32(p), records=Records(records))
        )
    resp = conn.request(
        build(
            m.ProduceRequest,
            transactional_id=txn_id,
            acks=i16(-1),
            timeout=datetime.timedelta(seconds=10),
            topic_data=tuple(
                build(m.TopicProduceData, name=t, partition_data=tuple(ps))
                for t, ps in by_topic.items()
            ),
        )
    )
    return {(t.name, int(p.index)): p for t in resp.responses for p in t.partition_responses}


@dataclasses.dataclass
class Fetched:
    error_code: ErrorCode
    high_watermark: int
    last_stable_offset: int
    aborted: list[tuple[int, int]] | None
    values: list[tuple[int, bytes]]  # data records (offset, value)
    controls: list[tuple[int, int]]  # control batches (offset, producer id)
    preferred_read_replica: int = -1  # KIP-392: the follower the leader sends us to
    records: bytes = b""  # the record batches as they came over the wire


def fetch(
    conn: KafkaWire,
    topic: str,
    partition: int = 0,
    isolation: int = 0,
    offset: int = 0,
    rack: str = "",
) -> Fetched:
    """One consumer Fetch v11 of one partition (``rack``: the client.rack it names)."""
    m = request_module(FETCH, 11)
    resp = conn.request(
        build(
            m.FetchRequest,
            replica_id=i32(-1),
            max_wait=datetime.timedelta(milliseconds=0),
            min_bytes=i32(1),
            max_bytes=i32(64 << 20),
            isolation_level=i8(isolation),
            session_id=i32(0),
            session_epoch=i32(-1),
            topics=(
                build(
                    m.FetchTopic,
                    topic=topic,
                    partitions=(
                        build(
                            m.FetchPartition,
                            partition=i32(partition),
                            current_leader_epoch=i32(-1),
                            fetch_offset=i64(offset),
                            last_fetched_epoch=i32(-1),
                            log_start_offset=i64(-1),
                            partition_max_bytes=i32(64 << 20),
                        ),
                    ),
                ),
            ),
            forgotten_topics_data=(),
            rack_id=rack,
        )
    )
    (p,) = resp.responses[0].partitions
    data = bytes(p.records or b"")
    values, controls = [], []
    for pos, h in iter_batches(data):
        if h.is_control:
            controls.append((h.base_offset, h.producer_id))
        else:
            values += [(r.offset, r.value) for r in decode_records(data, pos)]
    aborted = None
    if p.aborted_transactions is not None:
        aborted = [(int(a.producer_id), int(a.first_offset)) for a in p.aborted_transactions]
    return Fetched(
        p.error_code,
        int(p.high_watermark),
        int(p.last_stable_offset),
        aborted,
        values,
        controls,
        int(p.preferred_read_replica),
        data,
    )


def list_offset(conn: KafkaWire, topic: str, isolation: int, partition: int = 0) -> int:
    m = request_module(LIST_OFFSETS, 5)
    resp = conn.request(
        build(
            m.ListOffsetsRequest,
            replica_id=i32(-1),
            isolation_level=i8(isolation),
            topics=(
                build(
                    m.ListOffsetsTopic,
                    name=topic,
                    partitions=(
                        build(
                            m.ListOffsetsPartition,
                            partition_index=i32(partition),
                            current_leader_epoch=i32(-1),
                            timestamp=i64(-1),
                        ),
                    ),
                ),
            ),
        )
    )
    (p,) = resp.topics[0].partitions
    assert p.error_code == ErrorCode.none
    return int(p.offset)


def describe_transaction(conn: KafkaWire, txn_id: str) -> Any:
    m = request_module(DESCRIBE_TRANSACTIONS, 0)
    resp = conn.request(build(m.DescribeTransactionsRequest, transactional_ids=(txn_id,)))
    return resp.transaction_states[0]


def list_transactions(
    conn: KafkaWire, states: tuple[str, ...] = (), pids: tuple[int, ...] = ()
) -> Any:
    m = request_module(LIST_TRANSACTIONS, 1)
    return conn.request(
        build(
            m.ListTransactionsRequest,
            state_filters=states,
            producer_id_filters=tuple(i64(p) for p in pids),
            duration_filter=i64(-1),
        )
    )


def describe_producers(conn: KafkaWire, topic: str, partition: int = 0) -> Any:
    m = request_module(DESCRIBE_PRODUCERS, 0)
    resp = conn.request(
        build(
            m.DescribeProducersRequest,
            topics=(build(m.TopicRequest, name=topic, partition_indexes=(i32(partition),)),),
        )
    )
    return resp.topics[0].partitions[0]


def write_markers(
    conn: KafkaWire,
    pid: int,
    epoch: int,
    commit: bool,
    partitions: list[TopicPartition],
    coordinator_epoch: int = 0,
) -> dict[TopicPartition, ErrorCode]:
    m = request_module(WRITE_TXN_MARKERS, 1)
    by_topic: dict[str, list[int]] = {}
    for t, p in partitions:
        by_topic.setdefault(t, []).append(p)
    resp = conn.request(
        build(
            m.WriteTxnMarkersRequest,
            markers=(
                build(
                    m.WritableTxnMarker,
                    producer_id=i64(pid),
                    producer_epoch=i16(epoch),
                    transaction_result=commit,
                    topics=tuple(
                        build(
                            m.WritableTxnMarkerTopic,
                            name=t,
                            partition_indexes=tuple(i32(p) for p in ps),
                        )
                        for t, ps in by_topic.items()
                    ),
                    coordinator_epoch=i32(coordinator_epoch),
                ),
            ),
        )
    )
    return {
        (t.name, int(p.partition_index)): p.error_code
        for t in resp.markers[0].topics
        for p in t.partitions
    }


def read_committed_values(
    conn: KafkaWire, topic: str, partition: int = 0
) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) of every record a read_committed consumer returns, by the client-side
    rule of KIP-98 applied to a read_committed Fetch: a producer's batches are skipped
    from the first offset of one of its aborted transactions up to its ABORT marker."""
    out: list[tuple[bytes | None, bytes | None]] = []
    offset = 0
    while True:
        m = request_module(FETCH, 11)
        resp = conn.request(
            build(
                m.FetchRequest,
                replica_id=i32(-1),
                max_wait=datetime.timedelta(milliseconds=0),
                min_bytes=i32(1),
                max_bytes=i32(8 << 20),
                isolation_level=i8(READ_COMMITTED),
                session_id=i32(0),
                session_epoch=i32(-1),
                topics=(
                    build(
                        m.FetchTopic,
                        topic=topic,
                        partitions=(
                            build(
                                m.FetchPartition,
                                partition=i32(partition),
                                current_leader_epoch=i32(-1),
                                fetch_offset=i64(offset),
                                last_fetched_epoch=i32(-1),
                                log_start_offset=i64(-1),
                                partition_max_bytes=i32(8 << 20),
                            ),
                        ),
                    ),
                ),
                forgotten_topics_data=(),
                rack_id="",
            )
        )
        (p,) = resp.responses[0].partitions
        assert p.error_code == ErrorCode.none, p
        data = bytes(p.records or b"")
        if not data:
            return out
        pending = sorted(
            (int(a.first_offset), int(a.producer_id)) for a in p.aborted_transactions or ()
        )
        aborted_producers: set[int] = set()
        for pos, h in iter_batches(data):
            while pending and pending[0][0] <= h.last_offset:
                aborted_producers.add(pending.pop(0)[1])
            offset = h.last_offset + 1
            if h.is_control:
                records = decode_records(data, pos)
                if records and records[0].key and records[0].key[2:4] == b"\x00\x00":
                    aborted_producers.discard(h.producer_id)
                continue
            if h.is_transactional and h.producer_id in aborted_producers:
                continue
            out += [(r.key, r.value) for r in decode_records(data, pos)]
