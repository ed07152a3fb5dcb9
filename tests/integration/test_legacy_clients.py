"""Clients that Kafka 4 left behind (KIP-896), served as Kafka 3.9 served them.

- Debian's kcat (librdkafka 2.0.2) decides codec support from Produce v0 being advertised
  (KAFKA-18659): every codec must be produced and stored compressed, with no warning.
- kafka-python pinned to api_version (0, 10, 2) speaks Produce v2 (message format v1),
  Fetch v3, JoinGroup v1, OffsetCommit v2: produce, consume in a group, commit.
- Raw Fetch v0/v3 (our legacy codec) read a modern client's batches down-converted to
  magic 0/1; the other legacy versions answer real content.
- With pybroker.legacy.protocol.enable=false the old versions are refused as Kafka 4.1
  refuses them (the connection is closed), checked against the reference broker.
"""

from __future__ import annotations

import struct
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Producer
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError as KafkaPythonError

from pybroker.protocol.codec import build
from pybroker.protocol.compression import CODEC_NAMES, GZIP
from pybroker.protocol.legacy import decode_response, encode_request
from pybroker.protocol.legacy.message_set import decode_message_set
from pybroker.protocol.records import decode_records, iter_batches
from tests.support.broker import BrokerProcess
from tests.support.kafka_ref import KafkaReference
from tests.support.wire import ConnectionClosed, KafkaWire, encode_header, frame, request_module

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def legacy_off(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(
        tmp_path_factory.mktemp("legacy-off") / "data",
        overrides={"pybroker.legacy.protocol.enable": "false"},
    ).start()
    try:
        yield proc
    finally:
        proc.stop()


# -- raw helpers ---------------------------------------------------------------------------


def legacy_request(w: KafkaWire, key: int, version: int, fields: dict[str, Any]) -> dict:
    """Send one legacy request with our codec; decode the answer with it."""
    cid = w.next_correlation_id()
    body = encode_request(key, version, fields)
    w.send_raw(frame(encode_header(key, version, cid, flexible=False) + body))
    payload = w.recv_frame()
    assert struct.unpack_from(">i", payload)[0] == cid
    return decode_response(key, version, payload[4:])


def ensure_topic(port: int, topic: str, partitions: int = 1) -> None:
    m = request_module(19, 4)
    with KafkaWire(port=port) as w:
        w.request(
            build(
                m.CreateTopicsRequest,
                topics=[dict(name=topic, num_partitions=partitions, replication_factor=1)],
                timeout=10_000,
            )
        )
    wait_leader(port, topic)


def wait_leader(port: int, topic: str, timeout: float = 20.0) -> None:
    m = request_module(3, 4)
    deadline = time.monotonic() + timeout
    with KafkaWire(port=port) as w:
        while time.monotonic() < deadline:
            r = w.request(
                build(m.MetadataRequest, topics=[dict(name=topic)], allow_auto_topic_creation=False)
            )
            t = r.topics[0]
            if not t.error_code and t.partitions and all(p.leader_id >= 0 for p in t.partitions):
                return
            time.sleep(0.2)
    raise AssertionError(f"{topic} has no leader after {timeout}s")


def stored_batches(port: int, topic: str, partition: int = 0) -> bytes:
    """The partition's stored v2 batches, as a modern Fetch (v4) returns them."""
    m = request_module(1, 4)
    req = build(
        m.FetchRequest,
        replica_id=-1,
        max_wait=100,
        min_bytes=1,
        max_bytes=1 << 24,
        isolation_level=0,
        topics=[
            dict(
                topic=topic,
                partitions=[dict(partition=partition, fetch_offset=0, partition_max_bytes=1 << 24)],
            )
        ],
    )
    with KafkaWire(port=port) as w:
        resp = w.request(req)
    p = resp.responses[0].partitions[0]
    assert p.error_code == 0
    return bytes(p.records or b"")


def legacy_fetch(port: int, version: int, topic: str, offset: int = 0) -> dict:
    fields = dict(
        replica_id=-1,
        max_wait=500,
        min_bytes=1,
        max_bytes=1 << 24,
        topics=[
            dict(
                topic=topic,
                partitions=[dict(partition=0, fetch_offset=offset, partition_max_bytes=1 << 24)],
            )
        ],
    )
    with KafkaWire(port=port) as w:
        resp = legacy_request(w, 1, version, fields)
    return resp["responses"][0]["partitions"][0]


# -- kcat (librdkafka 2.0.2) -------------------------------------------------------------

# librdkafka sends a batch uncompressed when compressing does not shrink it (a lone short
# line): linger long enough that all lines travel as one compressible batch.
ONE_BATCH = ["-X", "linger.ms=1000"]


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_kcat_produces_every_codec_stored_compressed(broker: BrokerProcess, codec: str) -> None:
    topic = f"legacy-kcat-{codec}"
    ensure_topic(broker.port, topic)
    lines = "".join(f"k{i}:value-{i}\n" for i in range(50))
    r = subprocess.run(
        [
            "kcat",
            "-b",
            broker.bootstrap,
            "-P",
            "-t",
            topic,
            "-z",
            codec,
            "-K:",
            "-p",
            "0",
            *ONE_BATCH,
        ],
        input=lines.encode(),
        capture_output=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr.decode()
    assert "does not support" not in r.stderr.decode(), r.stderr.decode()
    data = stored_batches(broker.port, topic)
    headers = [h for _, h in iter_batches(data)]
    assert headers, "nothing stored"
    assert {CODEC_NAMES[h.compression] for h in headers} == {codec}
    values = [rec.value for pos, _ in iter_batches(data) for rec in decode_records(data, pos)]
    assert values == [f"value-{i}".encode() for i in range(50)]


def test_kcat_sees_produce_v0_advertised_when_legacy_is_off(legacy_off: BrokerProcess) -> None:
    """KAFKA-18659: Produce stays listed from v0 with the option off, so kcat compresses."""
    topic = "legacy-off-kcat"
    ensure_topic(legacy_off.port, topic)
    r = subprocess.run(
        [
            "kcat",
            "-b",
            legacy_off.bootstrap,
            "-P",
            "-t",
            topic,
            "-z",
            "gzip",
            "-p",
            "0",
            *ONE_BATCH,
        ],
        input=b"".join(b"line %d of a compressible text\n" % i for i in range(50)),
        capture_output=True,
        timeout=60,
    )
    assert r.returncode == 0 and "does not support" not in r.stderr.decode(), r.stderr.decode()
    data = stored_batches(legacy_off.port, topic)
    assert [h.compression for _, h in iter_batches(data)] == [GZIP]


# -- kafka-python 0.10.2 -----------------------------------------------------------------


@pytest.mark.parametrize(
    "api_version,codec",
    [((0, 10, 2), "gzip"), ((0, 9), "snappy"), ((0, 8, 2), "gzip")],
    ids=["0.10.2-magic1-gzip", "0.9-magic0-snappy", "0.8.2-magic0-gzip"],
)
def test_old_kafka_python_produce_consume_commit(
    broker: BrokerProcess, api_version: tuple[int, ...], codec: str
) -> None:
    """0.10.2: Produce v2 (magic 1), Fetch v3, JoinGroup v1, OffsetCommit v2. 0.9: Produce
    v1 (magic 0), Fetch v1, JoinGroup v0. 0.8.2: Produce v0, Fetch v0, no groups."""
    name = ".".join(map(str, api_version))
    topic = f"legacy-kafka-python-{name}"
    group = f"legacy-kp-{name}" if api_version >= (0, 9) else None
    ensure_topic(broker.port, topic)
    producer = KafkaProducer(
        bootstrap_servers=broker.bootstrap, api_version=api_version, compression_type=codec
    )
    sent = [(b"k%d" % i, b"value %d " % i * 4) for i in range(200)]
    futures = [producer.send(topic, key=k, value=v, partition=0) for k, v in sent]
    producer.flush(30)
    metadata = [f.get(timeout=30) for f in futures]
    producer.close()
    assert sorted(m.offset for m in metadata) == list(range(200))
    # The message sets became v2 batches: codec kept, no producer id (not idempotent),
    # and no timestamps from magic 0.
    data = stored_batches(broker.port, topic)
    headers = [h for _, h in iter_batches(data)]
    assert {CODEC_NAMES[h.compression] for h in headers} == {codec}
    assert {h.producer_id for h in headers} == {-1}
    if api_version < (0, 10):
        assert {h.max_timestamp for h in headers} == {-1}

    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        api_version=api_version,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=15_000,
    )
    if group is None:
        consumer.assign([TopicPartition(topic, 0)])
    else:
        consumer.subscribe([topic])
    got = []
    for msg in consumer:
        got.append((msg.offset, msg.key, msg.value))
        if len(got) == len(sent):
            break
    assert got == [(i, k, v) for i, (k, v) in enumerate(sent)]
    if group is None:
        consumer.close()
        return
    consumer.commit()
    assert consumer.committed(TopicPartition(topic, 0)) == 200
    consumer.close()
    # The commit is visible through the legacy OffsetFetch v0 as well.
    with KafkaWire(port=broker.port) as w:
        resp = legacy_request(
            w, 9, 0, dict(group_id=group, topics=[dict(name=topic, partition_indexes=[0])])
        )
    part = resp["topics"][0]["partitions"][0]
    assert (part["error_code"], part["committed_offset"]) == (0, 200)


def test_kafka_python_0_10_2_is_refused_when_legacy_is_off(legacy_off: BrokerProcess) -> None:
    topic = "legacy-off-kafka-python"
    ensure_topic(legacy_off.port, topic)
    producer = KafkaProducer(
        bootstrap_servers=legacy_off.bootstrap,
        api_version=(0, 10, 2),
        request_timeout_ms=3_000,
        retries=0,
        max_block_ms=5_000,
    )
    try:
        future = producer.send(topic, b"x", partition=0)
        with pytest.raises(KafkaPythonError):
            future.get(timeout=20)
    finally:
        producer.close(timeout=5)
    assert stored_batches(legacy_off.port, topic) == b""


# -- raw legacy Fetch over a modern client's data ---------------------------------------


@pytest.mark.parametrize("compression", ["none", "lz4"])
def test_fetch_v0_and_v3_down_convert_modern_batches(
    broker: BrokerProcess, compression: str
) -> None:
    topic = f"legacy-fetch-{compression}"
    ensure_topic(broker.port, topic)
    p = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "compression.type": compression,
            "enable.idempotence": True,
            "linger.ms": 50,
        }
    )
    base_ts = 1_700_000_000_000
    for i in range(30):
        p.produce(
            topic,
            key=b"key-%d" % i,
            value=b"value-%d" % i,
            partition=0,
            timestamp=base_ts + i,
            headers=[("h", b"dropped")],
        )
    assert p.flush(30) == 0
    codec = {"none": 0, "lz4": 3}[compression]
    for version, magic in ((0, 0), (1, 0), (2, 1), (3, 1)):
        part = legacy_fetch(broker.port, version, topic, offset=5)
        assert (part["error_code"], part["high_watermark"]) == (0, 30)
        got_codec, msgs = decode_message_set(part["records"])
        assert got_codec == codec
        assert {m.magic for m in msgs} == {magic}
        if codec == 0:  # uncompressed: records before the fetch offset are dropped
            assert msgs[0].offset == 5
        msgs = [m for m in msgs if m.offset >= 5]
        assert [m.offset for m in msgs] == list(range(5, 30))
        assert [(m.key, m.value) for m in msgs] == [
            (b"key-%d" % i, b"value-%d" % i) for i in range(5, 30)
        ]
        expected_ts = [base_ts + i for i in range(5, 30)] if magic == 1 else [-1] * 25
        assert [m.timestamp for m in msgs] == expected_ts


