"""Partition: the leader's follower tracking, ISR proposals, high watermark and acks=all.

A real Log in a temp dir under each Partition; the clock is a plain integer.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pybroker.protocol.errors import ErrorCode, KafkaError
from pybroker.replication.partition import LeaderAndIsr, Partition, check_epoch
from tests.unit.test_storage_support import batch, open_log

LAG = 10_000


def leader_partition(tmp_path: Path, isr=(1, 2, 3), replicas=(1, 2, 3), epoch=5) -> Partition:
    p = Partition("t", 0, 1, open_log(tmp_path / "t-0"))
    p.make_leader(LeaderAndIsr(1, epoch, tuple(isr), tuple(replicas)), now=0)
    return p


def append(p: Partition, n: int) -> int:
    """Append ``n`` records as leader; the offset after them."""
    info = p.log.append_as_leader(batch(n), p.leader_epoch)
    return info.last_offset + 1


def test_hw_is_min_leo_of_isr_and_never_moves_back(tmp_path: Path) -> None:
    p = leader_partition(tmp_path)
    end = append(p, 10)
    assert p.log.high_watermark == 0
    assert p.update_follower_fetch(2, 10, 0, now=1) is False  # 3 has not fetched
    assert p.log.high_watermark == 0
    assert p.update_follower_fetch(3, 4, 0, now=1) is True
    assert p.log.high_watermark == 4
    assert p.update_follower_fetch(3, end, 0, now=2) is True
    assert p.log.high_watermark == end
    # A follower that reports less (it truncated) cannot pull the HW back.
    p.update_follower_fetch(3, 2, 0, now=3)
    assert p.log.high_watermark == end


def test_sole_isr_leader_commits_on_append(tmp_path: Path) -> None:
    p = leader_partition(tmp_path, isr=(1,))
    end = append(p, 3)
    assert p.maybe_increment_hw(now=1) is True
    assert p.log.high_watermark == end


def test_lagging_follower_is_shrunk_after_max_lag(tmp_path: Path) -> None:
    p = leader_partition(tmp_path)
    end = append(p, 5)
    p.update_follower_fetch(2, end, 0, now=100)  # caught up at 100
    p.update_follower_fetch(3, 0, 0, now=100)  # behind: last caught up at make_leader (0)
    assert p.isr_to_shrink(now=LAG, max_lag_ms=LAG) is None  # 3 reset to now=0 in the ISR
    assert p.isr_to_shrink(now=LAG + 1, max_lag_ms=LAG) == (1, 2)
    # While the shrink is pending the HW still waits for 3 (maximal ISR) ...
    p.propose_isr((1, 2))
    assert p.isr_to_shrink(now=LAG + 2, max_lag_ms=LAG) is None  # one change at a time
    p.maybe_increment_hw(now=LAG + 2)
    assert p.log.high_watermark == 0
    # ... and once it is committed the HW moves to the remaining ISR's minimum.
    p.update_state(LeaderAndIsr(1, 5, (1, 2), (1, 2, 3), version=1))
    assert p.pending_isr is None
    assert p.maybe_increment_hw(now=LAG + 3) is True
    assert p.log.high_watermark == end


def test_follower_behind_but_catching_previous_leo_stays_in_sync(tmp_path: Path) -> None:
    """Kafka's ReplicaState: reaching the leader's LEO as of the previous fetch counts."""
    p = leader_partition(tmp_path)
    append(p, 5)
    p.update_follower_fetch(2, 0, 0, now=1000)  # leader LEO then 5
    append(p, 5)  # leader LEO now 10
    p.update_follower_fetch(2, 5, 0, now=2000)  # reached the previous LEO (5)
    state = p.followers[2]
    assert state.last_caught_up_ms == 1000
    p.update_follower_fetch(2, 10, 0, now=3000)
    assert state.last_caught_up_ms == 3000


def test_follower_joins_isr_at_hw_and_epoch_start(tmp_path: Path) -> None:
    p = leader_partition(tmp_path, isr=(1, 2))
    end = append(p, 4)
    p.update_follower_fetch(2, end, 0, now=1)
    assert p.log.high_watermark == end
    p.update_follower_fetch(3, 2, 0, now=1)
    assert p.isr_to_expand(lambda _: True) is None  # below the HW
    p.update_follower_fetch(3, end, 0, now=2)
    assert p.isr_to_expand(lambda _: True) == (1, 2, 3)
    p.propose_isr((1, 2, 3))
    assert 3 in p.maximal_isr and 3 not in p.isr


def test_new_epoch_resets_followers_and_records_epoch_start(tmp_path: Path) -> None:
    p = leader_partition(tmp_path, epoch=1)
    append(p, 3)
    p.update_follower_fetch(2, 3, 0, now=5)
    assert p.make_leader(LeaderAndIsr(1, 2, (1, 2, 3), (1, 2, 3)), now=50) is True
    assert p.leader_epoch_start_offset == 3
    assert p.followers[2].log_end_offset == -1
    assert p.followers[2].last_caught_up_ms == 50
    assert p.log.epoch_cache.latest_epoch == 2
    # The same epoch again (e.g. an ISR change seen through the store) is no new epoch.
    assert p.make_leader(LeaderAndIsr(1, 2, (1, 2), (1, 2, 3), version=1), now=60) is False


async def test_commit_waiters_complete_on_hw_and_fail_on_lost_leadership(
    tmp_path: Path,
) -> None:
    p = leader_partition(tmp_path, isr=(1, 2))
    end = append(p, 3)
    done = p.wait_for_commit(end)
    assert not done.done()
    p.update_follower_fetch(2, end, 0, now=1)
    assert await asyncio.wait_for(done, 1) == ErrorCode.none
    end2 = append(p, 1)
    lost = p.wait_for_commit(end2)
    p.make_follower(LeaderAndIsr(2, 6, (2,), (1, 2)))
    assert await asyncio.wait_for(lost, 1) == ErrorCode.not_leader_or_follower
    assert p.pending_commits == 0


def test_min_isr_and_leader_checks(tmp_path: Path) -> None:
    p = leader_partition(tmp_path, isr=(1,))
    with pytest.raises(KafkaError) as e:
        p.check_min_isr_for_append(-1, 2)
    assert e.value.code == ErrorCode.not_enough_replicas
    p.check_min_isr_for_append(1, 2)  # acks=1 does not care
    p.check_leader(5)
    with pytest.raises(KafkaError) as e:
        p.check_leader(4)
    assert e.value.code == ErrorCode.fenced_leader_epoch
    with pytest.raises(KafkaError) as e:
        p.check_leader(6)
    assert e.value.code == ErrorCode.unknown_leader_epoch
    p.make_follower(LeaderAndIsr(2, 6, (2,), (1, 2)))
    with pytest.raises(KafkaError) as e:
        p.check_leader()
    assert e.value.code == ErrorCode.not_leader_or_follower


def test_check_epoch_accepts_unset_and_equal() -> None:
    check_epoch(-1, 3)
    check_epoch(3, 3)


def test_follower_hw_is_capped_at_its_log_end(tmp_path: Path) -> None:
    p = Partition("t", 0, 2, open_log(tmp_path / "t-0"))
    p.make_follower(LeaderAndIsr(1, 1, (1, 2), (1, 2)))
    p.log.append_as_leader(batch(4), 1)
    p.follower_update_hw(10)
    assert p.log.high_watermark == 4
    p.follower_update_hw(2)
    assert p.log.high_watermark == 4


def test_reapplied_state_keeps_a_pending_isr_change(tmp_path: Path) -> None:
    """A metadata update for anything else must not drop a proposal in flight: the joining
    replica counts for the HW until the store settles the change (Kafka's maximalIsr)."""
    p = leader_partition(tmp_path, isr=(1, 2))
    end = append(p, 3)
    p.update_follower_fetch(2, end, 0, now=1)
    p.update_follower_fetch(3, end, 0, now=1)
    p.propose_isr((1, 2, 3))
    assert p.make_leader(p.state, now=2) is False  # the same stored state again
    assert p.pending_isr is not None and 3 in p.maximal_isr
    p.make_leader(LeaderAndIsr(1, 5, (1, 2), (1, 2, 3), version=7), now=3)  # the store moved
    assert p.pending_isr is None
