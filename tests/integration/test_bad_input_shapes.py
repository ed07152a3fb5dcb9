"""Nulls and impossible shapes in decodable requests: the broker answers as Apache Kafka 4.x.

Issue 8, part 2. Each test sends one raw request (tests/support/wire.py) to a real broker,
checks Kafka's answer (an error code, or the connection closed) and then that the broker
is alive, logged no traceback and serves a new connection. The Kafka source each answer
comes from is named in the test's docstring. ``test_nullable_fields_sweep`` sends, for
every advertised (api key, version), a minimal request with each field the schema declares
nullable set to null: none of them may make the broker log a traceback.
"""

from __future__ import annotations

import dataclasses
import datetime
import types
import typing
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kafka.record.default_records import DefaultRecordBatchBuilder
from kio.schema.errors import ErrorCode
from kio.static.primitive import Records, i8, i16, i32, i64

from pybroker.protocol.legacy import legacy_version
from tests.support.broker import BrokerProcess
from tests.support.wire import ConnectionClosed, KafkaWire, request_module

PRODUCE, FETCH, LIST_OFFSETS, METADATA, CREATE_TOPICS, DELETE_TOPICS = 0, 1, 2, 3, 19, 20
TOPIC = "shapes"
SWEEP_TOPIC = "sweep"  # every string of the sweep's requests; deleted by its DeleteTopics


def create_topic(port: int, name: str) -> None:
    with KafkaWire("127.0.0.1", port) as conn:
        m = request_module(CREATE_TOPICS, 7)
        resp = conn.request(
            m.CreateTopicsRequest(
                topics=(
                    m.CreatableTopic(
                        name=name,
                        num_partitions=i32(1),
                        replication_factor=i16(1),
                        assignments=(),
                        configs=(),
                    ),
                ),
                timeout=datetime.timedelta(seconds=10),
                validate_only=False,
            )
        )
        assert resp.topics[0].error_code == ErrorCode.none


@pytest.fixture(scope="module")
def kbroker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    """One broker for the module with a one-partition topic ``shapes``; no auto-creation."""
    proc = BrokerProcess(
        tmp_path_factory.mktemp("bad-shapes") / "data", {"auto.create.topics.enable": "false"}
    ).start()
    try:
        create_topic(proc.port, TOPIC)
        yield proc
    finally:
        if proc.proc is not None:
            proc.stop()


def connect(broker: BrokerProcess) -> KafkaWire:
    return KafkaWire("127.0.0.1", broker.port, timeout=10.0)


def assert_healthy(broker: BrokerProcess) -> None:
    """Alive, no traceback in the log, and a new connection is served."""
    assert broker.proc is not None and broker.proc.poll() is None, broker.log_tail()
    log = broker.log_path.read_text(errors="replace")
    assert "Traceback" not in log, broker.log_tail()
    with connect(broker) as conn:
        m = request_module(METADATA, 12)
        resp = conn.request(
            m.MetadataRequest(
                topics=(m.MetadataRequestTopic(name=TOPIC, topic_id=uuid.UUID(int=0)),),
                allow_auto_topic_creation=False,
                include_topic_authorized_operations=False,
            )
        )
        assert resp.topics[0].error_code == ErrorCode.none


def make_batch(value: bytes = b"v") -> Records:
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=0,
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 20,
    )
    builder.append(0, timestamp=None, key=None, value=value, headers=[])
    return Records(bytes(builder.build()))


def produce(version: int, acks: int, parts: list[tuple[str, int, Records | None]]) -> Any:
    m = request_module(PRODUCE, version)
    topics: dict[str, list[Any]] = {}
    for name, index, records in parts:
        topics.setdefault(name, []).append(
            m.PartitionProduceData(index=i32(index), records=records)
        )
    return m.ProduceRequest(
        transactional_id=None,
        acks=i16(acks),
        timeout=datetime.timedelta(seconds=5),
        topic_data=tuple(
            m.TopicProduceData(name=n, partition_data=tuple(ps)) for n, ps in topics.items()
        ),
    )