def test_fetch_v3_drops_markers_and_keeps_aborted_records(broker: BrokerProcess) -> None:
    """No isolation level before Fetch v4: aborted data is delivered, control batches
    (the commit/abort markers) are not, as Kafka 3.9's down-conversion did."""
    topic = "legacy-fetch-txn"
    ensure_topic(broker.port, topic)
    p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "legacy-txn"})
    p.init_transactions(30)
    for outcome in ("commit", "abort"):
        p.begin_transaction()
        for i in range(3):
            p.produce(topic, value=f"{outcome}-{i}".encode(), partition=0)
        p.flush(30)
        if outcome == "commit":
            p.commit_transaction(30)
        else:
            p.abort_transaction(30)
    part = legacy_fetch(broker.port, 3, topic)
    assert (part["error_code"], part["high_watermark"]) == (0, 8)
    _, msgs = decode_message_set(part["records"])
    assert [(m.offset, m.value) for m in msgs] == [
        (0, b"commit-0"),
        (1, b"commit-1"),
        (2, b"commit-2"),
        (4, b"abort-0"),
        (5, b"abort-1"),
        (6, b"abort-2"),
    ]


def test_fetch_v3_of_zstd_is_unsupported_compression_type(broker: BrokerProcess) -> None:
    topic = "legacy-fetch-zstd"
    ensure_topic(broker.port, topic)
    p = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": "zstd"})
    p.produce(topic, value=b"z" * 100, partition=0)
    assert p.flush(30) == 0
    part = legacy_fetch(broker.port, 3, topic)
    assert part["error_code"] == 76  # UNSUPPORTED_COMPRESSION_TYPE
    assert not part["records"]


