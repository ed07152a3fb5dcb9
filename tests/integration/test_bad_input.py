"""What a client can send that it should not: the broker answers like Apache Kafka.

Every test talks raw bytes to a real broker process (tests/support/wire.py), then checks
that the broker is still alive and still serves both a connection that was open before
the bad input and a brand-new one. The expected behaviour is Apache Kafka's (4.x), with
the source it comes from next to each test:

- A frame Kafka cannot parse (size, header or body) closes that one connection and
  answers nothing: ``NetworkReceive.readFrom`` throws ``InvalidReceiveException`` on a
  negative size or one above ``socket.request.max.bytes`` before reading the body, and
  ``SocketServer.Processor.processCompletedReceives`` closes the channel when
  ``parseRequestHeader`` / ``RequestContext.parseRequest`` throws (unknown api key,
  version not enabled, truncated body).
- ApiVersions is the one exception (KIP-511): an unsupported version gets a v0-format
  answer with UNSUPPORTED_VERSION and the ApiVersions key's own version range
  (``ApiVersionsRequest.getErrorResponse``), on a connection that stays open.
- Record and topic errors are per-partition / per-topic error codes.
"""

from __future__ import annotations

import dataclasses
import datetime
import random
import struct
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from kafka.record import MemoryRecords
from kafka.record.default_records import DefaultRecordBatchBuilder
from kio.index import load_response_schema
from kio.schema.errors import ErrorCode
from kio.static.primitive import Records, i16, i32, i64

from tests.support.broker import BrokerProcess
from tests.support.wire import (
    KafkaWire,
    decode_api_versions_v0,
    decode_response,
    encode,
    encode_header,
    frame,
    request_module,
)

PRODUCE, FETCH, METADATA, API_VERSIONS, CREATE_TOPICS, CREATE_PARTITIONS = 0, 1, 3, 18, 19, 37

SOCKET_REQUEST_MAX_BYTES = 1048576
MESSAGE_MAX_BYTES = 10000
OVERRIDES = {
    "socket.request.max.bytes": str(SOCKET_REQUEST_MAX_BYTES),
    "message.max.bytes": str(MESSAGE_MAX_BYTES),
    "auto.create.topics.enable": "false",
}

CLOSE_TIMEOUT = 10.0


# -- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def kbroker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One broker for the module, with small limits and auto-creation off."""
    proc = BrokerProcess(tmp_path_factory.mktemp("bad-input") / "data", OVERRIDES).start()
    try:
        yield proc
    finally:
        if proc.proc is not None:
            proc.stop()


def connect(broker: BrokerProcess, timeout: float = 15.0) -> KafkaWire:
    return KafkaWire("127.0.0.1", broker.port, timeout=timeout)


def build(cls: type, **kwargs: Any) -> Any:
    """A kio entity from the fields this version has (others are dropped)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in kwargs.items() if k in names})


def metadata_request(conn: KafkaWire, topics: list[str] | None) -> Any:
    v = conn.pick_version(METADATA, 4, 12)
    m = request_module(METADATA, v)
    wanted = (
        None
        if topics is None
        else tuple(build(m.MetadataRequestTopic, topic_id=None, name=t) for t in topics)
    )
    return build(
        m.MetadataRequest,
        topics=wanted,
        allow_auto_topic_creation=True,
        include_cluster_authorized_operations=False,
        include_topic_authorized_operations=False,
    )


def metadata(conn: KafkaWire, topics: list[str] | None = None) -> Any:
    return conn.request(metadata_request(conn, topics))


def topic_names(conn: KafkaWire) -> set[str]:
    return {t.name for t in metadata(conn).topics}


@contextmanager
def still_serving(broker: BrokerProcess) -> Iterator[None]:
    """Around bad input: an existing and a new connection are served after it."""
    bystander = connect(broker)
    bystander.api_versions()  # handshake done before the bad input arrives
    try:
        yield
        assert broker.proc is not None and broker.proc.poll() is None, (
            f"broker process died:\n{broker.log_tail()}"
        )
        for conn in (bystander, connect(broker)):
            with conn:
                md = metadata(conn)
                ports = {(b.host, int(b.port)) for b in md.brokers}
                assert ("127.0.0.1", broker.port) in ports, md.brokers
                versions = conn.api_versions()
                assert {PRODUCE, FETCH, METADATA, API_VERSIONS} <= set(versions), versions
    finally:
        bystander.close()


def assert_closed(conn: KafkaWire, *, allow_error_frame: bool = False) -> None:
    """The broker closes ``conn`` without answering (Kafka sends nothing before closing)."""
    data = conn.read_until_closed(CLOSE_TIMEOUT)
    if allow_error_frame and data:
        (size,) = struct.unpack(">i", data[:4])
        assert size == len(data) - 4, f"partial frame before close: {data!r:.200}"
        return
    assert data == b"", f"broker answered before closing: {data!r:.200}"


def make_batch(values: list[bytes], key: bytes | None = None) -> bytes:
    """A RecordBatch v2 built by kafka-python (an independent encoder)."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 24,
    )
    for i, value in enumerate(values):
        builder.append(i, timestamp=None, key=key, value=value, headers=[])
    return bytes(builder.build())


