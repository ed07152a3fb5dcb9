"""Producer id blocks: durable, sequential, never reused across restarts."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from pybroker.broker.txn.producer_ids import ProducerIdManager
from pybroker.protocol.errors import ErrorCode, KafkaError
from pybroker.replication.producer_id_store import (
    BLOCK_SIZE,
    FILE_NAME,
    LocalProducerIdStore,
    ProducerIdsBlock,
    ProducerIdStoreError,
)


def test_blocks_follow_each_other_and_survive_a_restart(tmp_path: Path) -> None:
    store = LocalProducerIdStore(tmp_path)
    assert store.latest() is None
    assert store.allocate(1) == ProducerIdsBlock(1, 0, BLOCK_SIZE)
    assert store.allocate(1) == ProducerIdsBlock(1, 1000, BLOCK_SIZE)
    # Kafka's /latest_producer_id_block znode JSON.
    assert json.loads((tmp_path / FILE_NAME).read_text()) == {
        "version": 1,
        "broker": 1,
        "block_start": "1000",
        "block_end": "1999",
    }
    assert LocalProducerIdStore(tmp_path).allocate(2) == ProducerIdsBlock(2, 2000, BLOCK_SIZE)
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b'{"version": 2}', b'{"version":1,"broker":0,"block_start":"9","block_end":"3"}'],
)
def test_a_corrupt_record_is_an_error_not_a_reset(tmp_path: Path, content: bytes) -> None:
    (tmp_path / FILE_NAME).write_bytes(content)
    with pytest.raises(ProducerIdStoreError):
        LocalProducerIdStore(tmp_path).allocate(0)


def test_exhausted_id_space(tmp_path: Path) -> None:
    end = (1 << 63) - 1 - 500
    (tmp_path / FILE_NAME).write_text(
        json.dumps({"version": 1, "broker": 0, "block_start": "0", "block_end": str(end)})
    )
    with pytest.raises(ProducerIdStoreError, match="Exhausted"):
        LocalProducerIdStore(tmp_path).allocate(0)


def test_manager_hands_out_unique_ids_across_blocks_and_restarts(tmp_path: Path) -> None:
    async def run() -> tuple[list[int], list[int]]:
        first = ProducerIdManager(LocalProducerIdStore(tmp_path), 0, block_size=10)
        a = await asyncio.gather(*(first.generate() for _ in range(25)))
        second = ProducerIdManager(LocalProducerIdStore(tmp_path), 0, block_size=10)
        b = [await second.generate() for _ in range(3)]
        return a, b

    a, b = asyncio.run(run())
    assert sorted(a) == list(range(25))
    assert b == [30, 31, 32]  # the rest of the last block is skipped, never reused


def test_manager_reports_store_failures(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_bytes(b"garbage")
    manager = ProducerIdManager(LocalProducerIdStore(tmp_path), 0)
    with pytest.raises(KafkaError) as info:
        asyncio.run(manager.generate())
    assert info.value.code == ErrorCode.unknown_server_error