def test_produce_v0_v1_message_sets_are_stored_as_v2(broker: BrokerProcess) -> None:
    from pybroker.protocol.legacy.message_set import encode_messages
    from pybroker.protocol.records import Record

    topic = "legacy-produce-raw"
    ensure_topic(broker.port, topic)
    recs = [Record(i, 1_700_000_000_000 + i, b"k%d" % i, b"v%d" % i, ()) for i in range(3)]
    with KafkaWire(port=broker.port) as w:
        for version, magic, codec in ((0, 0, 0), (1, 0, 2), (2, 1, 1)):
            ms = encode_messages(magic, recs, codec=codec)
            resp = legacy_request(
                w,
                0,
                version,
                dict(
                    acks=1,
                    timeout=5000,
                    topic_data=[dict(name=topic, partition_data=[dict(index=0, records=ms)])],
                ),
            )
            part = resp["responses"][0]["partition_responses"][0]
            assert (part["error_code"], part["base_offset"]) == (0, version * 3)
        corrupt = bytearray(encode_messages(1, recs))
        corrupt[-1] ^= 1
        resp = legacy_request(
            w,
            0,
            2,
            dict(
                acks=1,
                timeout=5000,
                topic_data=[dict(name=topic, partition_data=[dict(index=0, records=corrupt)])],
            ),
        )
        assert resp["responses"][0]["partition_responses"][0]["error_code"] == 2  # CORRUPT
    data = stored_batches(broker.port, topic)
    headers = [h for _, h in iter_batches(data)]
    assert [(h.base_offset, h.compression, h.magic) for h in headers] == [
        (0, 0, 2),
        (3, 2, 2),
        (6, 1, 2),
    ]
    records = [r for pos, _ in iter_batches(data) for r in decode_records(data, pos)]
    assert [r.timestamp for r in records] == [-1] * 6 + [1_700_000_000_000 + i for i in range(3)]
    assert [r.key for r in records] == [b"k0", b"k1", b"k2"] * 3