def read_records(records: bytes | None) -> list[tuple[int, bytes]]:
    """(offset, value) of every record in fetched bytes, CRCs checked."""
    out: list[tuple[int, bytes]] = []
    if not records:
        return out
    batches = MemoryRecords(bytes(records))
    for _ in range(100_000):
        batch = batches.next_batch()
        if batch is None:
            break
        assert batch.validate_crc(), "fetched batch fails its CRC"
        out.extend((r.offset, r.value) for r in batch)
    return out


def produce_request(
    conn: KafkaWire,
    topic: str,
    parts: dict[int, bytes],
    acks: int = 1,
) -> Any:
    v = conn.pick_version(PRODUCE, 3, 12)
    m = request_module(PRODUCE, v)
    data = tuple(
        build(m.PartitionProduceData, index=i32(p), records=Records(batch))
        for p, batch in parts.items()
    )
    return build(
        m.ProduceRequest,
        transactional_id=None,
        acks=i16(acks),
        timeout=datetime.timedelta(seconds=10),
        topic_data=(build(m.TopicProduceData, name=topic, partition_data=data),),
    )


def produce(conn: KafkaWire, topic: str, parts: dict[int, bytes]) -> dict[int, Any]:
    """acks=1 produce; {partition: PartitionProduceResponse}."""
    resp = conn.request(produce_request(conn, topic, parts))
    assert [t.name for t in resp.responses] == [topic], resp
    return {int(p.index): p for p in resp.responses[0].partition_responses}


def fetch_request(
    conn: KafkaWire,
    topic: str | None,
    partitions: dict[int, int],
    *,
    topic_id: uuid.UUID | None = None,
    version: int | None = None,
    max_wait_ms: int = 0,
) -> Any:
    if version is None:
        version = conn.pick_version(FETCH, 4, 12)
    m = request_module(FETCH, version)
    parts = tuple(
        build(
            m.FetchPartition,
            partition=i32(p),
            fetch_offset=i64(off),
            partition_max_bytes=i32(1 << 20),
        )
        for p, off in partitions.items()
    )
    return build(
        m.FetchRequest,
        max_wait=datetime.timedelta(milliseconds=max_wait_ms),
        min_bytes=i32(1),
        max_bytes=i32(4 << 20),
        topics=(build(m.FetchTopic, topic=topic, topic_id=topic_id, partitions=parts),),
        forgotten_topics_data=(),
    )


def fetch(conn: KafkaWire, topic: str, partitions: dict[int, int], **kw: Any) -> dict[int, Any]:
    """{partition: PartitionData} of a sessionless fetch by topic name."""
    resp = conn.request(fetch_request(conn, topic, partitions, **kw))
    assert resp.error_code == ErrorCode.none, resp
    assert len(resp.responses) == 1, resp
    return {int(p.partition_index): p for p in resp.responses[0].partitions}


