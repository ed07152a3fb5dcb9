"""Partition reassignment (KIP-455) as pure functions: Kafka's ReplicaAssignment and the
controller's completion step.

A reassignment of a partition from its original replicas (ORS) to target replicas (TRS)
is stored in the topic znode as the full replica set RS = TRS + ORS (target first, so
the target's first replica is the preferred leader once the move is done) with
``adding_replicas`` = TRS - ORS and ``removing_replicas`` = ORS - TRS. The adding
replicas start fetching as soon as they see themselves in RS; once every target replica
is in the ISR the controller completes it in one write: a leader from the target set if
the current one leaves (elected only among in-sync targets, so the ISR never shrinks
below what the target provides), the removing replicas out of the ISR, RS = TRS and
adding/removing cleared. Removed replicas then delete their logs (StopReplica).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

from pybroker.replication.election import reassignment_leader
from pybroker.replication.zk_data import PartitionStateZnode, TopicAssignment


def _distinct(replicas: Sequence[int]) -> tuple[int, ...]:
    seen: dict[int, None] = {}
    for r in replicas:
        seen.setdefault(r, None)
    return tuple(seen)


@dataclass(frozen=True, slots=True)
class ReplicaAssignment:
    """One partition's replicas, with the reassignment in progress if any."""

    replicas: tuple[int, ...]
    adding: tuple[int, ...] = ()
    removing: tuple[int, ...] = ()

    @property
    def in_progress(self) -> bool:
        return bool(self.adding or self.removing)

    @property
    def origin(self) -> tuple[int, ...]:
        """ORS: the replicas before the reassignment (RS without the adding ones)."""
        return tuple(r for r in self.replicas if r not in self.adding)

    @property
    def target(self) -> tuple[int, ...]:
        """TRS: the replicas once the reassignment is done (RS without the removing ones)."""
        return tuple(r for r in self.replicas if r not in self.removing)

    def reassign_to(self, target: Sequence[int]) -> ReplicaAssignment:
        """A new reassignment replaces any one in progress: it starts from the original
        replicas, so replicas added by the old one and not wanted now leave at once."""
        origin = self.origin
        full = _distinct([*target, *origin])
        return ReplicaAssignment(
            full,
            tuple(r for r in full if r not in origin),
            tuple(r for r in full if r not in target),
        )


def completed_state(
    assignment: ReplicaAssignment, state: PartitionStateZnode, live: Collection[int]
) -> PartitionStateZnode | None:
    """The partition state that completes ``assignment``, or None while it must wait
    (a target replica not yet in sync, or no live in-sync target to lead).

    The leader moves (epoch + 1) only if it is not a target or not alive; the ISR keeps
    its order without the removing replicas.
    """
    target = assignment.target
    isr = tuple(state.isr)
    if not target or not set(target) <= set(isr):
        return None
    leader = reassignment_leader(target, state.leader, isr, live)
    if leader is None:
        return None
    new_isr = tuple(r for r in isr if r in target)
    if leader != state.leader:
        return replace(state, leader=leader, leader_epoch=state.leader_epoch + 1, isr=new_isr)
    return replace(state, isr=new_isr)


def replica_assignment(a: TopicAssignment, partition: int) -> ReplicaAssignment:
    """One partition's replicas and reassignment from the topic znode."""
    return ReplicaAssignment(
        tuple(a.partitions.get(partition, ())),
        tuple(a.adding.get(partition, ())),
        tuple(a.removing.get(partition, ())),
    )


def with_reassignment(
    a: TopicAssignment, partition: int, new: ReplicaAssignment
) -> TopicAssignment:
    """The topic znode with ``partition``'s replicas (and reassignment) replaced."""
    adding = {p: r for p, r in a.adding.items() if p != partition}
    removing = {p: r for p, r in a.removing.items() if p != partition}
    if new.adding:
        adding[partition] = new.adding
    if new.removing:
        removing[partition] = new.removing
    return replace(
        a,
        partitions={**a.partitions, partition: new.replicas},
        adding=adding,
        removing=removing,
    )