def test_other_legacy_versions_answer(broker: BrokerProcess) -> None:
    """CreateTopics v0-1, ListOffsets v0, OffsetCommit v0-1, OffsetFetch v0,
    OffsetForLeaderEpoch v0-1, DescribeConfigs v0, DeleteTopics v0."""
    topic = "legacy-admin"
    with KafkaWire(port=broker.port) as w:
        created = legacy_request(
            w,
            19,
            0,
            dict(
                topics=[
                    dict(
                        name=topic,
                        num_partitions=2,
                        replication_factor=1,
                        assignments=[],
                        configs=[dict(name="retention.ms", value="12345")],
                    )
                ],
                timeout=10_000,
            ),
        )
        assert created == {"topics": [{"name": topic, "error_code": 0}]}
        again = legacy_request(
            w,
            19,
            1,
            dict(
                topics=[
                    dict(
                        name=topic,
                        num_partitions=1,
                        replication_factor=1,
                        assignments=[],
                        configs=[],
                    )
                ],
                timeout=10_000,
                validate_only=False,
            ),
        )
        assert again["topics"][0]["error_code"] == 36  # TOPIC_ALREADY_EXISTS
        assert again["topics"][0]["error_message"] == f"Topic '{topic}' already exists."
    wait_leader(broker.port, topic)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for _ in range(7):
        p.produce(topic, value=b"x", partition=1)
    assert p.flush(30) == 0
    with KafkaWire(port=broker.port) as w:
        offsets = legacy_request(
            w,
            2,
            0,
            dict(
                replica_id=-1,
                topics=[
                    dict(
                        name=topic,
                        partitions=[
                            dict(partition_index=1, timestamp=-1, max_num_offsets=1),
                            dict(partition_index=0, timestamp=-2, max_num_offsets=1),
                        ],
                    )
                ],
            ),
        )
        parts = {p["partition_index"]: p for p in offsets["topics"][0]["partitions"]}
        assert parts[1]["old_style_offsets"] == [7] and parts[0]["old_style_offsets"] == [0]
        configs = legacy_request(
            w,
            32,
            0,
            dict(
                resources=[
                    dict(resource_type=2, resource_name=topic, configuration_keys=["retention.ms"])
                ]
            ),
        )
        entry = configs["results"][0]["configs"]
        assert [(c["name"], c["value"]) for c in entry] == [("retention.ms", "12345")]
        epochs = legacy_request(
            w,
            23,
            1,
            dict(topics=[dict(topic=topic, partitions=[dict(partition=1, leader_epoch=0)])]),
        )
        assert epochs["topics"][0]["partitions"][0] == dict(
            error_code=0, partition=1, leader_epoch=0, end_offset=7
        )
        # Offsets: the coordinator must be up first (FindCoordinator v0).
        fc = request_module(10, 0)
        deadline = time.monotonic() + 30
        while True:
            found = w.request(build(fc.FindCoordinatorRequest, key="legacy-g"))
            if found.error_code == 0:
                break
            assert time.monotonic() < deadline, found
            time.sleep(0.2)
        commit_fields = dict(
            group_id="legacy-g",
            topics=[
                dict(
                    name=topic,
                    partitions=[
                        dict(partition_index=1, committed_offset=4, committed_metadata="m")
                    ],
                )
            ],
        )
        while True:
            committed = legacy_request(w, 8, 0, commit_fields)
            code = committed["topics"][0]["partitions"][0]["error_code"]
            if code == 0:
                break
            assert code in (14, 15, 16) and time.monotonic() < deadline, committed
            time.sleep(0.2)
        v1_fields = dict(
            group_id="legacy-g",
            generation_id_or_member_epoch=-1,
            member_id="",
            topics=[
                dict(
                    name=topic,
                    partitions=[
                        dict(
                            partition_index=0,
                            committed_offset=0,
                            commit_timestamp=-1,
                            committed_metadata=None,
                        )
                    ],
                )
            ],
        )
        assert legacy_request(w, 8, 1, v1_fields)["topics"][0]["partitions"][0]["error_code"] == 0
        fetched = legacy_request(
            w, 9, 0, dict(group_id="legacy-g", topics=[dict(name=topic, partition_indexes=[0, 1])])
        )
        got = {
            p["partition_index"]: (p["committed_offset"], p["metadata"], p["error_code"])
            for p in fetched["topics"][0]["partitions"]
        }
        assert got == {0: (0, "", 0), 1: (4, "m", 0)}
        deleted = legacy_request(w, 20, 0, dict(topic_names=[topic], timeout=10_000))
        assert deleted == {"responses": [{"name": topic, "error_code": 0}]}