def make(cls: type, **kwargs: Any) -> Any:
    """``cls(**kwargs)`` without the fields this version does not have."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in kwargs.items() if k in names})


def topic_id(conn: KafkaWire) -> uuid.UUID:
    m = request_module(METADATA, 12)
    resp = conn.request(
        m.MetadataRequest(
            topics=(m.MetadataRequestTopic(name=TOPIC, topic_id=uuid.UUID(int=0)),),
            allow_auto_topic_creation=False,
            include_topic_authorized_operations=False,
        )
    )
    return resp.topics[0].topic_id


# -- Metadata ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", [10, 11])
def test_metadata_null_name_before_v12(kbroker: BrokerProcess, version: int) -> None:
    """KafkaApis.handleTopicMetadataRequest throws InvalidRequestException ("Topic name can
    not be null"); MetadataRequest.getErrorResponse: INVALID_REQUEST, name "", no brokers."""
    m = request_module(METADATA, version)
    with connect(kbroker) as conn:
        resp = conn.request(
            make(
                m.MetadataRequest,
                topics=(m.MetadataRequestTopic(name=None, topic_id=uuid.UUID(int=0)),),
                allow_auto_topic_creation=False,
                include_cluster_authorized_operations=False,
                include_topic_authorized_operations=False,
            )
        )
    assert [(t.name, t.error_code) for t in resp.topics] == [("", ErrorCode.invalid_request)]
    assert resp.brokers == ()
    assert_healthy(kbroker)


def test_metadata_topic_id_before_v12(kbroker: BrokerProcess) -> None:
    """KafkaApis: "Topic IDs are not supported in requests for version 11" (INVALID_REQUEST)."""
    m = request_module(METADATA, 11)
    with connect(kbroker) as conn:
        resp = conn.request(
            make(
                m.MetadataRequest,
                topics=(m.MetadataRequestTopic(name=TOPIC, topic_id=uuid.uuid4()),),
                allow_auto_topic_creation=False,
                include_cluster_authorized_operations=False,
                include_topic_authorized_operations=False,
            )
        )
    assert [(t.name, t.error_code) for t in resp.topics] == [(TOPIC, ErrorCode.invalid_request)]
    assert_healthy(kbroker)


def test_metadata_duplicate_topics(kbroker: BrokerProcess) -> None:
    """KafkaApis collects the requested names into a Set: one entry per topic."""
    m = request_module(METADATA, 12)
    entry = m.MetadataRequestTopic(name=TOPIC, topic_id=uuid.UUID(int=0))
    with connect(kbroker) as conn:
        resp = conn.request(
            m.MetadataRequest(
                topics=(entry, entry),
                allow_auto_topic_creation=False,
                include_topic_authorized_operations=False,
            )
        )
    assert [(t.name, t.error_code) for t in resp.topics] == [(TOPIC, ErrorCode.none)]
    assert_healthy(kbroker)


# -- Produce -------------------------------------------------------------------------------


def test_produce_null_records_closes(kbroker: BrokerProcess) -> None:
    """Null records for a hosted partition: Kafka's ReplicaManager.handleProduceAppend and then
    ProduceRequest.getErrorResponse throw NullPointerException and nothing is answered; we
    close the connection instead of leaving the request hanging."""
    with connect(kbroker) as conn:
        conn.send(produce(9, 1, [(TOPIC, 0, None)]))
        conn.read_until_closed()
    assert_healthy(kbroker)


def test_produce_null_records_unknown_topic(kbroker: BrokerProcess) -> None:
    """KafkaApis.handleProduceRequest answers unknown partitions before touching records."""
    with connect(kbroker) as conn:
        resp = conn.request(produce(9, 1, [("no-such-topic", 0, None)]))
    codes = [(p.index, p.error_code) for t in resp.responses for p in t.partition_responses]
    assert codes == [(0, ErrorCode.unknown_topic_or_partition)]
    assert_healthy(kbroker)


@pytest.mark.parametrize("acks", [5, -2, 32767])
def test_produce_invalid_acks(kbroker: BrokerProcess, acks: int) -> None:
    """ReplicaManager.appendRecords: INVALID_REQUIRED_ACKS for what KafkaApis passed on; an
    unknown partition keeps UNKNOWN_TOPIC_OR_PARTITION and empty records INVALID_RECORD
    (ProduceRequest.validateRecords)."""
    req = produce(
        9,
        acks,
        [(TOPIC, 0, make_batch()), ("no-such-topic", 0, make_batch())],
    )
    with connect(kbroker) as conn:
        resp = conn.request(req)
        empty = conn.request(produce(9, acks, [(TOPIC, 0, Records(b""))]))
    codes = {(t.name, p.index): p.error_code for t in resp.responses for p in t.partition_responses}
    assert codes == {
        (TOPIC, 0): ErrorCode.invalid_required_acks,
        ("no-such-topic", 0): ErrorCode.unknown_topic_or_partition,
    }
    assert empty.responses[0].partition_responses[0].error_code == ErrorCode.invalid_record
    assert_healthy(kbroker)


def test_produce_duplicate_partition(kbroker: BrokerProcess) -> None:
    """KafkaApis keys the partitions in a Map: a repeated partition is appended once (its
    last entry) and answered once."""
    with connect(kbroker) as conn:
        resp = conn.request(
            produce(9, 1, [(TOPIC, 0, make_batch(b"first")), (TOPIC, 0, make_batch(b"last"))])
        )
        parts = [p for t in resp.responses for p in t.partition_responses]
        assert len(parts) == 1 and parts[0].error_code == ErrorCode.none
        first = parts[0].base_offset
        again = conn.request(produce(9, 1, [(TOPIC, 0, make_batch())]))
    assert again.responses[0].partition_responses[0].base_offset == first + 1
    assert_healthy(kbroker)


# -- ListOffsets ---------------------------------------------------------------------------


def list_offsets(version: int, parts: list[tuple[int, int, int]], isolation: int = 0) -> Any:
    """(partition, timestamp, current leader epoch) of topic ``shapes``."""
    m = request_module(LIST_OFFSETS, version)
    return m.ListOffsetsRequest(
        replica_id=i32(-1),
        isolation_level=i8(isolation),
        topics=(
            m.ListOffsetsTopic(
                name=TOPIC,
                partitions=tuple(
                    m.ListOffsetsPartition(
                        partition_index=i32(p), timestamp=i64(ts), current_leader_epoch=i32(ep)
                    )
                    for p, ts, ep in parts
                ),
            ),
        ),
        **({"timeout": datetime.timedelta(0)} if version >= 10 else {}),
    )


def list_offsets_codes(resp: Any) -> list[tuple[int, int]]:
    return [(p.partition_index, p.error_code) for t in resp.topics for p in t.partitions]


def test_list_offsets_duplicate_partition(kbroker: BrokerProcess) -> None:
    """ListOffsetsRequest.duplicatePartitions -> ReplicaManager.fetchOffset: INVALID_REQUEST,
    one status per topic-partition."""
    with connect(kbroker) as conn:
        resp = conn.request(list_offsets(9, [(0, -1, -1), (0, -2, -1)]))
    assert list_offsets_codes(resp) == [(0, ErrorCode.invalid_request)]
    assert_healthy(kbroker)


@pytest.mark.parametrize(("version", "timestamp"), [(6, -3), (7, -4), (8, -5), (10, -6)])
def test_list_offsets_unsupported_timestamp(
    kbroker: BrokerProcess, version: int, timestamp: int
) -> None:
    """ReplicaManager.isListOffsetsTimestampUnsupported: UNSUPPORTED_VERSION."""
    with connect(kbroker) as conn:
        resp = conn.request(list_offsets(version, [(0, timestamp, -1)]))
    assert list_offsets_codes(resp) == [(0, ErrorCode.unsupported_version)]
    assert_healthy(kbroker)


@pytest.mark.parametrize("isolation", [7, -1])
def test_list_offsets_unknown_isolation_level(kbroker: BrokerProcess, isolation: int) -> None:
    """IsolationLevel.forId throws IllegalArgumentException: KafkaApis.handleError sends
    ListOffsetsRequest.getErrorResponse, every partition UNKNOWN_SERVER_ERROR."""
    with connect(kbroker) as conn:
        resp = conn.request(list_offsets(9, [(0, -1, -1), (3, -1, -1)], isolation))
    assert list_offsets_codes(resp) == [
        (0, ErrorCode.unknown_server_error),
        (3, ErrorCode.unknown_server_error),
    ]
    assert_healthy(kbroker)


def test_list_offsets_negative_leader_epoch(kbroker: BrokerProcess) -> None:
    """Only -1 means "no epoch" (ReplicaManager.fetchOffset); -5 is older: FENCED_LEADER_EPOCH."""
    with connect(kbroker) as conn:
        resp = conn.request(list_offsets(9, [(0, -1, -5), (-1, -1, -1), (2**31 - 1, -1, -1)]))
    assert list_offsets_codes(resp) == [
        (0, ErrorCode.fenced_leader_epoch),
        (-1, ErrorCode.unknown_topic_or_partition),
        (2**31 - 1, ErrorCode.unknown_topic_or_partition),
    ]
    assert_healthy(kbroker)


# -- Fetch ---------------------------------------------------------------------------------


def fetch_request(version: int, isolation: int, partitions: list[int], tid: Any = None) -> Any:
    m = request_module(FETCH, version)
    fields = {f.name for f in dataclasses.fields(m.FetchTopic)}
    key = {"topic_id": tid} if "topic_id" in fields else {"topic": TOPIC}
    return make(
        m.FetchRequest,
        replica_id=i32(-1),
        max_wait=datetime.timedelta(0),
        min_bytes=i32(0),
        max_bytes=i32(1 << 20),
        isolation_level=i8(isolation),
        session_id=i32(0),
        session_epoch=i32(-1),
        topics=(
            m.FetchTopic(
                **key,
                partitions=tuple(
                    m.FetchPartition(
                        partition=i32(p),
                        current_leader_epoch=i32(-1),
                        fetch_offset=i64(0),
                        last_fetched_epoch=i32(-1),
                        log_start_offset=i64(-1),
                        partition_max_bytes=i32(1 << 20),
                    )
                    for p in partitions
                ),
            ),
        ),
        forgotten_topics_data=(),
        rack_id="",
    )


def test_fetch_unknown_isolation_level_v12(kbroker: BrokerProcess) -> None:
    """FetchIsolation.of -> IsolationLevel.forId throws: FetchRequest.getErrorResponse puts
    UNKNOWN_SERVER_ERROR at the top and (before v13) on every requested partition."""
    with connect(kbroker) as conn:
        resp = conn.request(fetch_request(12, 7, [0, 5]))
    assert resp.error_code == ErrorCode.unknown_server_error
    codes = [(p.partition_index, p.error_code) for t in resp.responses for p in t.partitions]
    assert codes == [(0, ErrorCode.unknown_server_error), (5, ErrorCode.unknown_server_error)]
    assert_healthy(kbroker)


def test_fetch_unknown_isolation_level_v16(kbroker: BrokerProcess) -> None:
    """From v13 FetchRequest.getErrorResponse carries the top-level error only."""
    with connect(kbroker) as conn:
        resp = conn.request(fetch_request(16, 3, [0], topic_id(conn)))
    assert resp.error_code == ErrorCode.unknown_server_error
    assert resp.responses == ()
    assert_healthy(kbroker)


def test_fetch_duplicate_partition(kbroker: BrokerProcess) -> None:
    """FetchRequest.fetchData is a LinkedHashMap: a repeated partition is read once."""
    with connect(kbroker) as conn:
        resp = conn.request(fetch_request(12, 0, [0, 0]))
    assert resp.error_code == ErrorCode.none
    codes = [(p.partition_index, p.error_code) for t in resp.responses for p in t.partitions]
    assert codes == [(0, ErrorCode.none)]
    assert_healthy(kbroker)


# -- every nullable field of every advertised request ----------------------------------


def _strip_none(tp: Any) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
        return next(a for a in args if a is not type(None)), True
    return tp, False


def _default(tp: Any, name: str) -> Any:
    """A plain value of a kio field type: arrays get one entry so nested nulls are reached."""
    tp, _ = _strip_none(tp)
    if typing.get_origin(tp) is tuple:
        return (_default(typing.get_args(tp)[0], name),)
    if dataclasses.is_dataclass(tp):
        return _build(tp)
    if typing.get_origin(tp) is typing.Literal:
        return typing.get_args(tp)[0]
    if tp is bool:
        return False
    if tp is uuid.UUID:
        return uuid.UUID(int=0)
    if issubclass(tp, Records):
        return Records(b"")
    if issubclass(tp, bytes):
        return b""
    if issubclass(tp, str):
        return SWEEP_TOPIC
    if issubclass(tp, datetime.timedelta):
        return datetime.timedelta(0)
    if issubclass(tp, datetime.datetime):
        return datetime.datetime.now(datetime.UTC)
    if issubclass(tp, float):
        return tp(0.0)
    if issubclass(tp, int):
        return tp(1 if name == "acks" else 0)
    raise TypeError(f"no default for {tp!r} ({name})")


def _build(cls: type) -> Any:
    hints = typing.get_type_hints(cls)
    return cls(**{f.name: _default(hints[f.name], f.name) for f in dataclasses.fields(cls)})


def _nullable_paths(cls: type, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, nullable = _strip_none(hints[f.name])
        if nullable:
            yield (*prefix, f.name)
        if typing.get_origin(tp) is tuple and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            yield from _nullable_paths(typing.get_args(tp)[0], (*prefix, f.name, 0))
        elif dataclasses.is_dataclass(tp):
            yield from _nullable_paths(tp, (*prefix, f.name))


def _set_path(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(head, int):
        items = list(obj)
        items[head] = _set_path(items[head], rest, value)
        return tuple(items)
    return dataclasses.replace(obj, **{head: _set_path(getattr(obj, head), rest, value)})


def _request_class(api_key: int, version: int) -> type:
    mod = request_module(api_key, version)
    return next(
        c
        for c in vars(mod).values()
        if isinstance(c, type) and getattr(getattr(c, "__type__", None), "name", "") == "request"
    )


def test_nullable_fields_sweep(kbroker: BrokerProcess) -> None:
    """Every nullable field of every advertised (api key, version) set to null, one request
    each: the broker answers or closes that connection, and never logs a traceback."""
    create_topic(kbroker.port, SWEEP_TOPIC)  # so the requests reach past "unknown topic"
    with connect(kbroker) as conn:
        versions = conn.api_versions()
    failures = []
    # DeleteTopics last: it deletes the sweep's topic.
    for api_key, (lo, hi) in sorted(versions.items(), key=lambda kv: kv[0] == DELETE_TOPICS):
        for version in range(lo, hi + 1):
            if legacy_version(api_key, version) is not None:
                continue  # no kio class: test_legacy_clients.py mangles these
            cls = _request_class(api_key, version)
            base = _build(cls)
            for path in _nullable_paths(cls):
                request = _set_path(base, path, None)
                before = len(kbroker.log_path.read_bytes())
                with KafkaWire("127.0.0.1", kbroker.port, timeout=3.0) as conn:
                    conn.send(request)
                    try:
                        conn.recv_frame()
                    except (ConnectionClosed, TimeoutError):
                        pass
                added = kbroker.log_path.read_bytes()[before:]
                if b"Traceback" in added:
                    failures.append(f"{cls.__name__} v{version} {'.'.join(map(str, path))}")
    assert not failures, failures
    assert_healthy(kbroker)
