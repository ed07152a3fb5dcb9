"""DescribeClientQuotas (48) and AlterClientQuotas (49) vs Kafka 4.1.

Every validation rule of the alteration (entity types, empty names, keys per entity,
values, duplicates, validate_only, removal) and the describe filters (exact, default,
any, strict) on both versions. The brokers are shared with the other differential tests,
so the entities here have names no other test's client uses, defaults only get values
that can never throttle, and everything is removed again at the end.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.differential.helpers import Cases, kraft_min_isr
from tests.support.broker import BrokerProcess
from tests.support.differential import DifferentialPair, request_for
from tests.support.kafka_ref import KafkaReference

DESCRIBE, ALTER = 48, 49
# Kafka keeps entities, their parts and their values in hash maps: orders are unspecified.
UNORDERED = ("entries", "entity", "values")
P = "dquota-"


@pytest.fixture(scope="module")
def pair(
    differential_brokers: tuple[BrokerProcess, KafkaReference],
) -> Iterator[DifferentialPair]:
    ours, kafka = differential_brokers
    with DifferentialPair(ours.port, kafka.port) as p:
        yield p


def ent(**parts: str | None) -> list[dict[str, Any]]:
    return [{"entity_type": k.replace("_", "-"), "entity_name": v} for k, v in parts.items()]


def op(key: str, value: float = 0.0, remove: bool = False) -> dict[str, Any]:
    return {"key": key, "value": value, "remove": remove}


def alter(v: int, *entries: tuple[list[dict], list[dict]], validate_only: bool = False) -> Any:
    return request_for(
        ALTER,
        v,
        entries=[{"entity": e, "ops": ops} for e, ops in entries],
        validate_only=validate_only,
    )


def describe(v: int, *components: tuple[str, int, str | None], strict: bool = False) -> Any:
    return request_for(
        DESCRIBE,
        v,
        components=[{"entity_type": t, "match_type": m, "match": n} for t, m, n in components],
        strict=strict,
    )


SETUP = [
    (ent(user=f"{P}alice"), [op("producer_byte_rate", 1048576), op("request_percentage", 250.5)]),
    (ent(client_id=f"{P}app"), [op("consumer_byte_rate", 2097152)]),
    (ent(user=f"{P}alice", client_id=f"{P}app"), [op("producer_byte_rate", 4096)]),
    (ent(user=f"{P}alice", client_id=None), [op("controller_mutation_rate", 5.5)]),
    (ent(user=None), [op("request_percentage", 1e9)]),
    (ent(client_id=None), [op("consumer_byte_rate", 1e15)]),
]


def test_client_quota_alter_and_describe(pair: DifferentialPair) -> None:
    cases = Cases(pair)
    try:
        for v in (0, 1):
            _cases(cases, v)
    finally:
        pair.ask(
            "ours", alter(1, *[(e, [op(o["key"], remove=True) for o in ops]) for e, ops in SETUP])
        )
        pair.ask(
            "kafka", alter(1, *[(e, [op(o["key"], remove=True) for o in ops]) for e, ops in SETUP])
        )
    cases.check()


def _settle() -> None:
    """Kafka's broker answers Describe from its metadata image, which follows the
    controller's commit of an alteration a moment later."""
    time.sleep(0.5)


