"""LogDirMover (KIP-113) and take_offline (KIP-112) against a real ReplicaManager.

Real logs in two temp dirs, a single-replica image built by hand: appends interleave with
the background copy, retention moves the log start meanwhile, and after the swap the
Partition, the LogManager and the files agree; a failed dir's partitions answer
KAFKA_STORAGE_ERROR and their produce waiters are failed with it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pybroker.config.topic_config import TopicConfig
from pybroker.protocol.errors import ErrorCode, KafkaError
from pybroker.replication.log_dir_mover import LogDirMover
from pybroker.replication.metadata import BrokerInfo, ClusterImage, PartitionState, TopicInfo
from pybroker.replication.replica_manager import ReplicaManager
from pybroker.storage.log_manager import LogManager
from tests.unit.test_storage_support import all_bytes, batch, slices_bytes

TOPIC_ID = uuid.uuid4()


def image(partitions: int = 2) -> ClusterImage:
    brokers = {1: BrokerInfo(1, "127.0.0.1", 9001)}
    parts = tuple(PartitionState(p, 1, 0, (1,), (1,)) for p in range(partitions))
    return ClusterImage("c", 1, brokers, {"t": TopicInfo("t", TOPIC_ID, parts, {})})


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[ReplicaManager, LogManager, list[Path]]]:
    config = TopicConfig(overrides={"segment.bytes": "20000"})
    dirs = [tmp_path / "a", tmp_path / "b"]
    lm = LogManager(dirs, lambda t: config)
    lm.load()
    rm = ReplicaManager(1, lm, lambda t: config)
    rm.apply_image(image())
    yield rm, lm, dirs
    lm.shutdown()


async def test_move_while_appending_keeps_every_batch(setup) -> None:
    rm, lm, dirs = setup
    for _ in range(400):
        rm.append("t", 0, batch(5, value_size=100), 1)
    source = lm.get_log("t", 0)
    assert source is not None
    target = next(d for d in dirs if d != source.dir.parent)
    notified: list[tuple[str, int]] = []
    mover = LogDirMover(rm, lm, lambda t, p: notified.append((t, p)), retire_delay_s=0.05)
    mover.alter("t", 0, str(target))
    assert mover.moving("t", 0) == str(target)
    mover.alter("t", 0, str(target))  # asking again while it moves: nothing new
    appended = 0
    while mover.moving("t", 0) is not None:
        # Interleaves with the copy; bounded, so that a slow copier catches up (on a busy
        # machine unbounded appends outran it and the move never finished).
        if appended < 300:
            rm.append("t", 0, batch(5, value_size=100), 1)
            appended += 1
        await asyncio.sleep(0 if appended < 300 else 0.001)
    new = lm.get_log("t", 0)
    assert new is not None and new is not source
    assert rm.partition("t", 0).log is new  # type: ignore[union-attr]
    assert new.dir == target / "t-0" and lm.dir_of("t", 0) == str(target)
    assert new.log_end_offset == (400 + appended) * 5 == new.high_watermark
    assert all_bytes(new) == all_bytes(source)
    assert notified == [("t", 0)]
    rm.append("t", 0, batch(1), 1)  # appends go to the new log
    assert new.log_end_offset == (400 + appended) * 5 + 1
    await asyncio.sleep(0.2)  # the retired log is closed and its files removed
    assert [p.name for p in source.dir.parent.iterdir() if p.name.startswith("t-0")] == []
    # Moving back to where it is now: nothing to do.
    mover.alter("t", 0, str(target))
    assert mover.moving("t", 0) is None


async def test_retention_during_the_move(setup) -> None:
    rm, lm, dirs = setup
    for _ in range(400):
        rm.append("t", 0, batch(5, value_size=100), 1)
    source = lm.get_log("t", 0)
    assert source is not None
    target = next(d for d in dirs if d != source.dir.parent)
    mover = LogDirMover(rm, lm, lambda t, p: None, retire_delay_s=0)
    mover.alter("t", 0, str(target))
    await asyncio.sleep(0)
    source.delete_records_before(1500)  # DeleteRecords while the future is filled
    expected = slices_bytes(source.read(1500, 10**7, max_offset=None))
    await asyncio.wait_for(mover.wait("t", 0), 10)
    new = lm.get_log("t", 0)
    assert new is not None and new.dir.parent == target
    assert new.log_start_offset == 1500 and new.log_end_offset == 2000
    assert slices_bytes(new.read(1500, 10**7, max_offset=None)) == expected


async def test_truncation_during_the_move(setup) -> None:
    """A follower truncating mid-move (a new leader): the moved log is the truncated and
    re-grown current log, not a mix with the batches truncated away."""
    rm, lm, dirs = setup
    for _ in range(2000):
        rm.append("t", 0, batch(5, value_size=100), 1)
    source = lm.get_log("t", 0)
    assert source is not None
    target = next(d for d in dirs if d != source.dir.parent)
    # Throttled (replica.alter.log.dirs.io.max.bytes.per.second) so it is mid-move below.
    mover = LogDirMover(
        rm, lm, lambda t, p: None, retire_delay_s=0, io_max_bytes_per_second=500_000
    )
    mover.alter("t", 0, str(target))
    for _ in range(100):
        future = lm.future_log("t", 0)
        assert future is not None  # still moving
        if future[0].log_end_offset > 1000:
            break
        await asyncio.sleep(0.01)
    source.truncate_to(500)
    for _ in range(300):
        rm.append("t", 0, batch(5, value_size=120), 1)  # different batches from 500 on
    expected = slices_bytes(source.read(0, 10**8, max_offset=None))
    await asyncio.wait_for(mover.wait("t", 0), 20)
    new = lm.get_log("t", 0)
    assert new is not None and new.dir.parent == target and new.log_end_offset == 2000
    assert slices_bytes(new.read(0, 10**8, max_offset=None)) == expected


async def test_alter_errors(setup) -> None:
    rm, lm, dirs = setup
    mover = LogDirMover(rm, lm, lambda t, p: None)
    with pytest.raises(KafkaError) as info:
        mover.alter("t", 0, "/no/such/dir")
    assert info.value.code == ErrorCode.log_dir_not_found
    with pytest.raises(KafkaError) as info:
        mover.alter("t", 7, str(dirs[0]), exists=False)
    assert info.value.code == ErrorCode.unknown_topic_or_partition
    with pytest.raises(KafkaError) as info:
        mover.alter("other", 0, str(dirs[0]))  # exists, but no replica here
    assert info.value.code == ErrorCode.replica_not_available


async def test_take_offline_answers_storage_error(setup) -> None:
    rm, lm, _ = setup
    part = rm.partition("t", 0)
    assert part is not None
    waiter = part.wait_for_commit(10**9)
    assert rm.take_offline([("t", 0)]) == [("t", 0)]
    assert await waiter == ErrorCode.kafka_storage_error
    with pytest.raises(KafkaError) as info:
        rm.append("t", 0, batch(1), 1)
    assert info.value.code == ErrorCode.kafka_storage_error
    rm.append("t", 1, batch(1), 1)  # the other partition serves
    rm.apply_image(image())  # a new image does not bring it back
    assert rm.partition("t", 0) is None