def create_topics_request(
    conn: KafkaWire, topics: list[tuple[str, int, int, dict[str, str]]], timeout_s: int = 30
) -> Any:
    v = conn.pick_version(CREATE_TOPICS, 2, 7)
    m = request_module(CREATE_TOPICS, v)
    return build(
        m.CreateTopicsRequest,
        topics=tuple(
            build(
                m.CreatableTopic,
                name=name,
                num_partitions=i32(n),
                replication_factor=i16(rf),
                assignments=(),
                configs=tuple(
                    build(m.CreatableTopicConfig, name=k, value=val) for k, val in cfg.items()
                ),
            )
            for name, n, rf, cfg in topics
        ),
        timeout=datetime.timedelta(seconds=timeout_s),
        validate_only=False,
    )


def create_topics(
    conn: KafkaWire, topics: list[tuple[str, int, int, dict[str, str]]]
) -> list[tuple[str, ErrorCode]]:
    resp = conn.request(create_topics_request(conn, topics))
    return [(r.name, r.error_code) for r in resp.topics]


def create_topic(conn: KafkaWire, name: str, partitions: int = 1) -> None:
    assert create_topics(conn, [(name, partitions, 1, {})]) == [(name, ErrorCode.none)]
    # Kafka creates asynchronously; poll Metadata until every partition has a leader.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        (t,) = metadata(conn, [name]).topics
        leaders = [p.leader_id for p in t.partitions if p.error_code == ErrorCode.none]
        if t.error_code == ErrorCode.none and len(leaders) == partitions and min(leaders) >= 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"topic {name} has no leaders after 15s: {t}")


def partition_count(conn: KafkaWire, name: str) -> int:
    (t,) = metadata(conn, [name]).topics
    assert t.error_code == ErrorCode.none, t
    return len(t.partitions)


# -- unparsable frames: the connection is closed ---------------------------------------------

_RNG = random.Random(20240611)

GARBAGE_FRAMES = {
    # A random body; the first two bytes make api key -8531, which no broker knows.
    "random-64": frame(b"\xde\xad" + _RNG.randbytes(62)),
    "random-4k": frame(b"\xbe\xef" + _RNG.randbytes(4094)),
    # Too short for a request header (api key, version, correlation id = 8 bytes).
    "one-byte": frame(b"\x00"),
    "empty": frame(b""),
    # An HTTP request: "GET " read as a size is 1195725856 > socket.request.max.bytes.
    "http": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(GARBAGE_FRAMES))
def test_garbage_frame_closes_connection(kbroker: BrokerProcess, name: str) -> None:
    with still_serving(kbroker), connect(kbroker) as conn:
        conn.send_raw(GARBAGE_FRAMES[name])
        assert_closed(conn, allow_error_frame=True)


@pytest.mark.parametrize("size", [SOCKET_REQUEST_MAX_BYTES + 1, 2**30, 2**31 - 1])
def test_size_above_socket_request_max_bytes_closes_without_reading_body(
    kbroker: BrokerProcess, size: int
) -> None:
    # Kafka: NetworkReceive.readFrom throws InvalidReceiveException("Invalid receive
    # (size = N larger than MAX)") as soon as the 4 size bytes are in. Only the prefix is
    # sent here, so a broker that waited for the body would never close.
    with still_serving(kbroker), connect(kbroker) as conn:
        conn.send_raw(struct.pack(">i", size))
        assert_closed(conn)


@pytest.mark.parametrize("size", [-1, -4, -(2**31)])
def test_negative_size_prefix_closes(kbroker: BrokerProcess, size: int) -> None:
    # Kafka: NetworkReceive.readFrom: "Invalid receive (size = -1)".
    with still_serving(kbroker), connect(kbroker) as conn:
        conn.send_raw(struct.pack(">i", size) + b"\x00" * 16)
        assert_closed(conn)


@pytest.mark.parametrize("api_key", [9999, 32767, -1])
def test_unknown_api_key_closes(kbroker: BrokerProcess, api_key: int) -> None:
    # Kafka: RequestHeader.parse -> ApiKeys.forId throws for an unknown id; the processor
    # closes the channel.
    with still_serving(kbroker), connect(kbroker) as conn:
        assert api_key not in conn.api_versions()
        conn.send_raw(frame(encode_header(api_key, 0, 77, flexible=True) + b"\x00" * 8))
        assert_closed(conn)


