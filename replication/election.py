"""Leader election rules: Kafka's PartitionLeaderElectionAlgorithms (pure functions).

Every election walks the assignment in order, so the preferred (first) replica wins
whenever it is eligible. Each returns the new leader and ISR, or None when no replica is
eligible (the partition goes offline, leader -1, rather than lose data).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

NO_LEADER = -1


def offline_election(
    assignment: Sequence[int],
    isr: Sequence[int],
    live: Collection[int],
    unclean_allowed: bool,
) -> tuple[int, tuple[int, ...], bool] | None:
    """(leader, isr, unclean) after the leader died: the first live ISR member, else with
    ``unclean.leader.election.enable`` the first live replica (its ISR is itself alone)."""
    live_isr = tuple(r for r in isr if r in live)
    for r in assignment:
        if r in live and r in isr:
            return r, live_isr, False
    if unclean_allowed:
        for r in assignment:
            if r in live:
                return r, (r,), True
    return None


def controlled_shutdown_election(
    assignment: Sequence[int],
    isr: Sequence[int],
    live: Collection[int],
    shutting_down: Collection[int],
) -> tuple[int, tuple[int, ...]] | None:
    """Move leadership off brokers that are stopping: the first live ISR member that is
    not stopping; the stopping brokers leave the ISR."""
    new_isr = tuple(r for r in isr if r not in shutting_down)
    for r in assignment:
        if r in live and r in isr and r not in shutting_down:
            return r, new_isr
    return None


def preferred_election(
    assignment: Sequence[int], isr: Sequence[int], live: Collection[int]
) -> int | None:
    """The preferred replica, if it is alive and in sync."""
    if assignment and assignment[0] in live and assignment[0] in isr:
        return assignment[0]
    return None
