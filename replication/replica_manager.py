"""ReplicaManager: the partitions this broker hosts, and the append/read entry points.

Handlers never touch logs directly for writes: they call append() here, which checks
leadership and ISR rules (min.insync.replicas with acks=all), appends, advances the high
watermark, and tells listeners (the fetch purgatory) that the partition grew.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pybroker.config.topic_config import TopicConfig
from pybroker.protocol.errors import ErrorCode, KafkaError, UnknownTopicOrPartitionError
from pybroker.replication.metadata import ClusterImage
from pybroker.storage.log import AppendInfo, Log
from pybroker.storage.log_manager import LogManager

log = logging.getLogger(__name__)

AppendListener = Callable[[str, int], None]


class ReplicaManager:
    def __init__(
        self,
        node_id: int,
        log_manager: LogManager,
        topic_config_for: Callable[[str], TopicConfig],
    ) -> None:
        self.node_id = node_id
        self.log_manager = log_manager
        self.topic_config_for = topic_config_for
        self.image: ClusterImage | None = None
        self._listeners: list[AppendListener] = []

    def add_append_listener(self, listener: AppendListener) -> None:
        self._listeners.append(listener)

    # ----------------------------------------------------------------- metadata
    def apply_image(self, image: ClusterImage) -> None:
        """Create logs for hosted partitions, drop logs of deleted topics, push configs."""
        old = self.image
        self.image = image
        for info in image.topics.values():
            config = self.topic_config_for(info.name)
            previous = old.topics.get(info.name) if old else None
            for p in info.partitions:
                if self.node_id not in p.replicas:
                    continue
                existing = self.log_manager.get_log(info.name, p.partition)
                if existing is not None and existing.topic_id != info.topic_id:
                    log.warning(
                        "Log %s-%d belongs to an older incarnation of the topic; deleting it",
                        info.name,
                        p.partition,
                    )
                    self.log_manager.delete_log(info.name, p.partition)
                    existing = None
                lg = existing or self.log_manager.get_or_create_log(
                    info.name, p.partition, info.topic_id, config
                )
                if p.leader == self.node_id and p.isr == (self.node_id,):
                    # A leader that is its whole ISR has committed everything it holds
                    # (Kafka raises the HW to the LEO on becoming such a leader).
                    lg.high_watermark = lg.log_end_offset
            if previous is not None and previous.configs != info.configs:
                self.log_manager.update_config(info.name, config)
        for lg in list(self.log_manager.all_logs()):
            info = image.topics.get(lg.topic)
            if info is None or lg.partition >= len(info.partitions):
                log.info("Deleting log %s-%d: its topic is gone", lg.topic, lg.partition)
                self.log_manager.delete_log(lg.topic, lg.partition)

    # ----------------------------------------------------------------- access
    def leader_log(self, topic: str, partition: int) -> Log:
        """The local log of a partition this broker leads, or the Kafka error why not."""
        image = self.image
        state = image.partition(topic, partition) if image else None
        if state is None:
            raise UnknownTopicOrPartitionError("This server does not host this topic-partition.")
        if state.leader != self.node_id:
            raise KafkaError("This broker is not the leader", ErrorCode.not_leader_or_follower)
        lg = self.log_manager.get_log(topic, partition)
        if lg is None:
            raise UnknownTopicOrPartitionError("This server does not host this topic-partition.")
        return lg

    def append(
        self,
        topic: str,
        partition: int,
        payload: bytearray,
        acks: int,
        *,
        client: bool = True,
        verified_txn: tuple[int, int] | None = None,
    ) -> tuple[Log, object]:
        """Append a validated-by-the-log payload as leader; returns (log, AppendInfo).

        ``client=False``: the broker's own append (coordinator records, transaction
        markers); ``verified_txn``: see Log.append_as_leader."""
        lg = self.leader_log(topic, partition)
        if acks == -1:
            state = self.image.partition(topic, partition) if self.image else None
            isr = len(state.isr) if state else 0
            if isr < lg.config.min_insync_replicas:
                raise KafkaError(
                    f"The size of the current ISR {isr} is insufficient to satisfy the min.isr "
                    f"requirement of {lg.config.min_insync_replicas}",
                    ErrorCode.not_enough_replicas,
                )
        state = self.image.partition(topic, partition) if self.image else None
        info: AppendInfo = lg.append_as_leader(
            payload,
            state.leader_epoch if state else 0,
            client=client,
            verified_txn=verified_txn,
        )
        # Single replica: the ISR is this broker, so everything appended is committed.
        lg.high_watermark = lg.log_end_offset
        for listener in self._listeners:
            listener(topic, partition)
        return lg, info
