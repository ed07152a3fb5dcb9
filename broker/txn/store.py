"""The transaction coordinator's ties to the broker: ``__transaction_state``, markers, image.

- ``LogTxnStore`` appends coordinator records as one uncompressed batch through the
  ReplicaManager (acks=all, as Kafka's TransactionStateManager does), hands back the wait
  for the commit when the high watermark does not cover the append yet, and reads a
  partition back for loading.
- ``LocalMarkerWriter`` (``broker.txn.markers.TxnMarkerChannel``) writes COMMIT/ABORT
  markers at each partition's leader: locally, or with WriteTxnMarkers to the broker that
  leads it (Kafka's TransactionMarkerChannelManager).
- ``create_txn_topic`` makes the topic the way Kafka's auto-creation does, on the first
  FindCoordinator for a transactional id: ``transaction.state.log.num.partitions``,
  compacted, uncompressed, ``min.insync.replicas`` from ``transaction.state.log.min.isr``.
- ``apply_image`` hands the coordinator the ``__transaction_state`` partitions this broker
  leads, as the ReplicaManager has just made them: a partition is loaded only once its
  local replica is the leader (its log is the partition's truth from then on), and dropped
  as soon as it is not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from pybroker.broker.clock import now_ms
from pybroker.broker.internal_topic import (
    internal_replication_factor,
    read_batches,
)
from pybroker.broker.txn.coordinator import TXN_STATE_TOPIC, Record, TransactionCoordinator
from pybroker.broker.txn.markers import TxnMarkerChannel
from pybroker.protocol.errors import ErrorCode
from pybroker.protocol.records import NewRecord, build_batch, decode_records
from pybroker.replication.metadata import ClusterImage, TopicInfo

if TYPE_CHECKING:
    from pybroker.broker.server import Broker

log = logging.getLogger(__name__)

# The marker writer the broker wires in (the name predates remote leaders).
LocalMarkerWriter = TxnMarkerChannel


class LogTxnStore:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._waits: set[asyncio.Task[ErrorCode]] = set()

    def append(self, partition: int, records: Sequence[Record]) -> asyncio.Future[ErrorCode] | None:
        """Append with acks=all (KafkaError as a produce). None once committed (a single
        node, or an ISR of one), else a future of the commit (Kafka's delayed produce with
        ``request.timeout.ms``)."""
        if not records:
            return None
        rm = self.broker.replica_manager
        ts = now_ms()
        batch = build_batch([NewRecord(k, v, timestamp=ts) for k, v in records])
        lg, info = rm.append(TXN_STATE_TOPIC, partition, bytearray(batch), -1, client=False)
        end = info.last_offset + 1
        if lg.high_watermark >= end:
            return None
        timeout = self.broker.config.request_timeout_ms / 1000
        task = asyncio.get_running_loop().create_task(self._wait(partition, end, timeout))
        self._waits.add(task)
        task.add_done_callback(self._waits.discard)
        return task

    async def _wait(self, partition: int, end: int, timeout: float) -> ErrorCode:
        codes = await self.broker.replica_manager.wait_for_commit(
            [(TXN_STATE_TOPIC, partition, end)], timeout
        )
        return codes.get((TXN_STATE_TOPIC, partition), ErrorCode.not_leader_or_follower)

    def led_partitions(self) -> dict[int, int]:
        """{partition: leader epoch} of the ``__transaction_state`` partitions whose local
        replica is the leader."""
        rm = self.broker.replica_manager
        return {
            part.index: part.leader_epoch
            for part in rm.led_partitions()
            if part.topic == TXN_STATE_TOPIC
        }

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


async def create_txn_topic(broker: Broker) -> TopicInfo:
    """Create ``__transaction_state`` (Kafka's auto-creation of the internal topic);
    raises KafkaError. Replication is capped at the brokers there are."""
    assert broker.controller is not None
    image = broker.image
    existing = image.topics.get(TXN_STATE_TOPIC)
    if existing is not None:
        return existing
    config = broker.config
    rf = internal_replication_factor(
        config.transaction_state_log_replication_factor,
        len(image.brokers),
        broker.cluster is not None,
        TXN_STATE_TOPIC,
    )
    info = await broker.controller.create_topic(
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
    of a partition is its leader epoch (a recreated topic is new).

    Called after the ReplicaManager applied ``image``: leadership is taken from the local
    replicas (a state the ReplicaManager refused, e.g. a stale leader epoch, does not
    count), so a partition is loaded only from a log that is the leader's, and a broker
    that is no longer the leader stops answering for its ids (NOT_COORDINATOR)."""
    info = image.topics.get(TXN_STATE_TOPIC)
    if info is None:
        coordinator.set_owned({}, None)
        return
    store = coordinator.store
    if isinstance(store, LogTxnStore):
        led = {p: e for p, e in store.led_partitions().items() if p < len(info.partitions)}
    else:
        led = {p.partition: p.leader_epoch for p in info.partitions if p.leader == node_id}
    coordinator.set_owned(led, info.topic_id, len(info.partitions))
