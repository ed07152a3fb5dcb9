"""Metadata, ApiVersions, DescribeCluster, FindCoordinator and unknown APIs vs Kafka 4.1."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.differential.helpers import (
    Cases,
    create_topic,
    versions,
    wait_leaders,
    warm_coordinator,
)
from tests.support.broker import BrokerProcess
from tests.support.differential import (
    DifferentialPair,
    record_behaviour,
    record_comparison,
    request_for,
)
from tests.support.kafka_ref import KafkaReference
from tests.support.wire import (
    ConnectionClosed,
    KafkaWire,
    decode_api_versions_v0,
    encode_header,
    frame,
)

METADATA, API_VERSIONS, DESCRIBE_CLUSTER, FIND_COORDINATOR = 3, 18, 60, 10
PREFIX = "dcl-"


@pytest.fixture(scope="module")
def pair(
    differential_brokers: tuple[BrokerProcess, KafkaReference],
) -> Iterator[DifferentialPair]:
    ours, kafka = differential_brokers
    with DifferentialPair(ours.port, kafka.port) as p:
        yield p


def only_prefixed(plain: Any) -> Any:
    """Keep this module's topics: others' topics come and go on the shared brokers."""
    plain["topics"] = [t for t in plain["topics"] if (t["name"] or "").startswith(PREFIX)]
    plain["topics"].sort(key=lambda t: t["name"])
    return plain


def metadata(version: int, topics: list[dict[str, Any]] | None, **kw: Any) -> Any:
    if version == 0 and topics is None:
        topics = []  # v0: an empty list means all topics
    return request_for(METADATA, version, topics=topics, **kw)


def test_metadata_every_version(pair: DifferentialPair) -> None:
    cases = Cases(pair)
    create_topic(pair, f"{PREFIX}two", partitions=2)
    create_topic(pair, f"{PREFIX}one")
    for v in versions(pair, METADATA):
        no_auto = {"allow_auto_topic_creation": False}
        cases.compare(f"metadata-all-v{v}", metadata(v, None, **no_auto), transform=only_prefixed)
        cases.compare(
            f"metadata-named-v{v}",
            metadata(v, [{"name": f"{PREFIX}two"}, {"name": f"{PREFIX}one"}], **no_auto),
            unordered={"topics"},
        )
        cases.compare(
            f"metadata-duplicate-names-v{v}",
            metadata(v, [{"name": f"{PREFIX}one"}, {"name": f"{PREFIX}one"}], **no_auto),
        )
        if v >= 4:
            cases.compare(
                f"metadata-unknown-no-auto-v{v}",
                metadata(v, [{"name": f"{PREFIX}absent-{v}"}], **no_auto),
            )
        if v >= 8:
            cases.compare(
                f"metadata-authorized-ops-v{v}",
                metadata(
                    v,
                    [{"name": f"{PREFIX}one"}],
                    allow_auto_topic_creation=False,
                    include_topic_authorized_operations=True,
                    include_cluster_authorized_operations=True,
                ),
            )
        if v >= 10:
            cases.compare(
                f"metadata-by-unknown-id-v{v}",
                metadata(v, [{"name": None, "topic_id": uuid.UUID(int=42)}], **no_auto),
            )
        if v >= 12:
            # Look a topic up by its id: each broker gets its own id for the same topic.
            got = []
            for conn in (pair.ours, pair.kafka):
                md = conn.request(metadata(v, [{"name": f"{PREFIX}one"}], **no_auto))
                topic_id = md.topics[0].topic_id
                got.append(
                    conn.request(metadata(v, [{"name": None, "topic_id": topic_id}], **no_auto))
                )
            cases.add(pair_record(f"metadata-by-id-v{v}", metadata(v, None), got[0], got[1]))
    cases.check()


def pair_record(case: str, request: Any, ours: Any, kafka: Any) -> Any:
    """Record answers this test obtained itself (per-broker requests, raw frames)."""
    return record_comparison(case, request, ours, kafka)


def test_metadata_auto_creation(pair: DifferentialPair) -> None:
    cases = Cases(pair)
    for v in versions(pair, METADATA):
        name = f"{PREFIX}auto-v{v}"
        cases.compare(
            f"metadata-auto-create-v{v}",
            metadata(v, [{"name": name}], allow_auto_topic_creation=True),
        )
        # The topic exists afterwards on both; asked again it is described the same.
        for conn in (pair.ours, pair.kafka):
            wait_leaders(conn, name, 1)
        cases.compare(
            f"metadata-after-auto-create-v{v}",
            metadata(v, [{"name": name}], allow_auto_topic_creation=False),
        )
        cases.compare(
            f"metadata-auto-create-invalid-name-v{v}",
            metadata(v, [{"name": "bad name!"}], allow_auto_topic_creation=True),
        )
    cases.check()


def api_versions_request(version: int) -> Any:
    return request_for(
        API_VERSIONS,
        version,
        client_software_name="differential",
        client_software_version="1.0",
    )


def without_ranges(plain: Any) -> Any:
    """Drop the advertised ranges: their equality is test_api_versions.py's assertion."""
    plain["api_keys"] = []
    return plain


