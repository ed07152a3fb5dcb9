"""Durable producer id blocks: single-node stand-in for Kafka's AllocateProducerIds.

Kafka hands producer ids to brokers in blocks of 1000 (``ProducerIdsBlock``): the
controller records the latest block durably before any id of it is used, so no id is
ever handed out twice, across restarts included. In ZooKeeper mode the record is the
znode ``/latest_producer_id_block``; we keep the same JSON in a file in the first log
dir, replaced with ``storage.fileio.write_atomic`` (temp file, fsync, rename, fsync dir)::

    {"version":1,"broker":0,"block_start":"0","block_end":"999"}

A broker restart allocates a fresh block: ids of the previous block that were never
handed out are skipped, as in Kafka.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pybroker.storage.fileio import write_atomic

FILE_NAME = "pybroker-producer-id-block.json"
BLOCK_SIZE = 1000  # Kafka's ProducerIdsBlock.PRODUCER_ID_BLOCK_SIZE
_LONG_MAX = (1 << 63) - 1


class ProducerIdStoreError(Exception):
    """The block record is unreadable or the id space is exhausted: never guess."""


@dataclass(frozen=True, slots=True)
class ProducerIdsBlock:
    assigned_broker_id: int
    first_producer_id: int
    size: int

    @property
    def last_producer_id(self) -> int:
        return self.first_producer_id + self.size - 1

    @property
    def next_block_first_id(self) -> int:
        return self.first_producer_id + self.size


class LocalProducerIdStore:
    """The latest allocated block, as one small JSON file."""

    def __init__(self, log_dir: Path) -> None:
        self.path = Path(log_dir) / FILE_NAME

    def latest(self) -> ProducerIdsBlock | None:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise ProducerIdStoreError(f"cannot read {self.path}: {e}") from e
        try:
            data = json.loads(raw)
            if data["version"] != 1:
                raise ValueError(f"unknown version {data['version']}")
            start, end = int(data["block_start"]), int(data["block_end"])
            if not 0 <= start <= end:
                raise ValueError(f"bad block [{start}, {end}]")
            return ProducerIdsBlock(int(data["broker"]), start, end - start + 1)
        except (ValueError, KeyError, TypeError) as e:
            raise ProducerIdStoreError(f"producer id block file {self.path} is corrupt: {e}") from e

    def skip_below(self, broker_id: int, next_id: int) -> None:
        """Never hand out ids below ``next_id`` (ids Apache Kafka already gave out in a
        migrated log dir): record them as one used block if the latest block is lower."""
        latest = self.latest()
        if next_id <= 0 or (latest is not None and latest.next_block_first_id >= next_id):
            return
        first = 0 if latest is None else latest.next_block_first_id
        self._write(ProducerIdsBlock(broker_id, first, next_id - first))

    def allocate(self, broker_id: int, size: int = BLOCK_SIZE) -> ProducerIdsBlock:
        """Durably claim the block after the latest one (blocking: call off the loop)."""
        latest = self.latest()
        first = 0 if latest is None else latest.last_producer_id + 1
        if first > _LONG_MAX - size:
            raise ProducerIdStoreError(
                "Exhausted all producerIds as the next block's end is too large"
            )
        block = ProducerIdsBlock(broker_id, first, size)
        self._write(block)
        return block

    def _write(self, block: ProducerIdsBlock) -> None:
        record = {
            "version": 1,
            "broker": block.assigned_broker_id,
            "block_start": str(block.first_producer_id),
            "block_end": str(block.last_producer_id),
        }
        try:
            write_atomic(self.path, json.dumps(record, separators=(",", ":")).encode())
        except OSError as e:
            raise ProducerIdStoreError(f"cannot write {self.path}: {e}") from e
