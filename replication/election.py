"""Leader election rules: Kafka's PartitionLeaderElectionAlgorithms (pure functions).

Every election walks the assignment in order, so the preferred (first) replica wins
whenever it is eligible. Each returns the new leader and ISR, or None when no replica is
eligible (the partition goes offline, leader -1, rather than lose data).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class ElectionResult:
    """One partition's ElectLeaders answer (error_code 0 = elected)."""

    topic: str
    partition: int
    error_code: int
    error_message: str | None = None


# Kafka's generic messages (Errors), which ElectLeaders answers carry.
ELECTION_NOT_NEEDED = "Leader election not needed for topic partition."
PREFERRED_LEADER_NOT_AVAILABLE = "The preferred leader was not available."
ELIGIBLE_LEADERS_NOT_AVAILABLE = "Eligible topic partition leaders are not available."

PREFERRED = 0  # ElectionType.PREFERRED
UNCLEAN = 1  # ElectionType.UNCLEAN


def requested_election(
    election_type: int,
    assignment: Sequence[int],
    leader: int,
    isr: Sequence[int],
    live: Collection[int],
) -> tuple[str, int, tuple[int, ...]]:
    """An ElectLeaders (KIP-460) election for one partition, as Kafka's controller runs it.

    Returns (outcome, leader, isr); outcome is "elected", "not_needed" (ELECTION_NOT_NEEDED:
    the preferred replica already leads, or for UNCLEAN a live leader exists) or
    "unavailable" (PREFERRED_LEADER_NOT_AVAILABLE / ELIGIBLE_LEADERS_NOT_AVAILABLE).
    PREFERRED moves leadership only to the first assigned replica, and only while it is
    alive and in sync. UNCLEAN elects the first live in-sync replica, or else the first
    live replica outside the ISR, which then forms the ISR alone; it is what an operator
    asks for, so ``unclean.leader.election.enable`` does not gate it.
    """
    isr_t = tuple(isr)
    if election_type == PREFERRED:
        if assignment and leader == assignment[0]:
            return "not_needed", leader, isr_t
        chosen = preferred_election(assignment, isr, live)
        if chosen is None:
            return "unavailable", leader, isr_t
        return "elected", chosen, isr_t
    if leader >= 0 and leader in live:
        return "not_needed", leader, isr_t
    elected = offline_election(assignment, isr, live, unclean_allowed=True)
    if elected is None:
        return "unavailable", leader, isr_t
    new_leader, new_isr, _unclean = elected
    return "elected", new_leader, new_isr


def reassignment_leader(
    target: Sequence[int], leader: int, isr: Sequence[int], live: Collection[int]
) -> int | None:
    """Kafka's reassignPartitionLeaderElection: keep a live leader that stays a replica,
    else the first target replica that is alive and in sync (None: no one is)."""
    if leader in target and leader in live:
        return leader
    for r in target:
        if r in live and r in isr:
            return r
    return None


def imbalanced_partitions(
    assignments: Mapping[tuple[str, int], Sequence[int]],
    leaders: Mapping[tuple[str, int], tuple[int, Sequence[int]]],
    live: Collection[int],
    max_imbalance_percent: int,
) -> list[tuple[str, int]]:
    """Kafka's checkAndTriggerAutoLeaderRebalance: per preferred broker, the share of its
    partitions led by someone else; above ``max_imbalance_percent`` those whose preferred
    replica can lead (alive, in sync) get a preferred election.

    ``assignments``: replicas per partition; ``leaders``: (leader, isr) per partition.
    """
    by_preferred: dict[int, list[tuple[str, int]]] = {}
    for tp, replicas in assignments.items():
        if replicas and tp in leaders:
            by_preferred.setdefault(replicas[0], []).append(tp)
    chosen: list[tuple[str, int]] = []
    for broker, tps in sorted(by_preferred.items()):
        misplaced = [tp for tp in tps if leaders[tp][0] != broker]
        if len(misplaced) / len(tps) <= max_imbalance_percent / 100:
            continue
        for tp in misplaced:
            if preferred_election(assignments[tp], leaders[tp][1], live) is not None:
                chosen.append(tp)
    return sorted(chosen)