# -- the option off: Kafka 4.1's behaviour ------------------------------------------------


@pytest.mark.parametrize("key,version", [(0, 2), (1, 3), (2, 0), (8, 1), (9, 0), (19, 1)])
def test_removed_versions_close_the_connection_like_kafka_41(
    legacy_off: BrokerProcess, kafka_reference: KafkaReference, key: int, version: int
) -> None:
    fields = {
        0: dict(acks=1, timeout=1000, topic_data=[]),
        1: dict(replica_id=-1, max_wait=10, min_bytes=1, max_bytes=100, topics=[]),
        2: dict(replica_id=-1, topics=[]),
        8: dict(group_id="g", generation_id_or_member_epoch=-1, member_id="", topics=[]),
        9: dict(group_id="g", topics=[]),
        19: dict(topics=[], timeout=1000, validate_only=False),
    }[key]
    for port in (legacy_off.port, kafka_reference.port):
        with KafkaWire(port=port) as w, pytest.raises(ConnectionClosed):
            legacy_request(w, key, version, fields)


def test_legacy_off_advertises_kafka_41_minimums(legacy_off: BrokerProcess) -> None:
    with KafkaWire(port=legacy_off.port) as w:
        versions = w.api_versions()
    assert versions[0][0] == 0  # KAFKA-18659
    assert (versions[1][0], versions[2][0], versions[8][0], versions[9][0]) == (4, 1, 2, 1)


