"""Kafka's BrokerTopicStats and the ReplicaManager's ISR change counters, as plain integers.

Updated on the hot path (one dict lookup and two additions per appended or fetched
partition: never per record); read at scrape time by the metrics collectors.
"""

from __future__ import annotations


class TopicCounters:
    __slots__ = ("messages_in", "bytes_in", "bytes_out", "replication_bytes_out")

    def __init__(self) -> None:
        self.messages_in = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.replication_bytes_out = 0


class BrokerTopicStats:
    """MessagesInPerSec, BytesInPerSec, BytesOutPerSec (and ReplicationBytesOutPerSec) per
    topic, as Kafka counts them: bytes in = the record batches' size as the producer sent
    them, messages in = the offsets the append took (a v2 batch's lastOffsetDelta + 1),
    bytes out = the record bytes of consumer fetch responses (followers' go to replication)."""

    def __init__(self) -> None:
        self.topics: dict[str, TopicCounters] = {}
        self.isr_shrinks = 0
        self.isr_expands = 0

    def of(self, topic: str) -> TopicCounters:
        counters = self.topics.get(topic)
        if counters is None:
            counters = self.topics[topic] = TopicCounters()
        return counters

    def record_append(self, topic: str, messages: int, size: int) -> None:
        counters = self.of(topic)
        counters.messages_in += messages
        counters.bytes_in += size
