"""Checkpoint files in Kafka's exact text formats, and the leader epoch cache."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import pytest

from pybroker.storage.checkpoints import (
    read_epoch_checkpoint,
    read_offset_checkpoint,
    read_partition_metadata,
    topic_id_from_str,
    topic_id_to_str,
    write_epoch_checkpoint,
    write_offset_checkpoint,
    write_partition_metadata,
)
from pybroker.storage.epoch_cache import LeaderEpochCache
from pybroker.storage.errors import CorruptCheckpointError


def test_offset_checkpoint_text_and_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "recovery-point-offset-checkpoint"
    offsets = {("orders", 0): 42, ("my-topic.v2", 11): 0}
    write_offset_checkpoint(path, offsets)
    assert path.read_text() == "0\n2\norders 0 42\nmy-topic.v2 11 0\n"
    assert read_offset_checkpoint(path) == offsets
    assert not (tmp_path / "recovery-point-offset-checkpoint.tmp").exists()
    write_offset_checkpoint(path, {})
    assert path.read_text() == "0\n0\n"
    assert read_offset_checkpoint(path) == {}
    assert read_offset_checkpoint(tmp_path / "absent") == {}


@pytest.mark.parametrize(
    "content",
    [
        "",
        "0\n",
        "0\n2\norders 0 42\n",  # truncated: fewer entries than the count
        "0\n1\norders 0 42\nextra 1 1\n",
        "1\n0\n",  # unknown version
        "0\nx\n",
        "0\n1\norders 0\n",
        "0\n1\norders zero 42\n",
        "0\n1\norders 0 4x2\n",
        "0\n-1\n",
        "\x00\xff\xfe garbage",
    ],
)
def test_garbage_offset_checkpoint_raises(tmp_path: Path, content: str) -> None:
    path = tmp_path / "cp"
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(CorruptCheckpointError):
        read_offset_checkpoint(path)


def test_epoch_checkpoint_text(tmp_path: Path) -> None:
    path = tmp_path / "leader-epoch-checkpoint"
    write_epoch_checkpoint(path, [(0, 0), (3, 120)])
    assert path.read_text() == "0\n2\n0 0\n3 120\n"
    assert read_epoch_checkpoint(path) == [(0, 0), (3, 120)]
    path.write_text("0\n2\n0 0\n")
    with pytest.raises(CorruptCheckpointError):
        read_epoch_checkpoint(path)


def test_partition_metadata_matches_kafka(tmp_path: Path) -> None:
    tid = uuid.UUID("d1e2a3b4-0000-4c5d-8e9f-0123456789ab")
    path = tmp_path / "partition.metadata"
    write_partition_metadata(path, tid)
    text = topic_id_to_str(tid)
    # Kafka's Uuid.toString: URL-safe base64 of the 16 bytes without padding (22 chars)
    assert text == base64.urlsafe_b64encode(tid.bytes).decode().rstrip("=")
    assert len(text) == 22
    assert path.read_text() == f"version: 0\ntopic_id: {text}"
    assert read_partition_metadata(path) == tid
    assert topic_id_from_str(text) == tid
    path.write_text("version: 1\ntopic_id: x")
    with pytest.raises(CorruptCheckpointError):
        read_partition_metadata(path)


def test_epoch_cache_assign_and_lookups(tmp_path: Path) -> None:
    path = tmp_path / "leader-epoch-checkpoint"
    cache = LeaderEpochCache(path)
    assert cache.end_offset_for(0, 10) == (-1, -1)
    cache.assign(1, 0)
    cache.assign(1, 5)  # same epoch, later offset: no change
    cache.assign(3, 20)
    cache.assign(5, 50)
    assert cache.entries() == [(1, 0), (3, 20), (5, 50)]
    assert path.read_text() == "0\n3\n1 0\n3 20\n5 50\n"
    # OffsetForLeaderEpoch semantics (Kafka's LeaderEpochFileCache.endOffsetFor)
    assert cache.end_offset_for(5, 77) == (5, 77)
    assert cache.end_offset_for(3, 77) == (3, 50)
    assert cache.end_offset_for(4, 77) == (3, 50)
    assert cache.end_offset_for(2, 77) == (1, 20)
    assert cache.end_offset_for(0, 77) == (0, 0)
    assert cache.end_offset_for(9, 77) == (-1, -1)
    assert cache.end_offset_for(-1, 77) == (-1, -1)
    assert cache.epoch_for_offset(19) == 1 and cache.epoch_for_offset(20) == 3
    cache.truncate_from_end(50)
    assert cache.entries() == [(1, 0), (3, 20)]
    cache.truncate_from_start(25)
    assert cache.entries() == [(3, 25)]
    assert LeaderEpochCache(path).entries() == [(3, 25)]
    # a new entry that contradicts later ones replaces them
    cache.assign(4, 30)
    cache.assign(6, 40)
    cache.assign(5, 35)
    assert cache.entries() == [(3, 25), (4, 30), (5, 35)]


def test_epoch_cache_ignores_garbage_file(tmp_path: Path) -> None:
    path = tmp_path / "leader-epoch-checkpoint"
    path.write_text("0\n5\n1 0\n")
    cache = LeaderEpochCache(path)
    assert cache.entries() == []
    cache.assign(2, 7)
    assert read_epoch_checkpoint(path) == [(2, 7)]