def test_unsupported_api_versions_version_gets_v0_answer(kbroker: BrokerProcess) -> None:
    # KIP-511 / ApiVersionsRequest.getErrorResponse: the broker answers an unknown
    # ApiVersions version in the v0 format (response header v0, error_code + api_keys)
    # with UNSUPPORTED_VERSION, and api_keys holds ApiVersions' own supported range so
    # the client can retry on the same connection.
    with still_serving(kbroker), connect(kbroker) as conn:
        body = encode(
            request_module(API_VERSIONS, 3).ApiVersionsRequest(
                client_software_name="pybroker-tests", client_software_version="9.9"
            )
        )
        conn.send_raw(frame(encode_header(API_VERSIONS, 99, 4242, flexible=True) + body))
        answer = decode_api_versions_v0(conn.recv_frame())
        assert answer.correlation_id == 4242
        assert answer.body.error_code == ErrorCode.unsupported_version
        own = [k for k in answer.body.api_keys if k.api_key == API_VERSIONS]
        assert len(own) == 1, answer.body.api_keys
        assert own[0].min_version == 0 and 3 <= own[0].max_version < 99, own[0]

        # The connection stays usable: the client's retry at a supported version works.
        retry = conn.request(
            request_module(API_VERSIONS, 3).ApiVersionsRequest(
                client_software_name="pybroker-tests", client_software_version="9.9"
            )
        )
        assert retry.error_code == ErrorCode.none
        keys = {int(k.api_key) for k in retry.api_keys}
        assert {PRODUCE, FETCH, METADATA, API_VERSIONS} <= keys, keys


@pytest.mark.parametrize(
    ("api_key", "version", "flexible"),
    [
        (METADATA, 99, True),
        (PRODUCE, 99, True),  # (the versions KIP-896 removed: test_legacy_clients.py)
        (FETCH, 99, True),
    ],
)
def test_unsupported_version_of_other_api_closes(
    kbroker: BrokerProcess, api_key: int, version: int, flexible: bool
) -> None:
    # Kafka: SocketServer.parseRequestHeader throws UnsupportedVersionException /
    # InvalidRequestException ("... with version N which is not enabled") -> close.
    with still_serving(kbroker), connect(kbroker) as conn:
        lo, hi = conn.api_versions()[api_key]
        assert not lo <= version <= hi, (lo, hi)
        body = encode(metadata_request(conn, ["whatever"])) if api_key == METADATA else b"\x00" * 32
        conn.send_raw(frame(encode_header(api_key, version, 5, flexible=flexible) + body))
        assert_closed(conn)


def test_truncated_metadata_body_closes(kbroker: BrokerProcess) -> None:
    # Kafka: RequestContext.parseRequest -> InvalidRequestException("Error getting request
    # for apiKey ...") on a buffer underflow -> close. The frame size matches the bytes sent.
    with still_serving(kbroker), connect(kbroker) as conn:
        req = metadata_request(conn, ["first-topic", "second-topic-name", "third"])
        header = encode_header(METADATA, type(req).__version__, 9, flexible=type(req).__flexible__)
        body = encode(req)
        cut = body.index(b"second-topic-name") + 6  # inside the second topic name
        conn.send_raw(frame(header + body[:cut]))
        assert_closed(conn)


def test_truncated_produce_records_close(kbroker: BrokerProcess) -> None:
    with still_serving(kbroker), connect(kbroker) as conn:
        create_topic(conn, "bad-input-truncated")
        req = produce_request(conn, "bad-input-truncated", {0: make_batch([b"x" * 500])})
        header = encode_header(PRODUCE, type(req).__version__, 10, flexible=type(req).__flexible__)
        body = encode(req)
        conn.send_raw(frame(header + body[: len(body) - 300]))  # records length says 500+
        assert_closed(conn)
        with connect(kbroker) as check:
            (p,) = fetch(check, "bad-input-truncated", {0: 0}).values()
            assert p.error_code == ErrorCode.none and p.high_watermark == 0, p


# -- bad records: per-partition error codes ------------------------------------------------------


