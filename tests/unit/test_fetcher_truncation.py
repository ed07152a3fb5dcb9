"""Follower truncation by leader epoch (KIP-101/279), on real logs.

``ReplicaFetcher._apply_epoch_end`` gets the leader's answer to OffsetForLeaderEpoch for
the follower's latest epoch and truncates the follower's log to where the two diverge.
"""

from __future__ import annotations

from pathlib import Path

from pybroker.replication.broker_client import BrokerClient
from pybroker.replication.fetcher import FetcherConfig, ReplicaFetcher, _FetchState
from pybroker.replication.partition import LeaderAndIsr, Partition
from tests.unit.test_storage_support import batch, open_log


def follower_with(
    tmp_path: Path, epochs: list[tuple[int, int]]
) -> tuple[ReplicaFetcher, _FetchState]:
    """A follower log holding ``n`` records (batches of 5) written at each (epoch, n);
    epochs end on batch boundaries, as they do in a real log."""
    lg = open_log(tmp_path / "t-0")
    for epoch, n in epochs:
        for _ in range(n // 5):
            lg.append_as_leader(batch(5), epoch)
    part = Partition("t", 0, 2, lg)
    part.make_follower(LeaderAndIsr(1, 9, (1, 2), (1, 2)))
    fetcher = ReplicaFetcher(2, 1, BrokerClient("127.0.0.1", 1, "test"), FetcherConfig())
    return fetcher, _FetchState(part, 9)


def test_same_epoch_truncates_to_the_leaders_end(tmp_path: Path) -> None:
    fetcher, state = follower_with(tmp_path, [(0, 50), (1, 10)])
    assert fetcher._apply_epoch_end(state, 1, 55) is True
    assert state.partition.log.log_end_offset == 55


def test_unknown_epoch_truncates_to_the_older_epochs_end(tmp_path: Path) -> None:
    # Our epoch 1 (offsets 50-59) never reached the new leader, whose epoch 0 ends at 40.
    fetcher, state = follower_with(tmp_path, [(0, 50), (1, 10)])
    assert fetcher._apply_epoch_end(state, 0, 40) is True
    lg = state.partition.log
    assert lg.log_end_offset == 40
    assert lg.latest_epoch == 0


def test_unknown_epoch_keeps_our_shorter_older_epoch(tmp_path: Path) -> None:
    # The leader's epoch 0 goes further than ours: keep all of our epoch 0, drop epoch 1.
    fetcher, state = follower_with(tmp_path, [(0, 30), (1, 10)])
    assert fetcher._apply_epoch_end(state, 0, 45) is True
    assert state.partition.log.log_end_offset == 30


def test_nothing_to_truncate(tmp_path: Path) -> None:
    fetcher, state = follower_with(tmp_path, [])
    assert fetcher._apply_epoch_end(state, -1, -1) is True
    assert state.partition.log.log_end_offset == 0
    fetcher, state = follower_with(tmp_path / "b", [(3, 5)])
    assert fetcher._apply_epoch_end(state, 3, 9) is True  # the leader has more: keep ours
    assert state.partition.log.log_end_offset == 5
