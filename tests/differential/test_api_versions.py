"""ApiVersions against Apache Kafka 4.1: the ranges we advertise for every key we serve,
with pybroker.legacy.protocol.enable on (the default: Kafka 3.9's minimums for the versions
KIP-896 removed) and off (Kafka 4.1's ranges); and the newest versions' behaviour
(Produce v13 by topic id, ListTransactions v2's pattern) beside Kafka's."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Producer

from pybroker.protocol.codec import build
from pybroker.protocol.legacy import LEGACY_MIN
from pybroker.protocol.records import NewRecord, build_batch
from tests.support.broker import BrokerProcess
from tests.support.kafka_ref import KafkaReference
from tests.support.wire import KafkaWire, request_module

pytestmark = pytest.mark.timeout(300)

# Keys where we knowingly advertise a different range than Kafka 4.1, with the reason.
ACCEPTED: dict[int, str] = {
    8: "OffsetCommit v10 (topic ids, from Kafka 4.2's schema, which kio 0.6.5 carries): "
    "implemented per that schema (UNKNOWN_TOPIC_ID for an unknown id); we serve more.",
    9: "OffsetFetch v10 (topic ids, Kafka 4.2's schema via kio): implemented; we serve more.",
}


@pytest.fixture(scope="module")
def legacy_off(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    proc = BrokerProcess(
        tmp_path_factory.mktemp("api-versions-legacy-off") / "data",
        overrides={"pybroker.legacy.protocol.enable": "false", "num.partitions": "1"},
    ).start()
    try:
        yield proc
    finally:
        proc.stop()


def _ranges(port: int) -> dict[int, tuple[int, int]]:
    with KafkaWire(port=port) as w:
        return w.api_versions()


def _differences(
    mine: dict[int, tuple[int, int]], theirs: dict[int, tuple[int, int]]
) -> dict[int, tuple[tuple[int, int], tuple[int, int]]]:
    assert set(mine) <= set(theirs), f"keys Kafka 4.1 does not serve: {set(mine) - set(theirs)}"
    return {key: (mine[key], theirs[key]) for key in mine if mine[key] != theirs[key]}


def _accepted_max(key: int, mine: tuple[int, int], theirs: tuple[int, int]) -> bool:
    return key in ACCEPTED and mine[0] == theirs[0] and mine[1] > theirs[1]


def test_api_version_ranges_match_kafka_with_legacy_off(
    legacy_off: BrokerProcess, kafka_reference: KafkaReference
) -> None:
    """Option off: exactly Kafka 4.1's ranges (Produce listed from v0, KAFKA-18659)."""
    wrong = {
        key: pair
        for key, pair in _differences(
            _ranges(legacy_off.port), _ranges(kafka_reference.port)
        ).items()
        if not _accepted_max(key, *pair)
    }
    assert not wrong, f"(pybroker, kafka) ranges differ: {wrong}"


def test_api_version_ranges_with_legacy_on_are_kafka_39s_minimums(
    differential_brokers: tuple[BrokerProcess, KafkaReference],
) -> None:
    """Option on (default): the maxima are Kafka 4.1's; the minima of the keys KIP-896
    cut go back to Kafka 3.9's (LEGACY_MIN), and nothing else differs."""
    ours, kafka = differential_brokers
    mine, theirs = _ranges(ours.port), _ranges(kafka.port)
    wrong = {}
    for key, (m, t) in _differences(mine, theirs).items():
        lo = min(LEGACY_MIN.get(key, t[0]), t[0])
        if not (m == (lo, t[1]) or _accepted_max(key, m, (lo, t[1]))):
            wrong[key] = (m, t)
    assert not wrong, f"(pybroker, kafka) ranges differ: {wrong}"
    assert {k: mine[k][0] for k in LEGACY_MIN} == LEGACY_MIN


# -- the newest versions, beside Kafka ---------------------------------------------------


def _create_and_wait(port: int, topic: str) -> uuid.UUID:
    m = request_module(19, 7)
    meta = request_module(3, 12)
    with KafkaWire(port=port) as w:
        w.request(
            build(
                m.CreateTopicsRequest,
                topics=[dict(name=topic, num_partitions=1, replication_factor=1)],
                timeout=10_000,
            )
        )
        deadline = time.monotonic() + 30
        while True:
            r = w.request(
                build(
                    meta.MetadataRequest, topics=[dict(name=topic)], allow_auto_topic_creation=False
                )
            )
            t = r.topics[0]
            if not t.error_code and t.partitions and t.partitions[0].leader_id >= 0:
                return t.topic_id
            assert time.monotonic() < deadline, r
            time.sleep(0.2)


def _produce_v13(port: int, topic_id: uuid.UUID) -> list[tuple[int, int]]:
    m = request_module(0, 13)
    batch = build_batch([NewRecord(b"k", b"v", (), None)])
    req = build(
        m.ProduceRequest,
        transactional_id=None,
        acks=1,
        timeout=5000,
        topic_data=[dict(topic_id=topic_id, partition_data=[dict(index=0, records=batch)])],
    )
    with KafkaWire(port=port) as w:
        resp = w.request(req)
    out = []
    for t in resp.responses:
        assert t.topic_id == topic_id
        out += [(int(p.error_code), int(p.base_offset)) for p in t.partition_responses]
    return out


def test_produce_v13_by_topic_id_like_kafka(
    differential_brokers: tuple[BrokerProcess, KafkaReference],
) -> None:
    ours, kafka = differential_brokers
    answers = []
    for broker in (ours, kafka):
        topic_id = _create_and_wait(broker.port, "produce-v13")
        answers.append(
            (_produce_v13(broker.port, topic_id), _produce_v13(broker.port, uuid.uuid4()))
        )
    assert answers[0] == answers[1]
    assert answers[0] == ([(0, 0)], [(100, -1)])  # UNKNOWN_TOPIC_ID for an unknown id


def test_list_transactions_v2_pattern_like_kafka(
    differential_brokers: tuple[BrokerProcess, KafkaReference],
) -> None:
    patterns = [None, "", "lt2", "lt2-.*", "abc", ".*abc", "[", "LT2-ABC"]
    results = []
    for broker in differential_brokers:
        p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "lt2-abc"})
        p.init_transactions(30)
        p.begin_transaction()
        p.produce("list-txn-v2", b"x")
        p.flush(30)
        m = request_module(66, 2)
        seen = []
        with KafkaWire(port=broker.port) as w:
            for pattern in patterns:
                r = w.request(
                    build(
                        m.ListTransactionsRequest,
                        state_filters=[],
                        producer_id_filters=[],
                        duration_filter=-1,
                        transactional_id_pattern=pattern,
                    )
                )
                ids = sorted(t.transactional_id for t in r.transaction_states)
                seen.append((int(r.error_code), [i for i in ids if i.startswith("lt2")]))
        p.abort_transaction(30)
        results.append(seen)
    assert results[0] == results[1]
    assert results[0][3] == (0, ["lt2-abc"]) and results[0][2] == (0, [])
    assert results[0][6] == (128, [])  # INVALID_REGULAR_EXPRESSION
