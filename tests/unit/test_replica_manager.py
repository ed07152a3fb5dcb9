"""ReplicaManager: leader/follower transitions, acks=all commit waits, ISR proposals.

Real logs (a LogManager over a temp dir); the metadata image is built by hand; the ISR
writer is an in-memory function standing in for the store's conditional write, so each
test decides whether a proposal is confirmed or refused.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pybroker.config.topic_config import TopicConfig
from pybroker.protocol.errors import ErrorCode, KafkaError
from pybroker.replication.metadata import BrokerInfo, ClusterImage, PartitionState, TopicInfo
from pybroker.replication.partition import LeaderAndIsr
from pybroker.replication.replica_manager import ReplicaManager
from pybroker.storage.log_manager import LogManager
from tests.unit.test_storage_support import batch

TOPIC_ID = uuid.uuid4()
LAG = 10_000


class Clock:
    def __init__(self) -> None:
        self.now = 1_000

    def __call__(self) -> int:
        return self.now


class IsrStore:
    """Confirms (or refuses) ISR proposals, bumping the version as ZooKeeper would."""

    def __init__(self) -> None:
        self.proposals: list[LeaderAndIsr] = []
        self.refuse = False

    async def __call__(self, topic: str, partition: int, proposed: LeaderAndIsr):
        self.proposals.append(proposed)
        if self.refuse:
            return None
        return LeaderAndIsr(
            proposed.leader,
            proposed.leader_epoch,
            proposed.isr,
            proposed.replicas,
            proposed.version + 1,
        )


def image(leader: int, epoch: int, isr: tuple[int, ...]) -> ClusterImage:
    brokers = {b: BrokerInfo(b, "127.0.0.1", 9000 + b) for b in (1, 2, 3)}
    part = PartitionState(0, leader, epoch, (1, 2, 3), isr)
    topic = TopicInfo("t", TOPIC_ID, (part,), {"min.insync.replicas": "2"})
    return ClusterImage("c", 1, brokers, {"t": topic})


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[ReplicaManager, Clock, IsrStore]]:
    configs = {"t": TopicConfig(overrides={"min.insync.replicas": "2"})}
    lm = LogManager([tmp_path], lambda t: configs.get(t, TopicConfig(overrides={})))
    lm.load()
    clock = Clock()
    store = IsrStore()
    rm = ReplicaManager(
        1,
        lm,
        lambda t: configs.get(t, TopicConfig(overrides={})),
        clock=clock,
        replica_lag_time_max_ms=LAG,
        isr_writer=store,
    )
    yield rm, clock, store
    lm.shutdown()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_acks_all_completes_when_the_isr_has_the_append(setup) -> None:
    rm, clock, _ = setup
    rm.apply_image(image(1, 3, (1, 2, 3)))
    lg, info = rm.append("t", 0, batch(4), -1)
    end = info.last_offset + 1
    waiting = asyncio.ensure_future(rm.wait_for_commit([("t", 0, end)], 5))
    await settle()
    assert not waiting.done()
    rm.record_follower_fetch(2, "t", 0, end, 0)
    await settle()
    assert not waiting.done()  # 3 is in the ISR and has not fetched
    rm.record_follower_fetch(3, "t", 0, end, 0)
    assert await asyncio.wait_for(waiting, 1) == {("t", 0): ErrorCode.none}
    assert lg.high_watermark == end


async def test_commit_wait_times_out(setup) -> None:
    rm, _, _ = setup
    rm.apply_image(image(1, 3, (1, 2)))
    _, info = rm.append("t", 0, batch(1), -1)
    got = await rm.wait_for_commit([("t", 0, info.last_offset + 1)], 0.05)
    assert got == {("t", 0): ErrorCode.request_timed_out}


async def test_lagging_follower_is_proposed_out_and_commit_finishes_short(setup) -> None:
    rm, clock, store = setup
    rm.apply_image(image(1, 3, (1, 2, 3)))
    _, info = rm.append("t", 0, batch(2), -1)
    end = info.last_offset + 1
    waiting = asyncio.ensure_future(rm.wait_for_commit([("t", 0, end)], 5))
    rm.record_follower_fetch(2, "t", 0, end, 0)
    clock.now += LAG + 1
    rm.isr_maintenance()
    await settle()
    assert [p.isr for p in store.proposals] == [(1, 2)]
    assert rm.partition("t", 0).isr == (1, 2)
    assert await asyncio.wait_for(waiting, 1) == {("t", 0): ErrorCode.none}


async def test_isr_shrinking_below_min_isr_after_append(setup) -> None:
    rm, clock, store = setup
    rm.apply_image(image(1, 3, (1, 2)))
    _, info = rm.append("t", 0, batch(1), -1)
    waiting = asyncio.ensure_future(rm.wait_for_commit([("t", 0, info.last_offset + 1)], 5))
    clock.now += LAG + 1
    rm.isr_maintenance()
    got = await asyncio.wait_for(waiting, 1)
    assert store.proposals[-1].isr == (1,)
    assert got == {("t", 0): ErrorCode.not_enough_replicas_after_append}
    with pytest.raises(KafkaError) as e:
        rm.append("t", 0, batch(1), -1)
    assert e.value.code == ErrorCode.not_enough_replicas
    rm.append("t", 0, batch(1), 1)  # acks=1 still works


async def test_refused_isr_write_keeps_the_old_isr(setup) -> None:
    rm, clock, store = setup
    store.refuse = True
    rm.apply_image(image(1, 3, (1, 2, 3)))
    clock.now += LAG + 1
    rm.isr_maintenance()
    await settle()
    part = rm.partition("t", 0)
    assert part.isr == (1, 2, 3) and part.pending_isr is None
    rm.isr_maintenance()  # and it may propose again
    await settle()
    assert len(store.proposals) == 2


async def test_caught_up_follower_is_proposed_into_the_isr(setup) -> None:
    rm, _, store = setup
    rm.apply_image(image(1, 3, (1, 2)))
    _, info = rm.append("t", 0, batch(3), 1)
    end = info.last_offset + 1
    rm.record_follower_fetch(2, "t", 0, end, 0)
    rm.record_follower_fetch(3, "t", 0, end, 0)
    await settle()
    assert store.proposals[-1].isr == (1, 2, 3)
    assert rm.partition("t", 0).isr == (1, 2, 3)


async def test_losing_leadership_fails_waiters_and_tells_listeners(setup) -> None:
    rm, _, _ = setup
    events: list[tuple[str, int, bool]] = []
    rm.add_leadership_listener(lambda t, p, leader: events.append((t, p, leader)))
    rm.apply_image(image(1, 3, (1, 2)))
    _, info = rm.append("t", 0, batch(1), -1)
    waiting = asyncio.ensure_future(rm.wait_for_commit([("t", 0, info.last_offset + 1)], 5))
    await settle()
    rm.apply_image(image(2, 4, (2,)))
    assert await asyncio.wait_for(waiting, 1) == {("t", 0): ErrorCode.not_leader_or_follower}
    assert events == [("t", 0, True), ("t", 0, False)]
    with pytest.raises(KafkaError) as e:
        rm.leader_log("t", 0)
    assert e.value.code == ErrorCode.not_leader_or_follower


async def test_stale_leader_epoch_is_ignored(setup) -> None:
    rm, _, _ = setup
    rm.apply_image(image(2, 7, (2, 1)))
    rm.apply_image(image(1, 6, (1, 2)))  # an older decision arriving late
    part = rm.partition("t", 0)
    assert part.leader_epoch == 7 and not part.is_leader


async def test_sole_isr_leader_commits_on_append(setup) -> None:
    rm, _, _ = setup
    rm.apply_image(image(1, 0, (1,)))
    lg, info = rm.append("t", 0, batch(2), 1)
    assert lg.high_watermark == info.last_offset + 1
    # Committed, but the ISR (1) is below min.insync.replicas (2) for an acks=all wait.
    got = await rm.wait_for_commit([("t", 0, info.last_offset + 1)], 0)
    assert got == {("t", 0): ErrorCode.not_enough_replicas_after_append}
