"""The transaction coordinator's ties to the broker: ``__transaction_state``, markers, image.

- ``LogTxnStore`` appends coordinator records as one uncompressed batch through the
  ReplicaManager (acks=all, as Kafka's TransactionStateManager does) and reads a partition
  back for loading.
- ``LocalMarkerWriter`` writes COMMIT/ABORT control batches to partitions this broker
  leads (the single-node form of Kafka's WriteTxnMarkers round trip) and tells the group
  coordinator when a marker lands in ``__consumer_offsets`` (transactional offsets).
- ``create_txn_topic`` makes the topic the way Kafka's auto-creation does, on the first
  FindCoordinator for a transactional id: ``transaction.state.log.num.partitions``,
  compacted, uncompressed, ``min.insync.replicas`` from ``transaction.state.log.min.isr``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from pybroker.broker.clock import now_ms
from pybroker.broker.groups.coordinator import OFFSETS_TOPIC
from pybroker.broker.internal_topic import append_records, read_batches
from pybroker.broker.txn.coordinator import TXN_STATE_TOPIC, Record, TransactionCoordinator
from pybroker.broker.txn.metadata import TopicPartition
from pybroker.protocol.errors import ErrorCode, KafkaError
from pybroker.protocol.records import (
    build_control_batch,
    decode_records,
)
from pybroker.replication.metadata import ClusterImage, TopicInfo

if TYPE_CHECKING:
    from pybroker.broker.server import Broker

log = logging.getLogger(__name__)


class LogTxnStore:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def append(self, partition: int, records: Sequence[Record]) -> None:
        append_records(self.broker.replica_manager, TXN_STATE_TOPIC, partition, records)

    def read(self, partition: int) -> Iterator[tuple[bytes | None, bytes | None]]:
        lg = self.broker.log_manager.get_log(TXN_STATE_TOPIC, partition)
        if lg is None:
            return
        chunk = self.broker.config.transaction_state_log_load_buffer_size
        for data, pos, header, offset in read_batches(lg, chunk):
            if header.is_control:
                continue
            for record in decode_records(data, pos):
                if record.offset >= offset:
                    yield record.key, record.value


class LocalMarkerWriter:
    """Transaction markers for partitions this broker leads (Kafka's WriteTxnMarkers)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def partition_exists(self, tp: TopicPartition) -> bool:
        return self.broker.image.partition(*tp) is not None

    def write_markers(
        self,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        coordinator_epoch: int,
        partitions: Sequence[TopicPartition],
    ) -> dict[TopicPartition, ErrorCode]:
        rm = self.broker.replica_manager
        out: dict[TopicPartition, ErrorCode] = {}
        offsets_partitions = []
        for topic, partition in partitions:
            batch = build_control_batch(
                commit,
                base_offset=0,
                producer_id=producer_id,
                producer_epoch=producer_epoch,
                coordinator_epoch=coordinator_epoch,
                timestamp=now_ms(),
            )
            try:
                rm.append(topic, partition, bytearray(batch), -1, client=False)
            except KafkaError as e:
                out[(topic, partition)] = e.code
                log.debug(
                    "%s marker for producer %d in %s-%d failed: %s",
                    "COMMIT" if commit else "ABORT",
                    producer_id,
                    topic,
                    partition,
                    e,
                )
                continue
            out[(topic, partition)] = ErrorCode.none
            if topic == OFFSETS_TOPIC:
                offsets_partitions.append(partition)
        if offsets_partitions:
            complete = getattr(self.broker.group_coordinator, "on_transaction_completed", None)
            if complete is not None:
                for partition in offsets_partitions:
                    complete(producer_id, partition, commit)
        return out


def txn_topic_configs(broker: Broker, replication_factor: int) -> dict[str, str]:
    """Kafka's TransactionStateManager.transactionTopicConfigs. ``min.insync.replicas``
    is capped at the replication factor: a single node would otherwise refuse every
    transactional write (Kafka refuses to create the topic instead)."""
    min_isr = min(broker.config.transaction_state_log_min_isr, replication_factor)
    return {
        "unclean.leader.election.enable": "false",
        "compression.type": "uncompressed",
        "cleanup.policy": "compact",
        "min.insync.replicas": str(max(min_isr, 1)),
        "segment.bytes": str(broker.config.transaction_state_log_segment_bytes),
    }


def create_txn_topic(broker: Broker) -> TopicInfo:
    """Create ``__transaction_state`` (Kafka's auto-creation of the internal topic);
    raises KafkaError. Replication is capped at the brokers there are."""
    assert broker.controller is not None
    image = broker.image
    existing = image.topics.get(TXN_STATE_TOPIC)
    if existing is not None:
        return existing
    config = broker.config
    rf = min(config.transaction_state_log_replication_factor, len(image.brokers))
    if rf < 1:
        raise KafkaError(
            "no brokers to host the transaction state topic", ErrorCode.coordinator_not_available
        )
    info = broker.controller.create_topic(
        TXN_STATE_TOPIC,
        config.transaction_state_log_num_partitions,
        rf,
        txn_topic_configs(broker, rf),
    )
    log.info(
        "Created %s with %d partitions and replication factor %d",
        TXN_STATE_TOPIC,
        len(info.partitions),
        rf,
    )
    return info


def apply_image(coordinator: TransactionCoordinator, image: ClusterImage, node_id: int) -> None:
    """Own the ``__transaction_state`` partitions this broker leads; the coordinator epoch
    of a partition is its leader epoch (a recreated topic is new)."""
    info = image.topics.get(TXN_STATE_TOPIC)
    if info is None:
        coordinator.set_owned({}, None)
        return
    led = {p.partition: p.leader_epoch for p in info.partitions if p.leader == node_id}
    coordinator.set_owned(led, info.topic_id, len(info.partitions))
