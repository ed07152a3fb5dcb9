"""Shared steps of the differential cases: versions, topics and batches on both brokers.

Each test collects its outcomes in a :class:`Cases` and ends with ``cases.check()``,
which fails on any difference not listed in ``accepted.ACCEPTED`` and on any listed case
that no longer differs (so the list stays honest).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Sequence
from typing import Any

from kio.index import UnknownEntity, load_request_schema
from kio.schema.errors import ErrorCode

from pybroker.protocol.records import NewRecord, build_batch
from tests.differential.accepted import accepted_reason
from tests.support.differential import (
    DifferentialPair,
    Outcome,
    record_comparison,
    request_for,
)
from tests.support.wire import KafkaWire

METADATA, CREATE_TOPICS = 3, 19
BASE_TS = 1_700_000_000_000  # fixed record timestamps: both logs hold identical bytes


class Cases:
    """The comparisons of one test, checked against the accepted differences at the end."""

    def __init__(self, pair: DifferentialPair) -> None:
        self.pair = pair
        self.outcomes: list[Outcome] = []

    def compare(self, case: str, request: Any, **kw: Any) -> Outcome:
        outcome = self.pair.compare(case, request, **kw)
        self.outcomes.append(outcome)
        return outcome

    def compare_each(self, case: str, make: Callable[[KafkaWire], Any], **kw: Any) -> Outcome:
        """Compare answers to requests built per broker (ids the brokers chose differ)."""
        ours_req, kafka_req = make(self.pair.ours), make(self.pair.kafka)
        ours, kafka = self.pair.ask("ours", ours_req), self.pair.ask("kafka", kafka_req)
        return self.add(record_comparison(case, ours_req, ours, kafka, **kw))

    def add(self, outcome: Outcome) -> Outcome:
        self.outcomes.append(outcome)
        return outcome

    def check(self) -> None:
        assert self.outcomes, "a differential test must compare something"
        unexpected = [
            f"{o.case} (key {o.api_key} v{o.version}): {o.differences[:6]}"
            for o in self.outcomes
            if not o.identical and accepted_reason(o.case) is None
        ]
        stale = [
            f"{o.case}: accepted as '{accepted_reason(o.case)}' but now identical"
            for o in self.outcomes
            if o.identical and accepted_reason(o.case) is not None
        ]
        assert not unexpected and not stale, "\n".join(unexpected + stale)


def warm_coordinator(conn: KafkaWire, key: str, key_type: int) -> None:
    """Wait until the coordinator for ``key`` is available (its topic may be new)."""
    request = request_for(10, 6, key_type=key_type, coordinator_keys=[key])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        (c,) = conn.request(request).coordinators
        if c.error_code == ErrorCode.none:
            return
        time.sleep(0.1)
    raise AssertionError(f"no coordinator for {key!r} (type {key_type}) within 30s")


def kraft_min_isr(plain: Any) -> Any:
    """Apply accepted.NORMALISED["config_source of min.insync.replicas"] to any config list."""
    if isinstance(plain, dict):
        if plain.get("name") == "min.insync.replicas" and plain.get("config_source") == 3:
            plain["config_source"] = 5
            if plain.get("synonyms"):
                plain["synonyms"] = [s for s in plain["synonyms"] if s.get("source") != 3]
        for value in plain.values():
            kraft_min_isr(value)
    elif isinstance(plain, list):
        for value in plain:
            kraft_min_isr(value)
    return plain


def versions(pair: DifferentialPair, api_key: int) -> list[int]:
    """Every version of ``api_key`` pybroker advertises that kio can build.

    (Produce v0-2 are advertised by Kafka 4 for old clients but not in kio's schemas.)
    """
    lo, hi = pair.ours.api_versions()[api_key]
    return [v for v in range(lo, hi + 1) if kio_has(api_key, v)]


def kio_has(api_key: int, version: int) -> bool:
    try:
        load_request_schema(api_key, version)
    except UnknownEntity:
        return False
    return True


def wait_leaders(conn: KafkaWire, topic: str, partitions: int, timeout: float = 15.0) -> None:
    """Poll Metadata until every partition of ``topic`` has a leader (creation is async)."""
    request = request_for(METADATA, 12, topics=[{"name": topic}], allow_auto_topic_creation=False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (t,) = conn.request(request).topics
        ready = [p for p in t.partitions if p.error_code == ErrorCode.none and p.leader_id >= 0]
        if (
            t.error_code == ErrorCode.none
            and len(ready) == partitions
            and _serving(conn, topic, partitions)
        ):
            return
        time.sleep(0.05)
    raise AssertionError(f"{topic}: no leaders after {timeout}s")


def _serving(conn: KafkaWire, topic: str, partitions: int) -> bool:
    """Whether the leader already serves every partition (Metadata can run ahead of it)."""
    request = request_for(
        2,
        9,
        replica_id=-1,
        isolation_level=0,
        topics=[
            {
                "name": topic,
                "partitions": [
                    {"partition_index": p, "timestamp": -1, "current_leader_epoch": -1}
                    for p in range(partitions)
                ],
            }
        ],
    )
    (t,) = conn.request(request).topics
    return all(p.error_code == ErrorCode.none for p in t.partitions)


def create_topic(
    pair: DifferentialPair,
    name: str,
    partitions: int = 1,
    configs: dict[str, str] | None = None,
) -> None:
    """Create ``name`` on both brokers (CreateTopics v7) and wait for its leaders."""
    request = request_for(
        CREATE_TOPICS,
        7,
        topics=[
            {
                "name": name,
                "num_partitions": partitions,
                "replication_factor": 1,
                "configs": [{"name": k, "value": v} for k, v in (configs or {}).items()],
            }
        ],
        timeout=30_000,
    )
    for conn in (pair.ours, pair.kafka):
        (t,) = conn.request(request).topics
        assert t.error_code == ErrorCode.none, (name, t)
        wait_leaders(conn, name, partitions)


def batch(
    values: Sequence[bytes],
    *,
    ts: int = BASE_TS,
    compression: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    transactional: bool = False,
) -> bytes:
    """One v2 batch of ``values`` with fixed timestamps, as a producer would send it."""
    return build_batch(
        [NewRecord(key=None, value=v, timestamp=ts + i) for i, v in enumerate(values)],
        compression=compression,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        transactional=transactional,
    )


def produce_request(
    version: int,
    topic: str,
    records: bytes | None,
    *,
    partition: int = 0,
    acks: int = -1,
    transactional_id: str | None = None,
    topic_id: Any = None,
) -> Any:
    return request_for(
        0,
        version,
        transactional_id=transactional_id,
        acks=acks,
        timeout=30_000,
        topic_data=[
            {
                "name": topic,
                "topic_id": topic_id,
                "partition_data": [{"index": partition, "records": records}],
            }
        ],
    )


def produce_both(pair: DifferentialPair, topic: str, records: bytes, partition: int = 0) -> None:
    """Append the same batch on both brokers (Produce v9, acks=-1), checking success."""
    for conn in (pair.ours, pair.kafka):
        deadline = time.monotonic() + 15
        while True:  # a just-created partition may not have taken leadership yet
            resp = conn.request(produce_request(9, topic, records, partition=partition))
            (p,) = resp.responses[0].partition_responses
            if p.error_code != ErrorCode.not_leader_or_follower or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert p.error_code == ErrorCode.none, (topic, p)


def topic_id(conn: KafkaWire, topic: str) -> Any:
    """The id this broker gave ``topic`` (Metadata v12)."""
    request = request_for(METADATA, 12, topics=[{"name": topic}], allow_auto_topic_creation=False)
    return conn.request(request).topics[0].topic_id


def init_producer(conn: KafkaWire, transactional_id: str | None = None) -> tuple[int, int]:
    """(producer id, epoch) from InitProducerId v5, retrying while coordinators load."""
    request = request_for(
        22,
        5,
        transactional_id=transactional_id,
        transaction_timeout=60_000,
        producer_id=-1,
        producer_epoch=-1,
    )
    retriable = {
        ErrorCode.coordinator_load_in_progress,
        ErrorCode.coordinator_not_available,
        ErrorCode.not_coordinator,
        ErrorCode.concurrent_transactions,
    }
    deadline = time.monotonic() + 30
    while True:
        resp = conn.request(request)
        if resp.error_code not in retriable or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert resp.error_code == ErrorCode.none, resp
    return int(resp.producer_id), int(resp.producer_epoch)


def fetch(
    version: int,
    conn: KafkaWire,
    topic: str,
    parts: dict[int, int],
    *,
    max_bytes: int = 1 << 20,
    partition_max_bytes: int = 1 << 20,
    isolation_level: int = 0,
    session_id: int = 0,
    session_epoch: int = -1,
    current_leader_epoch: int = -1,
    forgotten: list[dict[str, Any]] | None = None,
) -> Any:
    tid = topic_id(conn, topic) if version >= 13 else None
    return request_for(
        1,  # Fetch
        version,
        replica_id=-1,
        max_wait=0,
        min_bytes=0,
        max_bytes=max_bytes,
        isolation_level=isolation_level,
        session_id=session_id,
        session_epoch=session_epoch,
        topics=[
            {
                "topic": topic,
                "topic_id": tid,
                "partitions": [
                    {
                        "partition": p,
                        "fetch_offset": off,
                        "current_leader_epoch": current_leader_epoch,
                        "log_start_offset": -1,
                        "last_fetched_epoch": -1,
                        "partition_max_bytes": partition_max_bytes,
                    }
                    for p, off in parts.items()
                ],
            }
        ],
        forgotten_topics_data=forgotten or [],
        rack_id="",
    )


_BATCH_HEADER = struct.Struct(">qiibIhiqqqhii")  # v2 record batch header, 61 bytes


def _batches(data: bytes) -> list[dict[str, Any]]:
    """The v2 batches of a records field, header fields by name; producer id and CRC
    (which covers it) left out: brokers hand out different producer ids."""
    out: list[dict[str, Any]] = []
    pos = 0
    while pos + _BATCH_HEADER.size <= len(data):
        fields = _BATCH_HEADER.unpack_from(data, pos)
        (
            base,
            length,
            epoch,
            magic,
            _crc,
            attrs,
            delta,
            first_ts,
            max_ts,
            _pid,
            pepoch,
            seq,
            count,
        ) = fields
        end = pos + 12 + length
        out.append(
            dict(
                base_offset=base,
                length=length,
                partition_leader_epoch=epoch,
                magic=magic,
                attributes=attrs,
                last_offset_delta=delta,
                base_timestamp=first_ts,
                max_timestamp=max_ts,
                producer_epoch=pepoch,
                base_sequence=seq,
                records_count=count,
                records=data[pos + _BATCH_HEADER.size : end].hex(),
            )
        )
        if attrs & 0x20:  # control batch: stamped with the broker's clock when written
            out[-1].update(base_timestamp="<broker clock>", max_timestamp="<broker clock>")
        pos = end
    if pos < len(data):
        out.append({"partial_batch_bytes": len(data) - pos})
    return out


def records_without_producer_ids(plain: Any) -> Any:
    """Replace every hex ``records`` field by its decoded batches (see ``_batches``)."""
    if isinstance(plain, dict):
        for key, value in plain.items():
            if key == "records" and isinstance(value, str):
                plain[key] = _batches(bytes.fromhex(value))
            else:
                records_without_producer_ids(value)
    elif isinstance(plain, list):
        for value in plain:
            records_without_producer_ids(value)
    return plain
