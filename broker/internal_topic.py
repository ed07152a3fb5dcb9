"""Writing to and replaying the coordinators' internal topic partitions.

The group and transaction coordinators both append their records to, and at start-up
replay, their partitions of ``__consumer_offsets`` / ``__transaction_state``; these are the
one append path and the one loop that walks a log from its start to its end in chunks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

from pybroker.broker.clock import now_ms
from pybroker.broker.commit_wait import note_append
from pybroker.protocol.errors import ErrorCode, KafkaError
from pybroker.protocol.records import BatchHeader, NewRecord, build_batch, iter_batches
from pybroker.replication.replica_manager import ReplicaManager
from pybroker.storage.log import Log

Record = tuple[bytes, bytes | None]

log = logging.getLogger(__name__)


def read_batches(lg: Log, chunk_bytes: int) -> Iterator[tuple[bytes, int, BatchHeader, int]]:
    """(chunk, position, header, first wanted offset) of every batch from the log start.

    Records of a yielded batch below ``first wanted offset`` were already returned with
    the previous chunk (a chunk can start inside a batch after compaction gaps).
    """
    offset = lg.log_start_offset
    end = lg.log_end_offset
    chunk_bytes = max(chunk_bytes, 65536)
    while offset < end:
        info = lg.read(offset, chunk_bytes)
        data = b"".join(s.read() for s in info.slices)
        next_offset = offset
        for pos, header in iter_batches(data):
            next_offset = header.base_offset + header.last_offset_delta + 1
            if next_offset <= offset:
                continue
            yield data, pos, header, offset
        if next_offset <= offset:
            log.error("Cannot read %s-%d past offset %d", lg.topic, lg.partition, offset)
            return
        offset = next_offset


def append_records(
    rm: ReplicaManager, topic: str, partition: int, records: Sequence[Record]
) -> None:
    """Append (key, value) records as one batch with acks=all; KafkaError as a produce."""
    if not records:
        return
    ts = now_ms()
    batch = build_batch([NewRecord(k, v, timestamp=ts) for k, v in records])
    _, info = rm.append(topic, partition, bytearray(batch), -1)
    note_append(topic, partition, info.last_offset + 1)


def internal_replication_factor(wanted: int, live_brokers: int, cluster: bool, topic: str) -> int:
    """The replication factor an internal topic is created with.

    A single node caps it at the brokers there are (one), so the defaults of 3 work out
    of the box. A cluster follows Kafka: the topic is not created with fewer replicas
    than configured while brokers are missing (it would stay under-replicated forever);
    the client gets COORDINATOR_NOT_AVAILABLE and retries."""
    rf = wanted if cluster else min(wanted, live_brokers)
    if rf < 1 or rf > live_brokers:
        raise KafkaError(
            f"Number of alive brokers '{live_brokers}' does not meet the required replication "
            f"factor '{wanted}' for {topic}.",
            ErrorCode.coordinator_not_available,
        )
    return rf
