"""The coordinator's ties to the broker: ``__consumer_offsets`` logs, the loop, the image.

``LogGroupStore`` appends coordinator records as one uncompressed batch through the
ReplicaManager (acks=all, like Kafka's coordinator) and reads a partition back batch by
batch for loading. ``offsets_topic_configs`` and ``create_offsets_topic`` make the topic
the way Kafka's auto-creation does, on the first FindCoordinator.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from pybroker.broker.clock import now_ms
from pybroker.broker.commit_wait import note_append
from pybroker.broker.groups.coordinator import OFFSETS_TOPIC, GroupCoordinator, Record
from pybroker.broker.internal_topic import (
    append_records,
    internal_replication_factor,
    read_batches,
)
from pybroker.protocol.records import (
    CONTROL_ABORT,
    CONTROL_COMMIT,
    NewRecord,
    build_batch,
    decode_records,
)
from pybroker.replication.metadata import ClusterImage, TopicInfo

if TYPE_CHECKING:
    from pybroker.broker.server import Broker

log = logging.getLogger(__name__)


class LogGroupStore:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def append(self, partition: int, records: Sequence[Record]) -> None:
        append_records(self.broker.replica_manager, OFFSETS_TOPIC, partition, records)

    def append_transactional(
        self,
        partition: int,
        records: Sequence[Record],
        producer_id: int,
        producer_epoch: int,
        verified: bool,
    ) -> None:
        """TxnOffsetCommit: one transactional batch of the producer (coordinator origin:
        epochs are checked, sequences are not); ``verified`` lets it start the
        transaction in this partition (KIP-890)."""
        if not records:
            return
        ts = now_ms()
        batch = build_batch(
            [NewRecord(k, v, timestamp=ts) for k, v in records],
            producer_id=producer_id,
            producer_epoch=producer_epoch,
            base_sequence=0,
            transactional=True,
        )
        _, info = self.broker.replica_manager.append(
            OFFSETS_TOPIC,
            partition,
            bytearray(batch),
            -1,
            client=False,
            verified_txn=(producer_id, producer_epoch) if verified else None,
        )
        note_append(OFFSETS_TOPIC, partition, info.last_offset + 1)

    def read_entries(
        self, partition: int
    ) -> Iterator[tuple[bytes | None, bytes | None, int, bool | None]]:
        """Like ``read``, with transactions: (key, value, producer id or -1, None) per
        record, (None, None, producer id, committed) per transaction marker."""
        lg = self.broker.log_manager.get_log(OFFSETS_TOPIC, partition)
        if lg is None:
            return
        for data, pos, header, offset in read_batches(
            lg, self.broker.config.offsets_load_buffer_size
        ):
            if header.is_control:
                records = decode_records(data, pos)
                key = records[0].key if records else None
                if key is not None and len(key) >= 4:
                    kind = int.from_bytes(key[2:4], "big", signed=True)
                    if kind in (CONTROL_ABORT, CONTROL_COMMIT):
                        yield None, None, header.producer_id, kind == CONTROL_COMMIT
                continue
            pid = header.producer_id if header.is_transactional else -1
            for record in decode_records(data, pos):
                if record.offset >= offset:
                    yield record.key, record.value, pid, None

    def read(self, partition: int) -> Iterator[tuple[bytes | None, bytes | None]]:
        """(key, value) of every non-transactional record (GroupStore protocol)."""
        for key, value, pid, marker in self.read_entries(partition):
            if marker is None and pid == -1:
                yield key, value


def offsets_topic_configs(broker: Broker) -> dict[str, str]:
    return {
        "cleanup.policy": "compact",
        "compression.type": "producer",
        "segment.bytes": str(broker.config.offsets_topic_segment_bytes),
    }


async def create_offsets_topic(broker: Broker) -> TopicInfo:
    """Create ``__consumer_offsets`` (Kafka's auto-creation of the internal topic);
    raises KafkaError. Replication is capped at the brokers there are."""
    assert broker.controller is not None
    image = broker.image
    existing = image.topics.get(OFFSETS_TOPIC)
    if existing is not None:
        return existing
    rf = internal_replication_factor(
        broker.config.offsets_topic_replication_factor,
        len(image.brokers),
        broker.cluster is not None,
        OFFSETS_TOPIC,
    )
    info = await broker.controller.create_topic(
        OFFSETS_TOPIC,
        broker.config.offsets_topic_num_partitions,
        rf,
        offsets_topic_configs(broker),
    )
    log.info(
        "Created %s with %d partitions and replication factor %d",
        OFFSETS_TOPIC,
        len(info.partitions),
        rf,
    )
    return info


def apply_image(coordinator: GroupCoordinator, image: ClusterImage, node_id: int) -> None:
    """Own the offsets-topic partitions this broker leads (a recreated topic is new)."""
    info = image.topics.get(OFFSETS_TOPIC)
    if info is None:
        coordinator.set_owned(set(), None)
        return
    led = {p.partition for p in info.partitions if p.leader == node_id}
    coordinator.set_owned(led, info.topic_id, len(info.partitions))
