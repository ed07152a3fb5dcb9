"""The idempotent producer against a real broker process (issue #5, first half).

- InitProducerId over the wire: fresh ids, Kafka's INVALID_REQUEST cases, and the answer
  to a transactional id no FindCoordinator has placed here yet.
- Kafka 4's sequence rules with raw Produce requests (batches built by kafka-python's
  record builder, an independent encoder): duplicates answered with the original offset,
  gaps, stale epochs, epoch bumps, unknown producer ids, transactional batches.
- Producer state survives a clean restart (snapshot) and a SIGKILL (rebuilt from the log).
- Stock clients with idempotence on: kafka-python (its default), confluent-kafka and
  aiokafka; read back byte for byte, and the stored batches carry producer ids.
- Lost Produce responses (tests/support/proxy.py drops the connection after the broker
  appended): the clients retry the same batches and the topic has no duplicate and no gap.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaProducer
from kafka.record.default_records import DefaultRecordBatchBuilder
from kio.schema.errors import ErrorCode
from kio.static.primitive import Records, i16, i32, i64

from pybroker.protocol.records import decode_records, iter_batches
from tests.support.broker import BrokerProcess, free_port
from tests.support.clients import (
    PARTITIONS,
    Produced,
    confluent_consume,
    confluent_produce,
    headers_of,
    key_of,
    new_base_ts,
    timestamp_of,
    value_of,
    verify_consumed,
)
from tests.support.proxy import FaultProxy
from tests.support.wire import KafkaWire, request_module

pytestmark = pytest.mark.timeout(300)

PRODUCE, FETCH, CREATE_TOPICS, INIT_PRODUCER_ID = 0, 1, 19, 22
N_RECORDS = 20_000


# -- raw requests ----------------------------------------------------------------------------


def build(cls: type, **kwargs: Any) -> Any:
    """A kio entity from the fields this version has (others are dropped)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in kwargs.items() if k in names})


def connect(broker: BrokerProcess) -> KafkaWire:
    return KafkaWire("127.0.0.1", broker.port, timeout=15)


def create_topic(conn: KafkaWire, name: str, partitions: int = 1) -> None:
    v = conn.pick_version(CREATE_TOPICS, 2, 7)
    m = request_module(CREATE_TOPICS, v)
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


def init_producer_id(
    conn: KafkaWire,
    version: int = 5,
    transactional_id: str | None = None,
    producer_id: int = -1,
    epoch: int = -1,
) -> Any:
    m = request_module(INIT_PRODUCER_ID, version)
    return conn.request(
        build(
            m.InitProducerIdRequest,
            transactional_id=transactional_id,
            transaction_timeout=datetime.timedelta(seconds=60),
            producer_id=i64(producer_id),
            producer_epoch=i16(epoch),
        )
    )


def new_producer_id(conn: KafkaWire) -> int:
    resp = init_producer_id(conn)
    assert resp.error_code == ErrorCode.none and resp.producer_epoch == 0, resp
    return int(resp.producer_id)


def idem_batch(
    pid: int, epoch: int, seq: int, values: list[bytes], *, transactional: bool = False
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
    topic: str,
    batch: bytes,
    *,
    transactional_id: str | None = None,
    partition: int = 0,
) -> Any:
    """acks=all Produce of one batch; returns the partition response."""
    v = conn.pick_version(PRODUCE, 3, 12)
    m = request_module(PRODUCE, v)
    resp = conn.request(
        build(
            m.ProduceRequest,
            transactional_id=transactional_id,
            acks=i16(-1),
            timeout=datetime.timedelta(seconds=10),
            topic_data=(
                build(
                    m.TopicProduceData,
                    name=topic,
                    partition_data=(
                        build(m.PartitionProduceData, index=i32(partition), records=Records(batch)),
                    ),
                ),
            ),
        )
    )
    (t,) = resp.responses
    (p,) = t.partition_responses
    return p