def _cases(cases: Cases, v: int) -> None:
    kw = {"unordered": UNORDERED}
    cases.compare(f"quotas-describe-none-v{v}", describe(v, ("user", 0, f"{P}alice")), **kw)
    cases.compare(f"quotas-alter-validate-only-v{v}", alter(v, *SETUP, validate_only=True), **kw)
    _settle()
    cases.compare(
        f"quotas-describe-after-validate-only-v{v}", describe(v, ("user", 0, f"{P}alice")), **kw
    )
    cases.compare(f"quotas-alter-setup-v{v}", alter(v, *SETUP), **kw)
    _settle()
    cases.compare(
        f"quotas-alter-invalid-v{v}",
        alter(
            v,
            (ent(user=f"{P}k1"), [op("no_such_quota", 1)]),
            (ent(user=f"{P}k2"), [op("producer_byte_rate", 0)]),
            (ent(user=f"{P}k3"), [op("producer_byte_rate", -5)]),
            (ent(user=f"{P}k4"), [op("producer_byte_rate", 10.5)]),
            (ent(user=f"{P}k5"), [op("connection_creation_rate", 10)]),
            (ent(user=f"{P}k6"), [op("producer_byte_rate", 1e30)]),
            (ent(client_id=""), [op("producer_byte_rate", 100)]),
            (ent(group=f"{P}g"), [op("producer_byte_rate", 100)]),
            ([], [op("producer_byte_rate", 100)]),
            (ent(user=f"{P}k7"), [op("producer_byte_rate", 100), op("producer_byte_rate", 200)]),
            (ent(user=f"{P}k8", ip="127.0.0.1"), [op("producer_byte_rate", 100)]),
        ),
        **kw,
    )
    cases.compare(
        f"quotas-alter-ip-v{v}",
        alter(
            v,
            (ent(ip="127.0.0.9"), [op("connection_creation_rate", 10.5)]),
            (ent(ip="127.0.0.10"), [op("producer_byte_rate", 10)]),
            (ent(ip="not a host name"), [op("connection_creation_rate", 10)]),
        ),
        **kw,
    )
    for name, comps, strict in [
        ("user-exact", [("user", 0, f"{P}alice")], False),
        ("user-exact-strict", [("user", 0, f"{P}alice")], True),
        ("user-default", [("user", 1, None)], False),
        ("user-default-strict", [("user", 1, None)], True),
        ("client-exact", [("client-id", 0, f"{P}app")], False),
        ("client-default-strict", [("client-id", 1, None)], True),
        ("user-and-client", [("user", 0, f"{P}alice"), ("client-id", 0, f"{P}app")], True),
        ("user-and-default-client", [("user", 0, f"{P}alice"), ("client-id", 1, None)], False),
        ("user-and-any-client", [("user", 0, f"{P}alice"), ("client-id", 2, None)], False),
        ("missing-user", [("user", 0, f"{P}nobody")], False),
        ("empty-type", [("", 0, "x")], False),
        ("unknown-type", [("group", 0, "x")], False),
        ("type-twice", [("user", 0, "a"), ("user", 1, None)], False),
        ("exact-null", [("user", 0, None)], False),
        ("default-with-name", [("user", 1, "x")], False),
        ("any-with-name", [("user", 2, "x")], False),
        ("bad-match-type", [("user", 7, None)], False),
        ("ip-with-user", [("ip", 2, None), ("user", 2, None)], False),
    ]:
        cases.compare(f"quotas-describe-{name}-v{v}", describe(v, *comps, strict=strict), **kw)
    cases.compare(
        f"quotas-alter-remove-v{v}",
        alter(
            v,
            (ent(user=f"{P}alice"), [op("request_percentage", remove=True)]),
            (ent(user=f"{P}nobody"), [op("producer_byte_rate", remove=True)]),
            (ent(user=f"{P}alice", client_id=f"{P}app"), [op("producer_byte_rate", remove=True)]),
            (ent(ip="127.0.0.9"), [op("connection_creation_rate", remove=True)]),
        ),
        **kw,
    )
    _settle()
    cases.compare(
        f"quotas-describe-after-remove-v{v}",
        describe(v, ("user", 0, f"{P}alice"), ("client-id", 2, None)),
        **kw,
    )
    cases.compare(
        f"quotas-describe-user-after-remove-v{v}",
        describe(v, ("user", 0, f"{P}alice"), strict=True),
        **kw,
    )


def test_controller_mutation_rate(
    differential_brokers: tuple[BrokerProcess, KafkaReference], pair: DifferentialPair
) -> None:
    """KIP-599 on a client id of its own: a 1 partition/s quota with an 11-partition
    burst. Creating 20 partitions drives the balance negative; then strict versions
    (CreateTopics v6+, CreatePartitions v3+, DeleteTopics v5+) refuse with
    THROTTLING_QUOTA_EXCEEDED and older ones go ahead (throttle times are volatile)."""
    ours, kafka = differential_brokers
    client = f"{P}mutator"
    quota = (ent(client_id=client), [op("controller_mutation_rate", 1)])
    pair.both(alter(1, quota))
    _settle()
    cases = Cases(pair)
    outcomes = []

    def compare(case: str, request: Any) -> None:
        # A throttled channel is muted (KIP-219): each request goes on a new connection.
        with DifferentialPair(ours.port, kafka.port, client_id=client) as m:
            outcomes.append(m.compare(case, request, transform=kraft_min_isr))

    def create(v: int, name: str, partitions: int) -> Any:
        topic = {"name": name, "num_partitions": partitions, "replication_factor": 1}
        return request_for(19, v, topics=[topic], timeout=30_000, validate_only=False)

    def delete(v: int, name: str) -> Any:
        if v >= 6:
            return request_for(20, v, topics=[{"name": name}], timeout=30_000)
        return request_for(20, v, topic_names=[name], timeout=30_000)

    try:
        compare("quotas-mutation-create-burst-v7", create(7, f"{P}m1", 20))
        compare("quotas-mutation-create-refused-v7", create(7, f"{P}m2", 1))
        compare("quotas-mutation-create-refused-v6", create(6, f"{P}m2", 1))
        compare(
            "quotas-mutation-partitions-refused-v3",
            request_for(
                37,
                3,
                topics=[{"name": f"{P}m1", "count": 21, "assignments": None}],
                timeout=30_000,
                validate_only=False,
            ),
        )
        compare("quotas-mutation-delete-refused-v6", delete(6, f"{P}m1"))
        compare("quotas-mutation-create-permissive-v5", create(5, f"{P}m3", 1))
        compare("quotas-mutation-delete-permissive-v4", delete(4, f"{P}m3"))
    finally:
        pair.both(alter(1, (ent(client_id=client), [op("controller_mutation_rate", remove=True)])))
        _settle()
        for name in (f"{P}m1", f"{P}m2", f"{P}m3"):
            pair.both(delete(6, name))
    cases.outcomes.extend(outcomes)
    cases.check()
