"""KIP-714 pieces without a broker: the OTLP reader and Kafka-compatible subscription ids
(expected values printed by Java 17 with Kafka 4.1's classes, via jshell)."""

from __future__ import annotations

import uuid

import pytest

from pybroker.broker.client_metrics import (
    ClientInstance,
    ClientMetricsManager,
    Subscription,
    SubscriptionError,
    java_hash_set_order,
    java_string_hash,
    parse_match,
    subscription_id,
    validate_subscription,
)
from pybroker.protocol import compression
from pybroker.protocol.errors import ErrorCode
from pybroker.protocol.otlp import encode_gauges, parse_metrics_data


def test_java_string_hash() -> None:
    assert java_string_hash("hello") == 99162322
    assert java_string_hash("Aa") == java_string_hash("BB") == 2112


def test_hash_set_order_matches_java() -> None:
    four = ["org.apache.kafka.producer.", "org.apache.kafka.consumer.", "a.b", "zz.top"]
    assert java_hash_set_order(four) == four
    assert java_hash_set_order(["Aa", "BB", "org.apache.kafka."]) == [
        "Aa",
        "BB",
        "org.apache.kafka.",
    ]
    forty = java_hash_set_order([f"m{i}.x" for i in range(40)])  # the table resizes twice
    assert forty[:8] == ["m5.x", "m11.x", "m33.x", "m6.x", "m10.x", "m32.x", "m3.x", "m31.x"]
    assert forty[-4:] == ["m26.x", "m25.x", "m24.x", "m23.x"]


def test_subscription_id_is_crc32c_xor_uuid_hash() -> None:
    # Crc32C.compute("[a.b, zz.top]300000") = 2069189000; Uuid(0, 1).hashCode() = 1.
    assert subscription_id(["a.b", "zz.top"], 300000, uuid.UUID(int=1)) == 2069189000 ^ 1
    big = subscription_id([], 1000, uuid.UUID(int=(1 << 127) | 5))
    assert -(2**31) <= big < 2**31


def test_subscription_validation() -> None:
    validate_subscription("s", {"metrics": "a.,b.", "interval.ms": "100", "match": "client_id=x.*"})
    for name, config in [
        ("", {}),
        ("s", {"interval.ms": "99"}),
        ("s", {"interval.ms": "x"}),
        ("s", {"match": "client_id="}),
        ("s", {"match": "nope=1"}),
        ("s", {"color": "red"}),
    ]:
        with pytest.raises(SubscriptionError):
            validate_subscription(name, config)
    assert parse_match(["client_software_name = librdkafka"])["client_software_name"].pattern == (
        "librdkafka"
    )


def test_otlp_round_trip() -> None:
    payload = encode_gauges(
        {"service.name": "app"}, [("a.b", 2.5, {"topic": "t"}), ("c", -1.0, {})], kind="sum"
    )
    got = parse_metrics_data(payload)
    assert got.resource == {"service.name": "app"}
    assert [(p.name, p.kind, p.value, p.attributes) for p in got.points] == [
        ("a.b", "sum", 2.5, {"topic": "t"}),
        ("c", "sum", -1.0, {}),
    ]


def _manager() -> ClientMetricsManager:
    m = ClientMetricsManager(None, 1024 * 1024, poll=False)
    m.set_subscriptions(
        {"all": Subscription.from_config("all", {"metrics": "*", "interval.ms": "100"})}
    )
    return m


ATTRS = {"client_id": "c", "client_software_name": "x", "client_software_version": "1"}


def test_decompression_bomb_is_telemetry_too_large() -> None:
    """Kafka 4.1 bounds only the compressed size; a few KB of gzip that inflate past
    telemetry.max.bytes are refused as TELEMETRY_TOO_LARGE (as Kafka 4.2 does), not held."""
    m = _manager()
    inst, iid, outcome = m.get_subscriptions(None, ATTRS, "conn-1")
    assert outcome.error == ErrorCode.none and inst.metrics == ["*"]
    bomb = compression.compress(compression.GZIP, b"\x00" * (2 * 1024 * 1024))
    assert len(bomb) < 10_000
    got = m.push(iid, inst.subscription_id, False, compression.GZIP, bomb, ATTRS, "conn-1")
    assert got.error == ErrorCode.telemetry_too_large
    assert m.stats.export_errors == 1 and not m.clients()[0].metrics


def test_latest_push_is_kept_and_disconnect_forgets_the_instance() -> None:
    m = _manager()
    inst, iid, _ = m.get_subscriptions(uuid.UUID(int=99), ATTRS, "conn-1")
    payload = encode_gauges({}, [("org.apache.kafka.producer.x", 7.0, {})])
    assert m.push(iid, inst.subscription_id, False, 0, payload, ATTRS, "conn-1").error == 0
    assert [(p.name, p.value) for p in m.clients()[0].metrics] == [
        ("org.apache.kafka.producer.x", 7.0)
    ]
    m.on_disconnect("conn-1")
    assert iid not in m.instances
    assert m.clients()[0].instance_id == iid  # its metrics stay until they expire


def test_kept_points_are_bounded_over_all_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    import pybroker.broker.client_metrics as cm

    monkeypatch.setattr(cm, "MAX_TOTAL_POINTS", 25)
    m = _manager()
    payload = encode_gauges({}, [(f"m{i}", float(i), {}) for i in range(10)])
    ids = []
    for n in range(4):
        inst, iid, _ = m.get_subscriptions(uuid.UUID(int=1000 + n), ATTRS, f"conn-{n}")
        assert m.push(iid, inst.subscription_id, False, 0, payload, ATTRS, f"conn-{n}").error == 0
        ids.append(iid)
    assert list(m.telemetry) == ids[2:] and m.points_kept == 20  # the oldest two went


def test_a_new_instance_is_not_throttled_soon_after_boot() -> None:
    """The first Get and the first push of an instance are accepted even when the
    monotonic clock is younger than the push interval (a freshly booted host)."""
    inst = ClientInstance(uuid.uuid4(), {}, 1, 0, ["*"], 300_000, "c")
    assert inst.may_get(60_000)
    assert inst.may_push(60_500)  # right after the Get
    assert not inst.may_push(61_000)  # then once per interval
    fresh = ClientInstance(uuid.uuid4(), {}, 1, 0, ["*"], 300_000, "c")
    assert fresh.may_push(1_000)  # re-created on another connection: accepted, as in Kafka
