"""Kafka's small text files: offset checkpoints, leader-epoch checkpoint, partition.metadata.

Formats are byte-for-byte Kafka's so a log dir stays inspectable with Kafka's tools:
offset checkpoints are ``0\\n<count>\\n<topic> <partition> <offset>\\n...``, the leader
epoch checkpoint ``0\\n<count>\\n<epoch> <start offset>\\n...`` and partition.metadata
``version: 0\\ntopic_id: <base64url uuid>``. Every write is atomic (``fileio.write_atomic``:
a temp file, fsync, rename over the old file, fsync of the directory). Parsers are strict and
raise CorruptCheckpointError; callers log it and treat the file as absent.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

from pybroker.storage.errors import CorruptCheckpointError
from pybroker.storage.fileio import write_atomic

RECOVERY_POINT_CHECKPOINT = "recovery-point-offset-checkpoint"
LOG_START_OFFSET_CHECKPOINT = "log-start-offset-checkpoint"
REPLICATION_OFFSET_CHECKPOINT = "replication-offset-checkpoint"
LEADER_EPOCH_CHECKPOINT = "leader-epoch-checkpoint"
PARTITION_METADATA = "partition.metadata"
CLEAN_SHUTDOWN_MARKER = ".kafka_cleanshutdown"

TopicPartition = tuple[str, int]


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorruptCheckpointError(f"{path}: not UTF-8 text") from e
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _int(path: Path, raw: str, what: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise CorruptCheckpointError(f"{path}: malformed {what} {raw!r}") from None


def _parse_header(path: Path, lines: list[str]) -> int:
    if len(lines) < 2:
        raise CorruptCheckpointError(f"{path}: truncated (missing version or count line)")
    version = _int(path, lines[0].strip(), "version")
    if version != 0:
        raise CorruptCheckpointError(f"{path}: unsupported version {version}")
    count = _int(path, lines[1].strip(), "entry count")
    if count < 0 or len(lines) - 2 != count:
        raise CorruptCheckpointError(f"{path}: expected {count} entries, found {len(lines) - 2}")
    return count


def read_offset_checkpoint(path: Path) -> dict[TopicPartition, int]:
    """Parse an offset checkpoint; a missing file is empty, a garbled one raises."""
    if not path.exists():
        return {}
    lines = _read_lines(path)
    _parse_header(path, lines)
    result: dict[TopicPartition, int] = {}
    for line in lines[2:]:
        parts = line.split(" ")
        if len(parts) != 3 or not parts[0]:
            raise CorruptCheckpointError(f"{path}: malformed entry {line!r}")
        partition = _int(path, parts[1], "partition")
        offset = _int(path, parts[2], "offset")
        if partition < 0:
            raise CorruptCheckpointError(f"{path}: malformed entry {line!r}")
        result[(parts[0], partition)] = offset
    return result


def write_offset_checkpoint(path: Path, offsets: Mapping[TopicPartition, int]) -> None:
    lines = [f"{t} {p} {o}\n" for (t, p), o in offsets.items()]
    write_atomic(path, f"0\n{len(lines)}\n{''.join(lines)}".encode())


def read_epoch_checkpoint(path: Path) -> list[tuple[int, int]]:
    """``[(epoch, start_offset), ...]`` from a leader-epoch-checkpoint file."""
    if not path.exists():
        return []
    lines = _read_lines(path)
    _parse_header(path, lines)
    entries: list[tuple[int, int]] = []
    for line in lines[2:]:
        parts = line.split(" ")
        if len(parts) != 2:
            raise CorruptCheckpointError(f"{path}: malformed entry {line!r}")
        entries.append((_int(path, parts[0], "epoch"), _int(path, parts[1], "offset")))
    return entries


def write_epoch_checkpoint(
    path: Path, entries: Iterable[tuple[int, int]], *, sync: bool = True
) -> None:
    lines = [f"{e} {o}\n" for e, o in entries]
    write_atomic(path, f"0\n{len(lines)}\n{''.join(lines)}".encode(), sync=sync)


def topic_id_to_str(topic_id: uuid.UUID) -> str:
    """Kafka's Uuid.toString(): URL-safe base64 of the 16 bytes, no padding."""
    return base64.urlsafe_b64encode(topic_id.bytes).rstrip(b"=").decode("ascii")


def topic_id_from_str(raw: str) -> uuid.UUID:
    try:
        data = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (ValueError, TypeError) as e:
        raise CorruptCheckpointError(f"malformed topic id {raw!r}") from e
    if len(data) != 16:
        raise CorruptCheckpointError(f"malformed topic id {raw!r}")
    return uuid.UUID(bytes=data)


def read_partition_metadata(path: Path) -> uuid.UUID | None:
    """The topic id recorded in partition.metadata, None if the file is absent."""
    if not path.exists():
        return None
    fields: dict[str, str] = {}
    for line in _read_lines(path):
        key, sep, value = line.partition(":")
        if not sep:
            raise CorruptCheckpointError(f"{path}: malformed line {line!r}")
        fields[key.strip()] = value.strip()
    if fields.get("version") != "0" or "topic_id" not in fields:
        raise CorruptCheckpointError(f"{path}: expected version 0 and a topic_id")
    return topic_id_from_str(fields["topic_id"])


def write_partition_metadata(path: Path, topic_id: uuid.UUID) -> None:
    write_atomic(path, f"version: 0\ntopic_id: {topic_id_to_str(topic_id)}".encode())