def fetch_batches(conn: KafkaWire, topic: str, partition: int = 0) -> bytes:
    v = conn.pick_version(FETCH, 4, 12)
    m = request_module(FETCH, v)
    resp = conn.request(
        build(
            m.FetchRequest,
            max_wait=datetime.timedelta(milliseconds=0),
            min_bytes=i32(1),
            max_bytes=i32(64 << 20),
            topics=(
                build(
                    m.FetchTopic,
                    topic=topic,
                    partitions=(
                        build(
                            m.FetchPartition,
                            partition=i32(partition),
                            fetch_offset=i64(0),
                            partition_max_bytes=i32(64 << 20),
                        ),
                    ),
                ),
            ),
            forgotten_topics_data=(),
        )
    )
    (p,) = resp.responses[0].partitions
    assert p.error_code == ErrorCode.none, p
    return bytes(p.records or b"")


def stored_values(conn: KafkaWire, topic: str, partition: int = 0) -> list[tuple[int, bytes]]:
    data = fetch_batches(conn, topic, partition)
    return [(r.offset, r.value) for pos, _ in iter_batches(data) for r in decode_records(data, pos)]


def assert_ok(resp: Any, base_offset: int) -> None:
    assert (resp.error_code, resp.base_offset) == (ErrorCode.none, base_offset), resp


def assert_error(resp: Any, code: ErrorCode, log_start_offset: int = 0) -> None:
    assert resp.error_code == code, resp
    assert (resp.base_offset, resp.log_start_offset) == (-1, log_start_offset), resp
    assert resp.error_message is None, resp  # Kafka sends no message for these


# -- InitProducerId ---------------------------------------------------------------------------


def test_init_producer_id_is_advertised(broker: BrokerProcess) -> None:
    with connect(broker) as conn:
        assert conn.api_versions()[INIT_PRODUCER_ID] == (0, 5)


def test_init_producer_id_hands_out_fresh_ids(broker: BrokerProcess) -> None:
    with connect(broker) as conn:
        seen = []
        for version in range(6):
            resp = init_producer_id(conn, version)
            assert resp.error_code == ErrorCode.none, resp
            assert resp.producer_epoch == 0 and resp.producer_id >= 0
            seen.append(int(resp.producer_id))
        # KIP-360 fields without a transactional id: Kafka blindly allocates a new id.
        resp = init_producer_id(conn, 4, producer_id=seen[-1], epoch=0)
        assert (resp.error_code, resp.producer_epoch) == (ErrorCode.none, 0), resp
        seen.append(int(resp.producer_id))
        assert len(set(seen)) == len(seen)


@pytest.mark.parametrize(
    ("transactional_id", "producer_id", "epoch", "code"),
    [
        (None, 7, -1, ErrorCode.invalid_request),
        (None, -1, 3, ErrorCode.invalid_request),
        ("", -1, -1, ErrorCode.invalid_request),
        # no FindCoordinator has made this broker lead the id's __transaction_state partition
        ("my-transactions", -1, -1, ErrorCode.not_coordinator),
    ],
)
def test_init_producer_id_errors(
    broker: BrokerProcess, transactional_id: str | None, producer_id: int, epoch: int, code
) -> None:
    with connect(broker) as conn:
        resp = init_producer_id(conn, 5, transactional_id, producer_id, epoch)
        assert (resp.error_code, resp.producer_id, resp.producer_epoch) == (code, -1, -1)


# -- sequence rules over the wire ------------------------------------------------------------