@pytest.mark.parametrize(("where", "index"), [("last-value-byte", -1), ("crc-field", 18)])
def test_produce_with_wrong_crc_gets_corrupt_message(
    kbroker: BrokerProcess, where: str, index: int
) -> None:
    # Kafka: UnifiedLog.analyzeAndValidateRecords: "Record is corrupt (stored crc = ...)"
    # CorruptRecordException -> CORRUPT_MESSAGE (2); nothing is appended.
    topic = f"bad-input-crc-{where}"
    with still_serving(kbroker), connect(kbroker) as conn:
        create_topic(conn, topic)
        batch = bytearray(make_batch([b"hello", b"world"]))
        batch[index] ^= 0xFF
        result = produce(conn, topic, {0: bytes(batch)})
        assert result[0].error_code == ErrorCode.corrupt_message, result[0]

        (p,) = fetch(conn, topic, {0: 0}).values()
        assert p.error_code == ErrorCode.none and p.high_watermark == 0, p
        assert read_records(p.records) == []
        # The partition still takes good data, at offset 0.
        good = produce(conn, topic, {0: make_batch([b"ok"])})
        assert good[0].error_code == ErrorCode.none and good[0].base_offset == 0, good[0]


def test_batch_above_message_max_bytes_gets_message_too_large(kbroker: BrokerProcess) -> None:
    # Kafka: UnifiedLog.analyzeAndValidateRecords: batch.sizeInBytes > max.message.bytes
    # (the topic default is the broker's message.max.bytes) -> RecordTooLargeException
    # -> MESSAGE_TOO_LARGE (10).
    topic = "bad-input-too-large"
    with still_serving(kbroker), connect(kbroker) as conn:
        create_topic(conn, topic)
        big = make_batch([b"b" * (MESSAGE_MAX_BYTES + 2000)])
        assert len(big) > MESSAGE_MAX_BYTES
        result = produce(conn, topic, {0: big})
        assert result[0].error_code == ErrorCode.message_too_large, result[0]

        small = make_batch([b"s" * (MESSAGE_MAX_BYTES - 1000)])
        assert len(small) < MESSAGE_MAX_BYTES
        ok = produce(conn, topic, {0: small})
        assert ok[0].error_code == ErrorCode.none and ok[0].base_offset == 0, ok[0]
        (p,) = fetch(conn, topic, {0: 0}).values()
        assert p.high_watermark == 1, p
        assert read_records(p.records) == [(0, b"s" * (MESSAGE_MAX_BYTES - 1000))]


# -- unknown topics and partitions ----------------------------------------------------------


def test_produce_to_unknown_topic_gets_unknown_topic_or_partition(kbroker: BrokerProcess) -> None:
    # Kafka: produce never auto-creates; ReplicaManager.appendToLocalLog ->
    # getPartitionOrException -> UNKNOWN_TOPIC_OR_PARTITION (3).
    topic = "bad-input-never-created"
    with still_serving(kbroker), connect(kbroker) as conn:
        result = produce(conn, topic, {0: make_batch([b"lost"])})
        assert result[0].error_code == ErrorCode.unknown_topic_or_partition, result[0]
        # auto.create.topics.enable=false: even Metadata with allow_auto_topic_creation
        # does not create it.
        (t,) = metadata(conn, [topic]).topics
        assert t.name == topic and t.error_code == ErrorCode.unknown_topic_or_partition, t
        assert topic not in topic_names(conn)


def test_produce_to_unknown_partition_gets_unknown_topic_or_partition(
    kbroker: BrokerProcess,
) -> None:
    topic = "bad-input-one-partition"
    with still_serving(kbroker), connect(kbroker) as conn:
        create_topic(conn, topic)
        result = produce(conn, topic, {0: make_batch([b"good"]), 99: make_batch([b"bad"])})
        assert result[99].error_code == ErrorCode.unknown_topic_or_partition, result[99]
        assert result[0].error_code == ErrorCode.none and result[0].base_offset == 0, result[0]
        assert partition_count(conn, topic) == 1


def test_fetch_unknown_topic_or_partition_by_name(kbroker: BrokerProcess) -> None:
    # Kafka (Fetch <= v12): KafkaApis.handleFetchRequest marks partitions missing from the
    # metadata cache UNKNOWN_TOPIC_OR_PARTITION (3).
    topic = "bad-input-fetch-known"
    with still_serving(kbroker), connect(kbroker) as conn:
        create_topic(conn, topic)
        parts = fetch(conn, "bad-input-fetch-unknown", {0: 0})
        assert parts[0].error_code == ErrorCode.unknown_topic_or_partition, parts[0]
        parts = fetch(conn, topic, {0: 0, 99: 0})
        assert parts[99].error_code == ErrorCode.unknown_topic_or_partition, parts[99]
        assert parts[0].error_code == ErrorCode.none, parts[0]