# -- hostile legacy bodies --------------------------------------------------------------


def test_mangled_legacy_requests_never_stop_the_broker(broker: BrokerProcess) -> None:
    """Valid legacy bodies with bytes flipped, cut or appended: each is answered or its
    connection closed, and the broker keeps serving (seeded, bounded)."""
    import random

    from pybroker.protocol.legacy.apis import LEGACY_VERSIONS
    from pybroker.protocol.legacy.message_set import encode_messages
    from pybroker.protocol.records import Record

    rng = random.Random(896)
    ms = encode_messages(1, [Record(0, 1, b"k", b"v" * 40, ())], codec=GZIP)
    samples: dict[int, dict[str, Any]] = {
        0: dict(
            acks=1,
            timeout=100,
            topic_data=[dict(name="legacy-mangled", partition_data=[dict(index=0, records=ms)])],
        ),
        1: dict(
            replica_id=-1,
            max_wait=10,
            min_bytes=1,
            max_bytes=1000,
            topics=[
                dict(
                    topic="legacy-mangled",
                    partitions=[dict(partition=0, fetch_offset=0, partition_max_bytes=1000)],
                )
            ],
        ),
    }
    t, parts = "legacy-mangled", [dict(partition_index=0, committed_offset=1)]
    samples.update(
        {
            2: dict(
                replica_id=-1,
                topics=[
                    dict(
                        name=t,
                        partitions=[dict(partition_index=0, timestamp=-1, max_num_offsets=1)],
                    )
                ],
            ),
            8: dict(
                group_id="mangled",
                generation_id_or_member_epoch=-1,
                member_id="",
                topics=[
                    dict(name=t, partitions=[dict(p, commit_timestamp=-1, committed_metadata="m")])
                    for p in parts
                ],
            ),
            9: dict(group_id="mangled", topics=[dict(name=t, partition_indexes=[0])]),
            19: dict(
                topics=[
                    dict(
                        name="legacy-mangled-new",
                        num_partitions=1,
                        replication_factor=1,
                        assignments=[dict(partition_index=0, broker_ids=[0])],
                        configs=[dict(name="retention.ms", value="1000")],
                    )
                ],
                timeout=100,
                validate_only=True,
            ),
            23: dict(topics=[dict(topic=t, partitions=[dict(partition=0, leader_epoch=0)])]),
            32: dict(resources=[dict(resource_type=2, resource_name=t, configuration_keys=["a"])]),
            20: dict(topic_names=["legacy-mangled-absent"], timeout=100),
        }
    )
    ensure_topic(broker.port, t)
    sent = 0
    for key, version in sorted(LEGACY_VERSIONS):
        if key not in samples:
            continue
        body = bytearray(encode_request(key, version, samples[key]))
        for _ in range(40):
            mangled = bytearray(body)
            how = rng.randrange(3)
            if how == 0:
                for _ in range(rng.randint(1, 4)):
                    mangled[rng.randrange(len(mangled))] = rng.randrange(256)
            elif how == 1:
                del mangled[rng.randrange(len(mangled)) :]
            else:
                mangled += rng.randbytes(rng.randint(1, 64))
            with KafkaWire(port=broker.port, timeout=2) as w:
                w.send_raw(frame(encode_header(key, version, 1, flexible=False) + bytes(mangled)))
                try:
                    w.recv_frame()
                except (ConnectionClosed, TimeoutError):
                    pass
            sent += 1
    assert sent == (len(LEGACY_VERSIONS) - 1) * 40  # all but WriteTxnMarkers v0
    with KafkaWire(port=broker.port) as w:
        assert w.api_versions()[0] == (0, 13)
    assert broker.proc is not None and broker.proc.poll() is None
    log = broker.log_path.read_text(errors="replace")
    assert "unexpected error" not in log, log[-3000:]
