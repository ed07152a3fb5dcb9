"""Read what an Apache Kafka (KRaft) log dir knows about its topics, for migration.

Kafka in KRaft mode keeps topic names, ids, partition counts and topic configs in the
metadata log ``__cluster_metadata-0`` (record batches like any partition, plus snapshots
``<end offset>-<epoch>.checkpoint``), and the cluster id in ``meta.properties``. The
partition dirs beside it hold the data in the very format pybroker writes. This module
reads only the records a migration needs, read-only, and never fails start-up over them:
an unreadable metadata log yields what was read before the damage.

Each metadata record value is ``frame version, api key, version`` (unsigned varints) and
the record's body in the flexible (tagged fields) encoding. Records used:
TopicRecord (2), PartitionRecord (3), ConfigRecord (4), RemoveTopicRecord (5) and
ProducerIdsRecord (15); all others, and control batches, are skipped.
"""

from __future__ import annotations

import logging
import re
import struct
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from pybroker.protocol.codec import FrameError, read_uvarint
from pybroker.protocol.errors import CorruptRecordError
from pybroker.protocol.records import decode_records, iter_batches

log = logging.getLogger(__name__)

METADATA_DIR = "__cluster_metadata-0"
META_PROPERTIES = "meta.properties"

_TOPIC_RECORD = 2
_PARTITION_RECORD = 3
_CONFIG_RECORD = 4
_REMOVE_TOPIC_RECORD = 5
_PRODUCER_IDS_RECORD = 15
_RESOURCE_TOPIC = 2
_SNAPSHOT = re.compile(r"^(\d{20})-(\d{10})\.checkpoint$")
_SEGMENT = re.compile(r"^(\d{20})\.log$")
_INT32 = struct.Struct(">i")
_INT64 = struct.Struct(">q")


@dataclass
class KraftTopic:
    name: str
    topic_id: uuid.UUID
    partitions: set[int] = field(default_factory=set)


@dataclass
class KraftMetadata:
    """Topics (by id), topic configs (by name), the next producer id, the cluster id."""

    cluster_id: str | None = None
    topics: dict[uuid.UUID, KraftTopic] = field(default_factory=dict)
    configs: dict[str, dict[str, str]] = field(default_factory=dict)
    next_producer_id: int = 0

    def topic_configs(self, name: str) -> dict[str, str]:
        return dict(self.configs.get(name, {}))


def read_meta_properties(log_dir: Path) -> dict[str, str]:
    """``meta.properties`` as a dict (empty when absent or unreadable)."""
    try:
        text = (log_dir / META_PROPERTIES).read_text()
    except (OSError, UnicodeDecodeError):
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")) and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def read_kraft_metadata(log_dirs: list[Path]) -> KraftMetadata | None:
    """The metadata of the first dir holding ``__cluster_metadata-0``; None if none does."""
    for d in log_dirs:
        meta_dir = d / METADATA_DIR
        if meta_dir.is_dir():
            md = KraftMetadata(cluster_id=read_meta_properties(d).get("cluster.id"))
            _read_metadata_log(meta_dir, md)
            return md
    return None


def _read_metadata_log(meta_dir: Path, md: KraftMetadata) -> None:
    """The newest snapshot, then the log's records from the snapshot's end offset on."""
    snapshots = sorted(
        (int(m.group(1)), p)
        for p in meta_dir.iterdir()
        if (m := _SNAPSHOT.match(p.name)) is not None
    )
    start = 0
    if snapshots:
        start, newest = snapshots[-1]
        _apply_file(newest, md, 0)
    segments = sorted(
        (int(m.group(1)), p) for p in meta_dir.iterdir() if (m := _SEGMENT.match(p.name))
    )
    for _, path in segments:
        _apply_file(path, md, start)


def _apply_file(path: Path, md: KraftMetadata, from_offset: int) -> None:
    try:
        data = path.read_bytes()
        for pos, header in iter_batches(data):
            if header.is_control or header.last_offset < from_offset:
                continue
            for record in decode_records(data, pos):
                if record.offset >= from_offset and record.value is not None:
                    _apply_record(record.value, md)
    except (OSError, CorruptRecordError, FrameError, IndexError, struct.error) as e:
        log.warning("Stopped reading Kafka metadata file %s: %s", path, e)