def test_fetch_unknown_topic_id(kbroker: BrokerProcess) -> None:
    # Kafka (Fetch v13+, KIP-516): a topic id the broker does not know ->
    # UNKNOWN_TOPIC_ID (100) for each of its partitions.
    topic = "bad-input-fetch-by-id"
    with still_serving(kbroker), connect(kbroker) as conn:
        create_topic(conn, topic)
        version = conn.pick_version(FETCH, 13, 18)
        assert conn.pick_version(METADATA, 10, 12) >= 10
        (t,) = metadata(conn, [topic]).topics
        assert t.topic_id is not None and t.topic_id != uuid.UUID(int=0), t

        unknown = uuid.uuid4()
        req = fetch_request(conn, None, {0: 0, 1: 0}, topic_id=unknown, version=version)
        resp = conn.request(req)
        assert resp.error_code == ErrorCode.none, resp
        (r,) = resp.responses
        assert r.topic_id == unknown, r
        assert {int(p.partition_index): p.error_code for p in r.partitions} == {
            0: ErrorCode.unknown_topic_id,
            1: ErrorCode.unknown_topic_id,
        }

        known = conn.request(
            fetch_request(conn, None, {0: 0}, topic_id=t.topic_id, version=version)
        )
        (r,) = known.responses
        assert r.topic_id == t.topic_id
        assert [(int(p.partition_index), p.error_code) for p in r.partitions] == [
            (0, ErrorCode.none)
        ]


def test_fetch_offset_out_of_range(kbroker: BrokerProcess) -> None:
    # Kafka: LocalLog.read throws OffsetOutOfRangeException for an offset above the log
    # end offset or below the log start offset -> OFFSET_OUT_OF_RANGE (1). Fetching at
    # exactly the log end offset is fine and returns nothing.
    topic = "bad-input-oor"
    with still_serving(kbroker), connect(kbroker) as conn:
        create_topic(conn, topic)
        assert produce(conn, topic, {0: make_batch([b"a", b"b", b"c"])})[0].error_code == 0

        (at_end,) = fetch(conn, topic, {0: 3}).values()
        assert at_end.error_code == ErrorCode.none and at_end.high_watermark == 3, at_end
        assert read_records(at_end.records) == []
        for offset in (4, 1000, -5):
            (p,) = fetch(conn, topic, {0: offset}).values()
            assert p.error_code == ErrorCode.offset_out_of_range, (offset, p)
        (p,) = fetch(conn, topic, {0: 1}).values()
        assert p.error_code == ErrorCode.none
        assert read_records(p.records)[-2:] == [(1, b"b"), (2, b"c")]


# -- CreateTopics / CreatePartitions errors -------------------------------------------------------


def test_create_topics_with_invalid_names(kbroker: BrokerProcess) -> None:
    # Kafka: Topic.validate: empty, "." or "..", longer than 249 characters, or
    # characters outside [a-zA-Z0-9._-] -> INVALID_TOPIC_EXCEPTION (17); each topic of
    # the request gets its own result, so the valid ones are created.
    bad = ["bad/name", "..", ".", "x" * 250, "", "has space", "caf\u00e9"]
    good = ["bad-input-valid.name_1", "v" * 249]
    with still_serving(kbroker), connect(kbroker) as conn:
        results = dict(create_topics(conn, [(n, 1, 1, {}) for n in bad + good]))
        assert results == {
            **{n: ErrorCode.invalid_topic_exception for n in bad},
            **{n: ErrorCode.none for n in good},
        }
        names = topic_names(conn)
        assert not names & set(bad), names & set(bad)
        assert set(good) <= names