def test_sequence_rules(broker: BrokerProcess) -> None:
    topic = "idem-rules"
    with connect(broker) as conn:
        create_topic(conn, topic)
        pid = new_producer_id(conn)
        assert_ok(produce(conn, topic, idem_batch(pid, 0, 0, [b"a0", b"a1", b"a2"])), 0)
        assert_ok(produce(conn, topic, idem_batch(pid, 0, 3, [b"b3", b"b4"])), 3)
        # Retries of either batch: success with the original offsets, nothing appended.
        assert_ok(produce(conn, topic, idem_batch(pid, 0, 0, [b"a0", b"a1", b"a2"])), 0)
        assert_ok(produce(conn, topic, idem_batch(pid, 0, 3, [b"b3", b"b4"])), 3)
        # A gap, and an overlap that is not a stored batch.
        assert_error(produce(conn, topic, idem_batch(pid, 0, 9, [b"x"])), 45)
        assert_error(produce(conn, topic, idem_batch(pid, 0, 4, [b"x"])), 45)
        # The client bumps its own epoch (KIP-360): sequences restart at 0.
        assert_error(produce(conn, topic, idem_batch(pid, 1, 5, [b"x"])), 45)
        assert_ok(produce(conn, topic, idem_batch(pid, 1, 0, [b"c0"])), 5)
        # The old epoch is fenced.
        assert_error(produce(conn, topic, idem_batch(pid, 0, 5, [b"x"])), 47)
        # A producer id the partition never saw may start anywhere (Kafka 2.5+: no
        # UNKNOWN_PRODUCER_ID, state may have been deleted with the log's head).
        other = new_producer_id(conn)
        assert_ok(produce(conn, topic, idem_batch(other, 0, 42, [b"d42"])), 6)
        assert_ok(produce(conn, topic, idem_batch(other, 0, 43, [b"d43"])), 7)
        assert_error(produce(conn, topic, idem_batch(other, 0, 45, [b"x"])), 45)
        # Transactional batches: without a transactional id the request is refused
        # (Kafka's top-level TRANSACTIONAL_ID_AUTHORIZATION_FAILED); with one, KIP-890
        # verification finds no transaction coordinator (no __transaction_state yet):
        # NOT_ENOUGH_REPLICAS, which producers retry (tests/integration/
        # test_transactions_wire.py has the cases with a coordinator).
        txn = idem_batch(pid, 1, 1, [b"t"], transactional=True)
        resp = produce(conn, topic, txn)
        assert (resp.error_code, resp.base_offset, resp.log_start_offset) == (53, -1, -1)
        resp = produce(conn, topic, txn, transactional_id="tx")
        assert (resp.error_code, resp.base_offset, resp.error_message) == (
            19,
            -1,
            "Unable to verify the partition has been added to the transaction. "
            "Underlying error: COORDINATOR_NOT_AVAILABLE",
        )
        assert stored_values(conn, topic) == [
            (0, b"a0"),
            (1, b"a1"),
            (2, b"a2"),
            (3, b"b3"),
            (4, b"b4"),
            (5, b"c0"),
            (6, b"d42"),
            (7, b"d43"),
        ]
        # Non-idempotent producers are unaffected.
        assert_ok(produce(conn, topic, idem_batch(-1, -1, -1, [b"plain"])), 8)


def test_state_survives_clean_and_unclean_restarts(fresh_broker: BrokerProcess) -> None:
    topic = "idem-restart"
    fresh_broker.start()
    with connect(fresh_broker) as conn:
        create_topic(conn, topic)
        pid = new_producer_id(conn)
        for seq in range(3):
            assert_ok(produce(conn, topic, idem_batch(pid, 0, seq, [b"v%d" % seq])), seq)

    fresh_broker.restart()  # SIGTERM: state from the shutdown snapshot
    with connect(fresh_broker) as conn:
        assert_ok(produce(conn, topic, idem_batch(pid, 0, 1, [b"v1"])), 1)
        assert_ok(produce(conn, topic, idem_batch(pid, 0, 2, [b"v2"])), 2)
        assert_ok(produce(conn, topic, idem_batch(pid, 0, 3, [b"v3"])), 3)
        after_restart = new_producer_id(conn)
        assert after_restart > pid  # ids are never reused across restarts

    fresh_broker.kill()  # SIGKILL: no shutdown snapshot, rebuilt from the log
    fresh_broker.start()
    with connect(fresh_broker) as conn:
        assert_ok(produce(conn, topic, idem_batch(pid, 0, 3, [b"v3"])), 3)
        assert_ok(produce(conn, topic, idem_batch(pid, 0, 0, [b"v0"])), 0)
        assert_error(produce(conn, topic, idem_batch(pid, 0, 5, [b"x"])), 45)
        assert_ok(produce(conn, topic, idem_batch(pid, 0, 4, [b"v4"])), 4)
        assert stored_values(conn, topic) == [(i, b"v%d" % i) for i in range(5)]
        assert new_producer_id(conn) > after_restart