def _compact_string(buf: bytes, pos: int) -> tuple[str | None, int]:
    n, pos = read_uvarint(buf, pos)
    if n == 0:
        return None, pos
    end = pos + n - 1
    if end > len(buf):
        raise FrameError("truncated string")
    return buf[pos:end].decode(), end


def _uuid(buf: bytes, pos: int) -> tuple[uuid.UUID, int]:
    if pos + 16 > len(buf):
        raise FrameError("truncated uuid")
    return uuid.UUID(bytes=bytes(buf[pos : pos + 16])), pos + 16


def _apply_record(value: bytes, md: KraftMetadata) -> None:
    _frame, pos = read_uvarint(value, 0)
    api_key, pos = read_uvarint(value, pos)
    _version, pos = read_uvarint(value, pos)
    if api_key == _TOPIC_RECORD:
        name, pos = _compact_string(value, pos)
        topic_id, pos = _uuid(value, pos)
        if name:
            md.topics[topic_id] = KraftTopic(name, topic_id)
    elif api_key == _PARTITION_RECORD:
        (partition,) = _INT32.unpack_from(value, pos)
        topic_id, pos = _uuid(value, pos + 4)
        topic = md.topics.get(topic_id)
        if topic is not None:
            topic.partitions.add(partition)
    elif api_key == _CONFIG_RECORD:
        resource_type = value[pos]
        resource, pos = _compact_string(value, pos + 1)
        name, pos = _compact_string(value, pos)
        config_value, pos = _compact_string(value, pos)
        if resource_type == _RESOURCE_TOPIC and resource and name:
            configs = md.configs.setdefault(resource, {})
            if config_value is None:
                configs.pop(name, None)
            else:
                configs[name] = config_value
    elif api_key == _REMOVE_TOPIC_RECORD:
        topic_id, pos = _uuid(value, pos)
        removed = md.topics.pop(topic_id, None)
        if removed is not None:
            md.configs.pop(removed.name, None)
    elif api_key == _PRODUCER_IDS_RECORD:
        (next_id,) = _INT64.unpack_from(value, pos + 4 + 8)
        md.next_producer_id = max(md.next_producer_id, next_id)


@dataclass(frozen=True)
class AdoptedTopic:
    """A topic found on disk but unknown to pybroker's metadata: what to register it as."""

    name: str
    topic_id: uuid.UUID
    partitions: int
    configs: dict[str, str]


def plan_adoption(
    logs: list[tuple[str, int, uuid.UUID]],
    known_topics: set[str],
    md: KraftMetadata | None,
    zero: uuid.UUID,
) -> list[AdoptedTopic]:
    """Topics to register for partition dirs (``(topic, partition, topic id)``) that
    pybroker's metadata does not know, e.g. dirs copied from an Apache Kafka log dir.

    The topic id is the one in the dirs' ``partition.metadata`` (else Kafka's metadata
    log's, else a new one); the partition count covers every dir found and every
    partition Kafka's metadata lists; configs come from Kafka's ConfigRecords.
    """
    found: dict[str, tuple[set[int], set[uuid.UUID]]] = {}
    for topic, partition, topic_id in logs:
        if topic in known_topics:
            continue
        parts, ids = found.setdefault(topic, (set(), set()))
        parts.add(partition)
        if topic_id != zero:
            ids.add(topic_id)
    kraft_by_name = {t.name: t for t in md.topics.values()} if md else {}
    plan: list[AdoptedTopic] = []
    for topic, (parts, ids) in sorted(found.items()):
        kraft = kraft_by_name.get(topic)
        if len(ids) > 1:
            log.error(
                "Not adopting topic %s: its partition dirs carry different topic ids %s",
                topic,
                sorted(map(str, ids)),
            )
            continue
        topic_id = next(iter(ids)) if ids else (kraft.topic_id if kraft else uuid.uuid4())
        count = max(parts) + 1
        configs: dict[str, str] = {}
        if kraft is not None and kraft.topic_id == topic_id:
            count = max(count, max(kraft.partitions, default=-1) + 1)
            configs = md.topic_configs(topic) if md else {}
        plan.append(AdoptedTopic(topic, topic_id, count, configs))
    return plan