def test_create_topics_with_invalid_partitions_or_replication(kbroker: BrokerProcess) -> None:
    # Kafka (ReplicationControlManager.createTopic): num_partitions 0 or < -1 ->
    # INVALID_PARTITIONS (37); replication factor 0 or < -1 -> INVALID_REPLICATION_FACTOR
    # (38); more replicas than brokers -> the replica placer's
    # InvalidReplicationFactorException (38).
    cases = {
        "bad-input-zero-partitions": ((0, 1), ErrorCode.invalid_partitions),
        "bad-input-negative-partitions": ((-5, 1), ErrorCode.invalid_partitions),
        "bad-input-zero-rf": ((1, 0), ErrorCode.invalid_replication_factor),
        "bad-input-negative-rf": ((1, -3), ErrorCode.invalid_replication_factor),
        "bad-input-rf-3": ((1, 3), ErrorCode.invalid_replication_factor),
    }
    with still_serving(kbroker), connect(kbroker) as conn:
        results = dict(create_topics(conn, [(n, p, rf, {}) for n, ((p, rf), _) in cases.items()]))
        assert results == {n: code for n, (_, code) in cases.items()}
        assert not topic_names(conn) & set(cases)


def test_create_partitions_cannot_decrease(kbroker: BrokerProcess) -> None:
    # Kafka (ReplicationControlManager.createPartitions): a count lower than, or equal
    # to, the current one -> InvalidPartitionsException -> INVALID_PARTITIONS (37).
    topic = "bad-input-three-partitions"
    with still_serving(kbroker), connect(kbroker) as conn:
        create_topic(conn, topic, partitions=3)
        v = conn.pick_version(CREATE_PARTITIONS, 0, 3)
        m = request_module(CREATE_PARTITIONS, v)
        for count in (1, 3):
            resp = conn.request(
                m.CreatePartitionsRequest(
                    topics=(
                        m.CreatePartitionsTopic(name=topic, count=i32(count), assignments=None),
                    ),
                    timeout=datetime.timedelta(seconds=10),
                    validate_only=False,
                )
            )
            assert [(r.name, r.error_code) for r in resp.results] == [
                (topic, ErrorCode.invalid_partitions)
            ], (count, resp)
        assert partition_count(conn, topic) == 3


def test_create_existing_topic_gets_topic_already_exists(kbroker: BrokerProcess) -> None:
    topic = "bad-input-exists"
    with still_serving(kbroker), connect(kbroker) as conn:
        create_topic(conn, topic, partitions=2)
        assert create_topics(conn, [(topic, 5, 1, {})]) == [(topic, ErrorCode.topic_already_exists)]
        assert partition_count(conn, topic) == 2


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("cleanup.policy", "bogus"),
        ("retention.ms", "not-a-number"),
        ("min.insync.replicas", "0"),  # below the range's minimum of 1
        ("no.such.topic.config", "1"),  # LogConfig.validateNames: "Unknown topic config name"
    ],
)
def test_create_topic_with_invalid_config(kbroker: BrokerProcess, key: str, value: str) -> None:
    # Kafka (ConfigurationControlManager.validateAlterConfig): a ConfigException from
    # LogConfig.validate -> INVALID_CONFIG (40); the topic is not created.
    topic = f"bad-input-config-{key.replace('.', '-')}"
    with still_serving(kbroker), connect(kbroker) as conn:
        assert create_topics(conn, [(topic, 1, 1, {key: value})]) == [
            (topic, ErrorCode.invalid_config)
        ]
        assert topic not in topic_names(conn)


# -- acks=0 and request ordering ----------------------------------------------------------------


def test_acks_zero_gets_no_response_but_records_land(kbroker: BrokerProcess) -> None:
    topic = "bad-input-acks0"
    values = [f"fire-and-forget-{i}".encode() for i in range(5)]
    with still_serving(kbroker), connect(kbroker) as conn:
        create_topic(conn, topic)
        conn.send(produce_request(conn, topic, {0: make_batch(values)}, acks=0))
        # The next frame on this connection belongs to the next request: no Produce
        # response was sent in between.
        md_req = metadata_request(conn, [topic])
        md_cid = conn.send(md_req)
        answer = conn.recv(load_response_schema(METADATA, type(md_req).__version__))
        assert answer.correlation_id == md_cid
        assert [t.name for t in answer.body.topics] == [topic]

        deadline = time.monotonic() + 10
        while True:
            (p,) = fetch(conn, topic, {0: 0}, max_wait_ms=500).values()
            if p.high_watermark >= len(values) or time.monotonic() > deadline:
                break
        assert p.error_code == ErrorCode.none and p.high_watermark == len(values), p
        assert read_records(p.records) == list(enumerate(values))