# -- stock clients ----------------------------------------------------------------------------


def raw_create_topic(bootstrap_port: int, topic: str, partitions: int = PARTITIONS) -> None:
    with KafkaWire("127.0.0.1", bootstrap_port, timeout=15) as conn:
        create_topic(conn, topic, partitions)
        deadline = time.monotonic() + 15
        while True:  # wait until every partition is served
            try:
                for p in range(partitions):
                    fetch_batches(conn, topic, p)
                return
            except AssertionError:
                assert time.monotonic() < deadline, f"{topic} never became available"
                time.sleep(0.05)


def assert_batches_idempotent(port: int, topic: str, partitions: int = PARTITIONS) -> None:
    """Every stored batch carries a producer id and per-partition contiguous sequences."""
    with KafkaWire("127.0.0.1", port, timeout=15) as conn:
        for p in range(partitions):
            data = fetch_batches(conn, topic, p)
            headers = [h for _, h in iter_batches(data)]
            assert headers, f"partition {p} is empty"
            assert all(h.producer_id >= 0 for h in headers), headers[0]
            expected = {}
            for h in headers:
                key = (h.producer_id, h.producer_epoch)
                assert h.base_sequence == expected.get(key, h.base_sequence), (p, h)
                expected[key] = h.last_sequence + 1


def kafka_python_produce(bootstrap: str, topic: str, count: int, base_ts: int, **conf) -> list:
    producer = KafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=30_000, **conf)
    try:
        futures = [
            producer.send(
                topic,
                value=value_of(i),
                key=key_of(i),
                headers=headers_of(i),
                timestamp_ms=timestamp_of(base_ts, i),
            )
            for i in range(count)
        ]
        producer.flush(timeout=120)
        placements = []
        for fut in futures:
            md = fut.get(timeout=1)
            placements.append((md.partition, md.offset))
    finally:
        producer.close(timeout=10)
    return placements


def test_kafka_python_default_producer_is_idempotent(broker: BrokerProcess) -> None:
    topic = "idem-kafka-python"
    raw_create_topic(broker.port, topic)
    base_ts = new_base_ts()
    placements = kafka_python_produce(broker.bootstrap, topic, N_RECORDS, base_ts, linger_ms=5)
    verify_consumed(
        Produced(topic, "none", N_RECORDS, base_ts, placements),
        confluent_consume(broker.bootstrap, topic),
    )
    assert_batches_idempotent(broker.port, topic)


def test_confluent_enable_idempotence(broker: BrokerProcess) -> None:
    topic = "idem-confluent"
    raw_create_topic(broker.port, topic)
    base_ts = new_base_ts()
    acked = confluent_produce(
        broker.bootstrap, topic, range(N_RECORDS), "lz4", base_ts, **{"enable.idempotence": True}
    )
    placements = [acked.get(i) for i in range(N_RECORDS)]
    verify_consumed(
        Produced(topic, "lz4", N_RECORDS, base_ts, placements),
        confluent_consume(broker.bootstrap, topic),
    )
    assert_batches_idempotent(broker.port, topic)


def aiokafka_produce(bootstrap: str, topic: str, count: int, base_ts: int, **conf) -> list:
    from aiokafka import AIOKafkaProducer

    async def run() -> list:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, enable_idempotence=True, request_timeout_ms=30_000, **conf
        )
        await producer.start()
        try:
            futures = [
                await producer.send(
                    topic,
                    value=value_of(i),
                    key=key_of(i),
                    headers=headers_of(i),
                    timestamp_ms=timestamp_of(base_ts, i),
                )
                for i in range(count)
            ]
            metas = await asyncio.wait_for(asyncio.gather(*futures), 120)
        finally:
            await producer.stop()
        return [(md.partition, md.offset) for md in metas]

    return asyncio.run(run())


