"""A bounded slice of the seeded chaos run (issue 9): two seeds, eight faults each.

Each run starts 3 brokers in their own network namespaces and a ZooKeeper, keeps an
idempotent acks=all producer busy on an RF=3, min.insync.replicas=2 topic while kill -9,
SIGSTOP, ZooKeeper restarts and network cuts hit leaders, followers and the controller,
then reads everything back: every acknowledged record exactly once, at its offset, in
order, nothing extra. The full runs are ``python -m tests.chaos --seed S --faults 30``.

The seeds are chosen (``test_slice_covers_every_fault``) so that the 16 faults between them
hit every kind of fault at every role, and each client sees its leader killed and cut off,
ZooKeeper restarted, and a broker gone for longer than its ZooKeeper session.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.load import Ack
from tests.chaos.runner import KINDS, ROLES, ChaosConfig, plan_faults, run_chaos
from tests.chaos.verify import longest_gaps, verify
from tests.support.cluster import CLUSTER_DEFAULTS
from tests.support.netns import NetnsNetwork, netns_available
from tests.support.zookeeper import zookeeper_available

SLICE = [(3609, "confluent"), (7000, "kafka-python")]
FAULTS = 8
ZK_SESSION_S = int(CLUSTER_DEFAULTS["zookeeper.session.timeout.ms"]) / 1000


@pytest.fixture
def _requirements() -> None:
    """A test that cannot run here is a defect, never a skip: `make test` installs nft
    and ZooKeeper, and CI runs as root."""
    if not (netns_available() and zookeeper_available()):
        pytest.fail("needs root, iproute2, nft (make apt-deps) and ZooKeeper")


def test_slice_covers_every_fault() -> None:
    plans = {c: plan_faults(ChaosConfig(seed=s, faults=FAULTS, client=c)) for s, c in SLICE}
    seen = {(f.kind, f.role) for plan in plans.values() for f in plan}
    every = {(k, r) for k in KINDS if k != "zk_restart" for r in ROLES}
    assert seen == every | {("zk_restart", "zookeeper")}
    for client, plan in plans.items():
        kinds = {(f.kind, f.role) for f in plan}
        assert {("kill", "leader"), ("netcut", "leader"), ("zk_restart", "zookeeper")} <= kinds
        assert any(f.kind in ("pause", "netcut") and f.hold > ZK_SESSION_S for f in plan), client
    # The plan is the seed's alone: the same draws as the run before this slice was chosen.
    old = plan_faults(ChaosConfig(seed=101, faults=2))
    assert [(f.kind, f.role, f.hold, f.gap) for f in old] == [
        ("pause", "controller", 6.31, 1.04),
        ("pause", "follower", 2.7, 2.93),
    ]


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


@pytest.mark.usefixtures("_requirements")
def test_netns_cleanup_leaves_nothing() -> None:
    net = NetnsNetwork(2).setup()
    try:
        assert len(net.leftovers()) == 5  # bridge, 2 namespaces, 2 veths
        net.cut(1)
        net.heal(1)
    finally:
        net.teardown()
    assert net.leftovers() == []


@pytest.mark.usefixtures("_requirements")
@pytest.mark.timeout(600)
@pytest.mark.parametrize("seed,client", SLICE)
def test_chaos_slice(tmp_path: Path, seed: int, client: str) -> None:
    report = run_chaos(
        ChaosConfig(
            seed=seed,
            faults=FAULTS,
            client=client,
            root=tmp_path / "run",
            recovery_timeout=60,
            verbose=False,
        )
    )
    print(report.summary())
    assert len(report.faults) == FAULTS
    assert report.acked > 0
    assert report.ok, report.summary()
