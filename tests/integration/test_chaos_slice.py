"""A bounded slice of the seeded chaos run (issue 9): two seeds, a dozen faults each.

Each run starts 3 brokers in their own network namespaces and a ZooKeeper, keeps an
idempotent acks=all producer busy on an RF=3, min.insync.replicas=2 topic while kill -9,
SIGSTOP, ZooKeeper restarts and network cuts hit leaders, followers and the controller,
then reads everything back: every acknowledged record exactly once, at its offset, in
order, nothing extra. The full runs are ``python -m tests.chaos --seed S --faults 30``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.load import Ack
from tests.chaos.runner import ChaosConfig, run_chaos
from tests.chaos.verify import longest_gaps, verify
from tests.support.netns import NetnsNetwork, netns_available
from tests.support.zookeeper import zookeeper_available


@pytest.fixture(autouse=True)
def _requirements() -> None:
    """A test that cannot run here is a defect, never a skip: `make test` installs nft
    and ZooKeeper, and CI runs as root."""
    if not (netns_available() and zookeeper_available()):
        pytest.fail("needs root, iproute2, nft (make apt-deps) and ZooKeeper")


def test_verify_finds_each_kind_of_violation() -> None:
    sent = {b"t-000000000": 0, b"t-000000001": 0, b"t-000000002": 0, b"t-000000003": 0}
    acked = [Ack(0, 0, b"t-000000000", 1.0), Ack(0, 1, b"t-000000001", 2.0)]
    good = {0: [(0, b"t-000000000"), (1, b"t-000000001"), (2, b"t-000000003")]}
    v = verify(sent, acked, good)
    assert v.ok and v.unacked_present == 1, dict(v.problems)
    bad = {0: [(0, b"t-000000001"), (1, b"t-000000000"), (2, b"x-1"), (3, b"t-000000002")]}
    bad[0] += [(4, b"t-000000002")]
    v = verify(sent, acked, bad)
    assert set(v.problems) >= {
        "acked_wrong_offset",
        "acked_out_of_order",
        "not_produced",
        "unacked_duplicates",
    }
    v = verify(sent, acked, {0: [(0, b"t-000000000")]})
    assert list(v.problems) == ["acked_lost"]
    gaps = longest_gaps(acked, 1, 0.0, 10.0)
    assert gaps[0] == (8.0, 2.0, 10.0)


def test_netns_cleanup_leaves_nothing() -> None:
    net = NetnsNetwork(2).setup()
    try:
        assert len(net.leftovers()) == 5  # bridge, 2 namespaces, 2 veths
        net.cut(1)
        net.heal(1)
    finally:
        net.teardown()
    assert net.leftovers() == []


@pytest.mark.timeout(600)
@pytest.mark.parametrize("seed,client", [(101, "confluent"), (202, "kafka-python")])
def test_chaos_slice(tmp_path: Path, seed: int, client: str) -> None:
    report = run_chaos(
        ChaosConfig(
            seed=seed,
            faults=12,
            client=client,
            root=tmp_path / "run",
            recovery_timeout=60,
            verbose=False,
        )
    )
    print(report.summary())
    assert len(report.faults) == 12
    assert report.acked > 0
    assert report.ok, report.summary()