def test_aiokafka_enable_idempotence(broker: BrokerProcess) -> None:
    topic = "idem-aiokafka"
    raw_create_topic(broker.port, topic)
    base_ts = new_base_ts()
    placements = aiokafka_produce(broker.bootstrap, topic, N_RECORDS, base_ts, linger_ms=5)
    verify_consumed(
        Produced(topic, "none", N_RECORDS, base_ts, placements),
        confluent_consume(broker.bootstrap, topic),
    )
    assert_batches_idempotent(broker.port, topic)


# -- lost responses: the clients retry, the broker deduplicates ------------------------------


@pytest.fixture
def proxied(tmp_path, monkeypatch) -> Iterator[tuple[BrokerProcess, FaultProxy]]:
    """A broker reached through a proxy that loses some Produce responses."""
    monkeypatch.setenv("PYBROKER_LOG_LEVEL", "DEBUG")  # duplicates are logged at debug
    port = free_port()
    proxy_port = free_port()
    drops = {4, 9, 10, 17, 30}  # two in a row: several batches in flight on one link
    proxy = FaultProxy(port, lambda n: n in drops, port=proxy_port).start()
    broker = BrokerProcess(
        tmp_path / "data",
        {"advertised.listeners": f"PLAINTEXT://127.0.0.1:{proxy_port}"},
        port=port,
    )
    try:
        broker.start()
        yield broker, proxy
    finally:
        broker.kill()
        proxy.stop()


def _duplicates_logged(broker: BrokerProcess) -> int:
    return broker.log_tail(1_000_000).count("duplicate of the batch at offset")


@pytest.mark.parametrize("client", ["kafka-python", "confluent-kafka", "aiokafka", "kafkajs"])
def test_retried_batches_are_not_duplicated(proxied, client: str) -> None:
    broker, proxy = proxied
    headers = headers_of
    topic = f"idem-retries-{client}"
    bootstrap = f"127.0.0.1:{proxy.port}"
    raw_create_topic(broker.port, topic)
    base_ts = new_base_ts()
    count = 5_000
    if client == "kafka-python":
        placements = kafka_python_produce(
            bootstrap, topic, count, base_ts, linger_ms=2, batch_size=4096, retry_backoff_ms=20
        )
    elif client == "aiokafka":
        placements = aiokafka_produce(
            bootstrap, topic, count, base_ts, linger_ms=2, max_batch_size=4096, retry_backoff_ms=20
        )
    elif client == "kafkajs":
        from tests.integration.test_transactions_clients import require_client, run_node

        require_client(client)
        result = run_node(
            dict(
                scenario="idempotent",
                brokers=bootstrap,
                topic=topic,
                count=count,
                partitions=PARTITIONS,
                base_ts=base_ts,
                chunk=50,
                deadline_s=120,
            )
        )
        placements = [tuple(p) for p in result["placements"]]

        def headers(i: int) -> list[tuple[str, bytes]]:
            return [("idx", b"%06d" % i)]  # kafkajs headers are a map: one per name
    else:
        acked = confluent_produce(
            bootstrap,
            topic,
            range(count),
            "none",
            base_ts,
            **{
                "enable.idempotence": True,
                "linger.ms": 2,
                "batch.size": 4096,
                "retry.backoff.ms": 20,
            },
        )
        placements = [acked.get(i) for i in range(count)]
    assert proxy.dropped == 5, (proxy.dropped, proxy.produce_responses)
    assert proxy.connections > 1  # the clients reconnected after each loss
    verify_consumed(
        Produced(topic, "none", count, base_ts, placements, headers=headers),
        confluent_consume(f"127.0.0.1:{broker.port}", topic),
    )
    assert_batches_idempotent(broker.port, topic)
    assert _duplicates_logged(broker) >= 1, "no retry reached the broker as a duplicate"