def test_api_versions(pair: DifferentialPair) -> None:
    cases = Cases(pair)
    for v in versions(pair, API_VERSIONS):
        cases.compare(f"api-versions-v{v}", api_versions_request(v), transform=without_ranges)
        if v >= 3:
            # KIP-511: a software name outside [a-zA-Z0-9.-] is INVALID_REQUEST, no keys.
            cases.compare(
                f"api-versions-bad-software-name-v{v}",
                request_for(
                    API_VERSIONS,
                    v,
                    client_software_name="bad name!",
                    client_software_version="1.0",
                ),
            )
    # Versions the broker does not know: a v0-format answer, UNSUPPORTED_VERSION (KIP-511).
    for bad in (5, 127):
        answers = []
        for port in (pair.ours.sock.getpeername()[1], pair.kafka.sock.getpeername()[1]):
            with KafkaWire(port=port) as conn:
                body = encode_header(API_VERSIONS, bad, 7, flexible=True, client_id="d")
                conn.send_raw(frame(body + b"\x00"))
                answers.append(decode_api_versions_v0(conn.recv_frame()).body)
        cases.add(
            pair_record(f"api-versions-unsupported-v{bad}", api_versions_request(0), *answers)
        )
    cases.check()


def test_describe_cluster(pair: DifferentialPair) -> None:
    cases = Cases(pair)
    for v in versions(pair, DESCRIBE_CLUSTER):
        for ops in (False, True):
            cases.compare(
                f"describe-cluster-ops-{ops}-v{v}",
                request_for(
                    DESCRIBE_CLUSTER,
                    v,
                    include_cluster_authorized_operations=ops,
                    endpoint_type=1,
                    include_fenced_brokers=ops,
                ),
            )
        if v >= 1:
            # Endpoint type 2 (controllers) is for the controller listener only.
            cases.compare(
                f"describe-cluster-controllers-v{v}",
                request_for(DESCRIBE_CLUSTER, v, endpoint_type=2),
            )
    cases.check()


def find_coordinator(version: int, key: str, key_type: int) -> Any:
    if version >= 4:
        return request_for(FIND_COORDINATOR, version, key_type=key_type, coordinator_keys=[key])
    return request_for(FIND_COORDINATOR, version, key=key, key_type=key_type)


def test_find_coordinator(pair: DifferentialPair) -> None:
    cases = Cases(pair)
    for conn in (pair.ours, pair.kafka):
        warm_coordinator(conn, f"{PREFIX}group", 0)
        warm_coordinator(conn, f"{PREFIX}txn", 1)
    for v in versions(pair, FIND_COORDINATOR):
        cases.compare(f"find-coordinator-group-v{v}", find_coordinator(v, f"{PREFIX}group", 0))
        if v >= 1:
            cases.compare(f"find-coordinator-txn-v{v}", find_coordinator(v, f"{PREFIX}txn", 1))
            cases.compare(f"find-coordinator-bad-type-v{v}", find_coordinator(v, "k", 5))
        cases.compare(f"find-coordinator-empty-group-v{v}", find_coordinator(v, "", 0))
        if v >= 1:
            cases.compare(f"find-coordinator-empty-txn-v{v}", find_coordinator(v, "", 1))
        if v >= 4:
            cases.compare(
                f"find-coordinator-batch-v{v}",
                request_for(
                    FIND_COORDINATOR,
                    v,
                    key_type=0,
                    coordinator_keys=[f"{PREFIX}group", f"{PREFIX}group-b", ""],
                ),
                unordered={"coordinators"},
            )
        if v >= 6:
            cases.compare(
                f"find-coordinator-share-v{v}",
                find_coordinator(v, f"{PREFIX}share:{uuid.UUID(int=1)}:0", 2),
            )
    cases.check()


def closed_or_answer(port: int, payload: bytes) -> str:
    """What a broker does with one raw frame: 'closed', or 'answered <n> bytes'."""
    with KafkaWire(port=port, timeout=10) as conn:
        conn.send_raw(frame(payload))
        try:
            got = conn.read_until_closed(timeout=5)
        except TimeoutError:
            return "left open"
        except ConnectionClosed:
            return "closed"
        return f"closed after {len(got)} bytes"


def test_unknown_api_keys_and_versions(pair: DifferentialPair) -> None:
    cases = Cases(pair)
    ports = (pair.ours.sock.getpeername()[1], pair.kafka.sock.getpeername()[1])
    probes = {
        "unknown-api-key-1000": (1000, 0),
        "unknown-api-key-negative": (-5, 0),
        "unsupported-metadata-v99": (METADATA, 99),
        "unsupported-describe-cluster-v9": (DESCRIBE_CLUSTER, 9),
        "unsupported-find-coordinator-v7": (FIND_COORDINATOR, 7),
    }
    for case, (key, version) in probes.items():
        payload = encode_header(key, version, 3, flexible=False, client_id="d") + b"\x00" * 8
        ours, kafka = (closed_or_answer(port, payload) for port in ports)
        cases.add(record_behaviour(case, key, version, ours, kafka))
    cases.check()