def test_acks_zero_with_error_closes_connection(kbroker: BrokerProcess) -> None:
    # Kafka (KafkaApis.handleProduceRequest): with acks=0 there is no response to carry an
    # error, so "the server will close socket server so that the producer client will know
    # that some error has happened".
    with still_serving(kbroker), connect(kbroker) as conn:
        conn.send(produce_request(conn, "bad-input-acks0-unknown", {0: make_batch([b"x"])}, acks=0))
        assert_closed(conn)


def test_pipelined_responses_come_in_request_order(kbroker: BrokerProcess) -> None:
    # Kafka answers the requests of one connection in order (the processor mutes the
    # channel until the response is sent). A long-polling Fetch on an empty partition,
    # sent before quick requests, must still be answered first.
    produced, empty = "bad-input-pipeline", "bad-input-pipeline-empty"
    with still_serving(kbroker), connect(kbroker) as conn:
        create_topic(conn, produced)
        create_topic(conn, empty)
        av = request_module(API_VERSIONS, 3).ApiVersionsRequest(
            client_software_name="pybroker-tests", client_software_version="0.1"
        )
        requests = [
            produce_request(conn, produced, {0: make_batch([b"p0"])}),
            fetch_request(conn, empty, {0: 0}, max_wait_ms=700),
            metadata_request(conn, [produced]),
            av,
            produce_request(conn, produced, {0: make_batch([b"p1", b"p2"])}),
            fetch_request(conn, produced, {0: 0}),
            av,
        ]
        payload = b""
        cids = []
        for req in requests:
            cid = conn.next_correlation_id()
            cids.append(cid)
            payload += conn.encode_request(req, cid)
        started = time.monotonic()
        conn.send_raw(payload)  # all at once, before reading anything

        bodies = []
        for req, cid in zip(requests, cids, strict=True):
            cls = load_response_schema(type(req).__api_key__, type(req).__version__)
            bodies.append(decode_response(conn.recv_frame(), cls, cid).body)
        assert time.monotonic() - started >= 0.5  # the Fetch did wait (its 700 ms)

        first, long_poll, md, av1, second, fetched, av2 = bodies
        assert first.responses[0].partition_responses[0].base_offset == 0
        assert long_poll.responses[0].partitions[0].error_code == ErrorCode.none
        assert read_records(long_poll.responses[0].partitions[0].records) == []
        assert [t.name for t in md.topics] == [produced]
        assert av1.error_code == av2.error_code == ErrorCode.none
        assert second.responses[0].partition_responses[0].base_offset == 1
        assert read_records(fetched.responses[0].partitions[0].records) == [
            (0, b"p0"),
            (1, b"p1"),
            (2, b"p2"),
        ]


def test_connection_closed_mid_request_does_not_hurt(kbroker: BrokerProcess) -> None:
    # A client that dies half-way through a frame: the broker drops the connection.
    with still_serving(kbroker):
        conn = connect(kbroker)
        req = metadata_request(conn, ["a-topic"])
        data = conn.encode_request(req, 1)
        conn.send_raw(data[: len(data) // 2])
        conn.close()


# Last: a broker that tried to honour this would hurt the tests after it.
def test_create_topics_with_a_million_partitions(kbroker: BrokerProcess) -> None:
    # Kafka 4 (ReplicationControlManager.validateTotalNumberOfPartitions): more than
    # MAX_PARTITIONS_PER_BATCH = 10000 partitions in one CreateTopics ->
    # PolicyViolationException("Excessively large number of partitions per request.")
    # -> POLICY_VIOLATION (44), without creating anything.
    topic = "bad-input-million"
    with still_serving(kbroker), connect(kbroker, timeout=40) as conn:
        assert create_topics(conn, [(topic, 10**6, 1, {})]) == [(topic, ErrorCode.policy_violation)]
        assert topic not in topic_names(conn)
