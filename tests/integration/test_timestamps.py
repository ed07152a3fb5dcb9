"""LogAppendTime topics and ListOffsets MAX_TIMESTAMP, through confluent-kafka."""

from __future__ import annotations

import time

from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, Consumer, Producer
from confluent_kafka import TopicPartition as TP
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from tests.support.broker import BrokerProcess


def create(admin: AdminClient, name: str, configs: dict[str, str]) -> None:
    admin.create_topics([NewTopic(name, num_partitions=1, config=configs)])[name].result(20)


def produce(bootstrap: str, topic: str, stamps: list[int]) -> list[tuple[int, int, int]]:
    """Produce one record per timestamp; (offset, timestamp type, timestamp) per report."""
    reports: list[tuple[int, int, int]] = []

    def on_delivery(err, msg) -> None:  # noqa: ANN001
        assert err is None, err
        kind, ts = msg.timestamp()
        reports.append((msg.offset(), kind, ts))

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for i, ts in enumerate(stamps):
        p.produce(topic, value=f"v{i}".encode(), timestamp=ts, on_delivery=on_delivery)
        p.flush(20)  # one batch per record, so every record has its own timestamp check
    assert len(reports) == len(stamps)
    return sorted(reports)


def consume(bootstrap: str, topic: str, n: int) -> list[tuple[int, int, int, bytes]]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic}"})
    c.assign([TP(topic, 0, 0)])
    out: list[tuple[int, int, int, bytes]] = []
    deadline = time.monotonic() + 20
    while len(out) < n and time.monotonic() < deadline:
        for m in c.consume(n, 0.5):
            assert m.error() is None, m.error()
            kind, ts = m.timestamp()
            out.append((m.offset(), kind, ts, m.value()))
    c.close()
    return out


def test_log_append_time_replaces_producer_timestamps(broker: BrokerProcess) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    create(admin, "lat-topic", {"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    reports = produce(broker.bootstrap, "lat-topic", [1_000, 2_000, 3_000])
    after = int(time.time() * 1000)
    # The produce response carries the broker's append time; librdkafka reports it.
    for offset, kind, ts in reports:
        assert kind == TIMESTAMP_LOG_APPEND_TIME, (offset, kind)
        assert before <= ts <= after
    got = consume(broker.bootstrap, "lat-topic", 3)
    assert [(o, v) for o, _, _, v in got] == [(0, b"v0"), (1, b"v1"), (2, b"v2")]
    for (offset, kind, ts, _), (_, _, reported) in zip(got, reports, strict=True):
        assert kind == TIMESTAMP_LOG_APPEND_TIME
        assert ts == reported, offset


def test_create_time_kept_and_max_timestamp_lookup(broker: BrokerProcess) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    create(admin, "ct-topic", {})
    stamps = [5_000, 9_000, 7_000, 6_000]
    reports = produce(broker.bootstrap, "ct-topic", stamps)
    assert [(o, k, t) for o, k, t in reports] == [
        (i, TIMESTAMP_CREATE_TIME, ts) for i, ts in enumerate(stamps)
    ]
    got = consume(broker.bootstrap, "ct-topic", 4)
    assert [(o, t) for o, _, t, _ in got] == list(enumerate(stamps))

    tp = TP("ct-topic", 0)
    specs = {
        "max": OffsetSpec.max_timestamp(),
        "earliest": OffsetSpec.earliest(),
        "latest": OffsetSpec.latest(),
        "at-6500": OffsetSpec.for_timestamp(6_500),
        "after-all": OffsetSpec.for_timestamp(10_000),
    }
    answers = {}
    for name, spec in specs.items():
        result = admin.list_offsets({tp: spec})[tp].result(20)
        answers[name] = (result.offset, result.timestamp)
    assert answers["max"] == (1, 9_000)  # the record with the largest timestamp
    assert answers["earliest"][0] == 0
    assert answers["latest"][0] == 4
    assert answers["at-6500"] == (1, 9_000)  # first offset whose timestamp >= 6500
    assert answers["after-all"][0] == -1
