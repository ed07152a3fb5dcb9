"""Shared helpers for the storage tests (no tests here)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from pybroker.config.topic_config import TopicConfig
from pybroker.protocol.records import (
    NONE,
    BatchHeader,
    NewRecord,
    build_batch,
    iter_batches,
    set_base_offset,
    set_partition_leader_epoch,
)
from pybroker.storage.handles import Handles
from pybroker.storage.log import Log, ReadInfo


def topic_config(**overrides: object) -> TopicConfig:
    """TopicConfig from python-style names: segment_bytes=100 -> segment.bytes."""
    return TopicConfig(overrides={k.replace("_", "."): str(v) for k, v in overrides.items()})


def batch(
    n: int = 1,
    *,
    ts: int = 1_000,
    value_size: int = 40,
    tag: int = 0,
    ts_step: int = 1,
    compression: int = NONE,
    keys: bool = True,
) -> bytearray:
    """A producer batch (base offset 0) of ``n`` records with timestamps ts, ts+step, ..."""
    records = [
        NewRecord(
            key=f"k{tag}-{i}".encode() if keys else None,
            value=bytes([(tag + i) % 251]) * value_size,
            headers=(("h", b"x"),),
            timestamp=ts + i * ts_step,
        )
        for i in range(n)
    ]
    return bytearray(build_batch(records, compression=compression))


def slices_bytes(info: ReadInfo) -> bytes:
    """The bytes a Fetch would sendfile, read back with pread from the slices."""
    out = []
    for s in info.slices:
        data = os.pread(s.file.fileno(), s.length, s.position)
        assert len(data) == s.length
        out.append(data)
    joined = b"".join(out)
    assert len(joined) == info.total_bytes
    return joined


def headers_of(data: bytes) -> list[BatchHeader]:
    found = list(iter_batches(data))
    assert sum(h.size for _, h in found) == len(data), "slices must hold whole batches"
    return [h for _, h in found]


def stamped(original: bytes | bytearray, base_offset: int, epoch: int) -> bytes:
    """``original`` with the two fields the broker rewrites set as expected."""
    out = bytearray(original)
    set_base_offset(out, 0, base_offset)
    set_partition_leader_epoch(out, 0, epoch)
    return bytes(out)


class Clock:
    """A settable millisecond clock for Log(now_ms=...)."""

    def __init__(self, now: int = 1_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def open_log(
    path: Path,
    config: TopicConfig | None = None,
    *,
    clock: Clock | None = None,
    handles: Handles | None = None,
    **kwargs: object,
) -> Log:
    return Log.open(
        path,
        config or topic_config(),
        now_ms=clock or Clock(),
        handles=handles or Handles(),
        **kwargs,  # type: ignore[arg-type]
    )


def fill(
    log: Log,
    count: int,
    *,
    records: int = 1,
    ts: int = 1_000,
    epoch: int = 0,
    value_size: int = 40,
    ts_step: int = 1,
) -> list[bytes]:
    """Append ``count`` batches; returns each as stored (offsets stamped)."""
    stored = []
    for i in range(count):
        payload = batch(
            records, ts=ts + i * records * ts_step, tag=i, value_size=value_size, ts_step=ts_step
        )
        log.append_as_leader(payload, epoch, now_ms=ts + i * records * ts_step)
        stored.append(bytes(payload))
    return stored


def all_bytes(log: Log) -> bytes:
    return slices_bytes(log.read(log.log_start_offset, 1 << 40))


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


__all__: Sequence[str] = [
    "Clock",
    "all_bytes",
    "batch",
    "fd_count",
    "fill",
    "headers_of",
    "open_log",
    "slices_bytes",
    "stamped",
    "topic_config",
]
