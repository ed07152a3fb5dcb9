"""A KIP-848 consumer group: its members, epochs, target assignment and reconciliation.

Pure state, no timers or I/O, after Kafka 4.0's ``ConsumerGroup``, ``ConsumerGroupMember``
and ``CurrentAssignmentBuilder`` (``org.apache.kafka.coordinator.group.modern``):

- The *group epoch* moves when the group's subscriptions (or the metadata of the topics
  it subscribes to) change; the *target assignment* is recomputed for a group epoch and
  stamped with it (the assignment epoch). A group is Empty (no members), Assigning (group
  epoch ahead of the assignment epoch), Reconciling (some member not yet at the assignment
  epoch in the Stable member state) or Stable.
- Each member has a *member epoch* and moves towards the target epoch by epoch:
  :func:`reconcile` keeps what the member may keep, asks it to revoke what it must give up
  (UNREVOKED_PARTITIONS, the member stays at its epoch until its heartbeat no longer
  reports those partitions) and hands it only partitions nobody else holds; a partition
  still held by another member is *unreleased* (UNRELEASED_PARTITIONS) and is assigned on
  a later heartbeat once freed.
- The group tracks, per partition, the epoch of the member that holds it (assigned or
  pending revocation). Adding an epoch to a partition that already has one is a bug and
  raises: no partition is ever owned by two members.

The coordinator mutates a group only by replaying records (``apply``), as Kafka does, so a
group rebuilt from ``__consumer_offsets`` is the group that was served.
"""

from __future__ import annotations

import enum
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pybroker.broker.groups.consumer_records import (
    CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT,
    CONSUMER_GROUP_MEMBER_METADATA,
    CONSUMER_GROUP_METADATA,
    CONSUMER_GROUP_PARTITION_METADATA,
    CONSUMER_GROUP_REGULAR_EXPRESSION,
    CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER,
    CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA,
    AssignmentEpochValue,
    ClassicMemberMetadata,
    ConsumerKey,
    ConsumerValue,
    CurrentAssignmentValue,
    GroupEpochValue,
    MemberMetadataValue,
    PartitionMetadataValue,
    RegexValue,
    TargetAssignmentValue,
    TopicMetadata,
)
from pybroker.broker.groups.group import OffsetAndMetadata
from pybroker.protocol.errors import ErrorCode, KafkaError

Assignment = Mapping[uuid.UUID, frozenset[int]]
OwnedPartitions = list[tuple[uuid.UUID, list[int]]]  # from a heartbeat; None = not sent

LEAVE_GROUP_MEMBER_EPOCH = -1
LEAVE_GROUP_STATIC_MEMBER_EPOCH = -2
CONSUMER_PROTOCOL_TYPE = "consumer"


class MemberState(enum.IntEnum):
    STABLE = 0
    UNREVOKED_PARTITIONS = 1
    UNRELEASED_PARTITIONS = 2
    UNKNOWN = 127

    @classmethod
    def of(cls, value: int) -> MemberState:
        try:
            return cls(value)
        except ValueError:
            return cls.UNKNOWN


class ConsumerGroupState(enum.Enum):
    EMPTY = "Empty"
    ASSIGNING = "Assigning"
    RECONCILING = "Reconciling"
    STABLE = "Stable"
    DEAD = "Dead"


@dataclass(frozen=True, slots=True)
class ConsumerGroupMember:
    member_id: str
    member_epoch: int = 0
    previous_member_epoch: int = 0
    state: MemberState = MemberState.STABLE
    instance_id: str | None = None
    rack_id: str | None = None
    rebalance_timeout_ms: int = -1
    client_id: str = ""
    client_host: str = ""
    subscribed_topic_names: frozenset[str] = frozenset()
    subscribed_topic_regex: str | None = None
    server_assignor: str | None = None
    # Set for a member that speaks the classic protocol (JoinGroup/SyncGroup/Heartbeat)
    # inside the consumer group: its session timeout and protocols.
    classic: ClassicMemberMetadata | None = None
    assigned: Assignment = field(default_factory=dict)
    pending_revocation: Assignment = field(default_factory=dict)

    def is_reconciled_to(self, epoch: int) -> bool:
        return self.state == MemberState.STABLE and self.member_epoch == epoch

    def with_epoch(self, epoch: int, **changes: Any) -> ConsumerGroupMember:
        """Builder.updateMemberEpoch: the previous epoch becomes the current one."""
        return replace(self, member_epoch=epoch, previous_member_epoch=self.member_epoch, **changes)

    def metadata_value(self) -> MemberMetadataValue:
        return MemberMetadataValue(
            instance_id=self.instance_id,
            rack_id=self.rack_id,
            client_id=self.client_id,
            client_host=self.client_host,
            subscribed_topic_names=tuple(sorted(self.subscribed_topic_names)),
            subscribed_topic_regex=self.subscribed_topic_regex,
            rebalance_timeout_ms=self.rebalance_timeout_ms,
            server_assignor=self.server_assignor,
            classic=self.classic,
        )

    def assignment_value(self) -> CurrentAssignmentValue:
        return CurrentAssignmentValue(
            self.member_epoch,
            self.previous_member_epoch,
            int(self.state),
            self.assigned,
            self.pending_revocation,
        )

    def with_metadata(self, v: MemberMetadataValue) -> ConsumerGroupMember:
        return replace(
            self,
            instance_id=v.instance_id,
            rack_id=v.rack_id,
            client_id=v.client_id,
            client_host=v.client_host,
            subscribed_topic_names=frozenset(v.subscribed_topic_names),
            subscribed_topic_regex=v.subscribed_topic_regex,
            rebalance_timeout_ms=v.rebalance_timeout_ms,
            server_assignor=v.server_assignor,
            classic=v.classic,
        )

    def with_assignment(self, v: CurrentAssignmentValue) -> ConsumerGroupMember:
        return replace(
            self,
            member_epoch=v.member_epoch,
            previous_member_epoch=v.previous_member_epoch,
            state=MemberState.of(v.state),
            assigned=dict(v.assigned),
            pending_revocation=dict(v.pending_revocation),
        )

    def same_metadata(self, other: ConsumerGroupMember) -> bool:
        return self.metadata_value() == other.metadata_value()

    @property
    def protocol_name(self) -> str:
        """The classic protocol this member is told to use: its first choice."""
        assert self.classic is not None
        return self.classic.protocols[0][0]


def partition_count(assignment: Assignment) -> int:
    return sum(len(ps) for ps in assignment.values())


# ---------------------------------------------------------------------------------------
# Reconciliation (CurrentAssignmentBuilder)


def _owns_any(owned: OwnedPartitions | None, partitions: Assignment) -> bool:
    """Does the heartbeat still report any of ``partitions``? Unknown (None): assume so."""
    if owned is None:
        return True
    for topic_id, parts in owned:
        pending = partitions.get(topic_id)
        if pending and any(p in pending for p in parts):
            return True
    return False


def reconcile(
    member: ConsumerGroupMember,
    target_epoch: int,
    target: Assignment,
    partition_epoch: Callable[[uuid.UUID, int], int],
    owned: OwnedPartitions | None,
) -> ConsumerGroupMember:
    """The member's next state towards (target_epoch, target), or the member unchanged."""
    if member.state == MemberState.STABLE:
        if member.member_epoch != target_epoch:
            return _next_assignment(
                member, member.member_epoch, target_epoch, target, partition_epoch, owned
            )
        return member
    if member.state == MemberState.UNREVOKED_PARTITIONS:
        if _owns_any(owned, member.pending_revocation):
            return member
        return _next_assignment(
            member, member.member_epoch, target_epoch, target, partition_epoch, owned
        )
    if member.state == MemberState.UNRELEASED_PARTITIONS:
        return _next_assignment(
            member, member.member_epoch, target_epoch, target, partition_epoch, owned
        )
    # UNKNOWN: a state from a newer version; fence unless the member owns nothing.
    if owned is None or any(parts for _, parts in owned):
        raise KafkaError(
            "The consumer group member is in a unknown state. The member must abandon all "
            "its partitions and rejoin.",
            ErrorCode.fenced_member_epoch,
        )
    return _next_assignment(member, target_epoch, target_epoch, target, partition_epoch, owned)


def _next_assignment(
    member: ConsumerGroupMember,
    member_epoch: int,
    target_epoch: int,
    target: Assignment,
    partition_epoch: Callable[[uuid.UUID, int], int],
    owned: OwnedPartitions | None,
) -> ConsumerGroupMember:
    unreleased = False
    assigned: dict[uuid.UUID, frozenset[int]] = {}
    revoking: dict[uuid.UUID, frozenset[int]] = {}
    pending: dict[uuid.UUID, frozenset[int]] = {}
    for topic_id in set(target) | set(member.assigned):
        want = target.get(topic_id, frozenset())
        have = member.assigned.get(topic_id, frozenset())
        keep = have & want
        revoke = have - keep
        new = set(want - keep)
        mine = member.pending_revocation.get(topic_id, frozenset())
        blocked = {p for p in new if partition_epoch(topic_id, p) != -1 and p not in mine}
        if blocked:
            unreleased = True
            new -= blocked
        if keep:
            assigned[topic_id] = keep
        if revoke:
            revoking[topic_id] = revoke
        if new:
            pending[topic_id] = frozenset(new)
    if revoking and _owns_any(owned, revoking):
        # Stay at the current epoch until the member has let go of these partitions.
        return member.with_epoch(
            member_epoch,
            state=MemberState.UNREVOKED_PARTITIONS,
            assigned=assigned,
            pending_revocation=revoking,
        )
    for topic_id, parts in pending.items():
        assigned[topic_id] = assigned.get(topic_id, frozenset()) | parts
    return member.with_epoch(
        target_epoch,
        state=MemberState.UNRELEASED_PARTITIONS if unreleased else MemberState.STABLE,
        assigned=assigned,
        pending_revocation={},
    )


# ---------------------------------------------------------------------------------------
# The group


@dataclass(frozen=True, slots=True)
class ResolvedRegex:
    topics: frozenset[str]
    version: int
    timestamp: int


class ConsumerGroup:
    group_type = "consumer"
    protocol_type = CONSUMER_PROTOCOL_TYPE

    def __init__(self, group_id: str) -> None:
        self.group_id = group_id
        self.group_epoch = 0
        self.assignment_epoch = 0
        self.members: dict[str, ConsumerGroupMember] = {}
        self.static_members: dict[str, str] = {}  # instance id -> member id
        self.target: dict[str, Assignment] = {}
        self.inverted_target: dict[tuple[uuid.UUID, int], str] = {}
        self.partition_epochs: dict[uuid.UUID, dict[int, int]] = {}
        self.subscription_metadata: dict[str, TopicMetadata] = {}
        self.resolved_regexes: dict[str, ResolvedRegex] = {}
        self.offsets: dict[tuple[str, int], OffsetAndMetadata] = {}
        # (deadline ms, group epoch) after which the subscription metadata is recomputed
        # (Kafka's metadataRefreshDeadline); (0, 0): at the next heartbeat.
        self.refresh_deadline: tuple[int, int] = (0, 0)

    def __repr__(self) -> str:
        return (
            f"ConsumerGroup({self.group_id!r}, {self.state.value}, epoch {self.group_epoch}, "
            f"assignment epoch {self.assignment_epoch}, {len(self.members)} member(s))"
        )

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> ConsumerGroupState:
        if not self.members:
            return ConsumerGroupState.EMPTY
        if self.group_epoch > self.assignment_epoch:
            return ConsumerGroupState.ASSIGNING
        if any(not m.is_reconciled_to(self.assignment_epoch) for m in self.members.values()):
            return ConsumerGroupState.RECONCILING
        return ConsumerGroupState.STABLE

    def is_empty(self) -> bool:
        return not self.members

    def has_member(self, member_id: str) -> bool:
        return member_id in self.members

    def static_member(self, instance_id: str | None) -> ConsumerGroupMember | None:
        if instance_id is None:
            return None
        member_id = self.static_members.get(instance_id)
        return self.members.get(member_id) if member_id is not None else None

    # ------------------------------------------------------------------ classic members
    def classic_members(self) -> list[ConsumerGroupMember]:
        return [m for m in self.members.values() if m.classic is not None]

    def supports_classic_protocols(self, protocol_type: str, names: set[str]) -> bool:
        """ConsumerGroup.supportsClassicProtocols: a classic member may join when one of its
        protocols is supported by every classic member already in the group."""
        if protocol_type != CONSUMER_PROTOCOL_TYPE:
            return False
        if not self.members:
            return bool(names)
        classic = self.classic_members()
        return any(
            all(name in {n for n, _ in m.classic.protocols} for m in classic if m.classic)
            for name in names
        )

    def all_members_use_classic_except(self, member_id: str) -> bool:
        """allMembersUseClassicProtocolExcept: the last consumer-protocol member leaving."""
        member = self.members.get(member_id)
        return (
            member is not None
            and member.classic is None
            and len(self.classic_members()) == len(self.members) - 1
        )

    def waiting_on_unreleased_partition(self, member: ConsumerGroupMember) -> bool:
        """Whether a member has target partitions another member still holds."""
        if member.state != MemberState.UNRELEASED_PARTITIONS:
            return False
        for topic_id, parts in self.target.get(member.member_id, {}).items():
            held = member.assigned.get(topic_id, frozenset())
            for p in parts:
                if p not in held and self.partition_epoch(topic_id, p) != -1:
                    return True
        return False

    def partition_epoch(self, topic_id: uuid.UUID, partition: int) -> int:
        return self.partition_epochs.get(topic_id, {}).get(partition, -1)

    def target_of(self, member_id: str, instance_id: str | None = None) -> Assignment:
        """The member's target assignment; a static member replacing a departed one takes
        over the departed member's."""
        if member_id in self.target:
            return self.target[member_id]
        if instance_id is not None:
            previous = self.static_members.get(instance_id)
            if previous is not None:
                return self.target.get(previous, {})
        return {}

    # ------------------------------------------------------------------ subscriptions
    def member_topics(self, member: ConsumerGroupMember) -> set[str]:
        topics = set(member.subscribed_topic_names)
        if member.subscribed_topic_regex:
            resolved = self.resolved_regexes.get(member.subscribed_topic_regex)
            if resolved is not None:
                topics |= resolved.topics
        return topics

    def subscribed_topic_names(
        self,
        old: ConsumerGroupMember | None = None,
        new: ConsumerGroupMember | None = None,
        removed: Iterable[str] = (),
    ) -> Counter[str]:
        """Subscribers per topic, with ``old`` replaced by ``new`` (either may be None)."""
        counts: Counter[str] = Counter()
        skip = set(removed)
        if old is not None:
            skip.add(old.member_id)
        if new is not None:
            skip.add(new.member_id)
        for member in self.members.values():
            if member.member_id not in skip:
                counts.update(self.member_topics(member))
        if new is not None:
            counts.update(self.member_topics(new))
        return counts

    def is_subscribed_to(self, topic: str) -> bool:
        return any(topic in self.member_topics(m) for m in self.members.values())

    def subscribed_regexes(self) -> Counter[str]:
        return Counter(
            m.subscribed_topic_regex for m in self.members.values() if m.subscribed_topic_regex
        )

    def preferred_assignor(
        self, old: ConsumerGroupMember | None, new: ConsumerGroupMember | None
    ) -> str | None:
        counts: Counter[str] = Counter()
        for member in self.members.values():
            if member.server_assignor:
                counts[member.server_assignor] += 1
        if old is not None and old.server_assignor and old.member_id in self.members:
            counts[old.server_assignor] -= 1
        if new is not None and new.server_assignor:
            counts[new.server_assignor] += 1
        counts = +counts
        if not counts:
            return None
        best = max(counts.values())
        return min(name for name, n in counts.items() if n == best)

    def has_metadata_expired(self, now_ms: int) -> bool:
        deadline, epoch = self.refresh_deadline
        return now_ms >= deadline or self.group_epoch < epoch

    def request_metadata_refresh(self) -> None:
        self.refresh_deadline = (0, 0)

    # ------------------------------------------------------------------ offsets
    def validate_offset_commit(
        self,
        member_id: str,
        instance_id: str | None,
        member_epoch: int,
        *,
        transactional: bool = False,
        api_version: int = 9,
    ) -> None:
        """ConsumerGroup.validateOffsetCommit; raises KafkaError."""
        if member_epoch < 0 and not self.members:
            return  # an admin / manual-assignment commit to an empty group
        if transactional and member_epoch == -1 and member_id == "" and instance_id is None:
            return
        member = self.members.get(member_id)
        if member is None:
            raise KafkaError(
                f"Member {member_id} is not a member of group {self.group_id}.",
                ErrorCode.unknown_member_id,
            )
        if not transactional and member.classic is None and api_version < 9:
            raise KafkaError(
                "OffsetCommit version 9 or above must be used by members using the modern "
                "group protocol",
                ErrorCode.unsupported_version,
            )
        self._validate_member_epoch(member, member_epoch)

    def validate_offset_fetch(self, member_id: str | None, member_epoch: int) -> None:
        """ConsumerGroup.validateOffsetFetch; raises KafkaError."""
        if member_id is None and member_epoch < 0:
            return
        member = self.members.get(member_id or "")
        if member is None:
            raise KafkaError(
                f"Member {member_id} is not a member of group {self.group_id}.",
                ErrorCode.unknown_member_id,
            )
        self._validate_member_epoch(member, member_epoch)

    @staticmethod
    def _validate_member_epoch(member: ConsumerGroupMember, epoch: int) -> None:
        if epoch != member.member_epoch:
            if member.classic is not None:
                raise KafkaError(
                    f"The received generation id {epoch} does not match the expected member "
                    f"epoch {member.member_epoch}.",
                    ErrorCode.illegal_generation,
                )
            raise KafkaError(
                f"The received member epoch {epoch} does not match the expected member epoch "
                f"{member.member_epoch}.",
                ErrorCode.stale_member_epoch,
            )

    def expired_offsets(self, now_ms: int, retention_ms: int) -> tuple[list[tuple[str, int]], bool]:
        """Offsets past retention counted from their commit (Kafka's condition for consumer
        groups); topics the group subscribes to never expire. (expired, all expired)."""
        expired: list[tuple[str, int]] = []
        all_expired = True
        for (topic, partition), om in self.offsets.items():
            if self.is_subscribed_to(topic):
                all_expired = False
                continue
            if om.expire_timestamp >= 0:
                gone = now_ms >= om.expire_timestamp
            else:
                gone = now_ms - om.commit_timestamp >= retention_ms
            if gone:
                expired.append((topic, partition))
            else:
                all_expired = False
        return expired, all_expired

    # ------------------------------------------------------------------ replay
    def apply(self, key: ConsumerKey, value: ConsumerValue | None) -> None:
        """Replay one record into the group (Kafka's GroupMetadataManager.replay)."""
        kind = key.record_type
        if kind == CONSUMER_GROUP_METADATA:
            if value is not None:
                assert isinstance(value, GroupEpochValue)
                self.group_epoch = value.epoch
        elif kind == CONSUMER_GROUP_PARTITION_METADATA:
            if value is None:
                self.subscription_metadata = {}
            else:
                assert isinstance(value, PartitionMetadataValue)
                self.subscription_metadata = {t.name: t for t in value.topics}
        elif kind == CONSUMER_GROUP_MEMBER_METADATA:
            member_id = key.member_id or ""
            if value is not None:
                assert isinstance(value, MemberMetadataValue)
                old = self.members.get(member_id) or ConsumerGroupMember(member_id)
                self.update_member(old.with_metadata(value))
            elif member_id in self.members:
                member = self.members[member_id]
                if member.member_epoch != LEAVE_GROUP_MEMBER_EPOCH:
                    raise ValueError(
                        f"Received a tombstone record to delete member {member_id} but did "
                        "not receive ConsumerGroupCurrentMemberAssignmentValue tombstone."
                    )
                if member_id in self.target:
                    raise ValueError(
                        f"Received a tombstone record to delete member {member_id} but did "
                        "not receive ConsumerGroupTargetAssignmentMetadataValue tombstone."
                    )
                self.remove_member(member_id)
        elif kind == CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER:
            member_id = key.member_id or ""
            if value is None:
                self._set_target(member_id, None)
            else:
                assert isinstance(value, TargetAssignmentValue)
                self._set_target(member_id, dict(value.partitions))
        elif kind == CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA:
            if value is None:
                if self.target:
                    raise ValueError(
                        f"Received a tombstone record to delete target assignment of "
                        f"{self.group_id} but the assignment still has {len(self.target)} "
                        "members."
                    )
                self.assignment_epoch = -1
            else:
                assert isinstance(value, AssignmentEpochValue)
                self.assignment_epoch = value.assignment_epoch
        elif kind == CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT:
            member_id = key.member_id or ""
            if value is not None:
                assert isinstance(value, CurrentAssignmentValue)
                old = self.members.get(member_id) or ConsumerGroupMember(member_id)
                self.update_member(old.with_assignment(value))
            elif member_id in self.members:
                self.update_member(
                    replace(
                        self.members[member_id],
                        member_epoch=LEAVE_GROUP_MEMBER_EPOCH,
                        previous_member_epoch=LEAVE_GROUP_MEMBER_EPOCH,
                        assigned={},
                        pending_revocation={},
                    )
                )
        elif kind == CONSUMER_GROUP_REGULAR_EXPRESSION:
            regex = key.regex or ""
            if value is None:
                self.resolved_regexes.pop(regex, None)
            else:
                assert isinstance(value, RegexValue)
                self.resolved_regexes[regex] = ResolvedRegex(
                    frozenset(value.topics), value.version, value.timestamp
                )

    def can_be_deleted_by_tombstone(self) -> bool:
        """The checks Kafka makes before replaying the group's epoch tombstone."""
        return not self.members and not self.target and self.assignment_epoch == -1

    def update_member(self, new: ConsumerGroupMember) -> None:
        old = self.members.get(new.member_id)
        if old is not None:
            self._remove_epochs(old)
            if old.instance_id is not None and self.static_members.get(old.instance_id) == (
                old.member_id
            ):
                del self.static_members[old.instance_id]
        self._add_epochs(new)
        self.members[new.member_id] = new
        if new.instance_id is not None:
            self.static_members[new.instance_id] = new.member_id

    def remove_member(self, member_id: str) -> None:
        old = self.members.pop(member_id, None)
        if old is None:
            return
        self._remove_epochs(old)
        if old.instance_id is not None and self.static_members.get(old.instance_id) == member_id:
            del self.static_members[old.instance_id]

    def _set_target(self, member_id: str, assignment: Assignment | None) -> None:
        previous = self.target.pop(member_id, None)
        if previous is not None:
            for topic_id, parts in previous.items():
                for p in parts:
                    if self.inverted_target.get((topic_id, p)) == member_id:
                        del self.inverted_target[(topic_id, p)]
        if assignment is not None:
            self.target[member_id] = assignment
            for topic_id, parts in assignment.items():
                for p in parts:
                    self.inverted_target[(topic_id, p)] = member_id

    def _add_epochs(self, member: ConsumerGroupMember) -> None:
        for assignment in (member.assigned, member.pending_revocation):
            for topic_id, parts in assignment.items():
                epochs = self.partition_epochs.setdefault(topic_id, {})
                for p in parts:
                    if p in epochs:
                        raise ValueError(
                            f"Cannot set the epoch of {topic_id}-{p} to {member.member_epoch} "
                            f"because the partition is still owned at epoch {epochs[p]}"
                        )
                    epochs[p] = member.member_epoch

    def _remove_epochs(self, member: ConsumerGroupMember) -> None:
        for assignment in (member.assigned, member.pending_revocation):
            for topic_id, parts in assignment.items():
                epochs = self.partition_epochs.get(topic_id)
                if epochs is None:
                    raise ValueError(
                        f"Cannot remove the epoch {member.member_epoch} from {topic_id} "
                        "because it does not have any epoch"
                    )
                for p in parts:
                    previous = epochs.pop(p, None)
                    if previous != member.member_epoch:
                        raise ValueError(
                            f"Cannot remove the epoch {member.member_epoch} from {topic_id}-{p} "
                            f"because the partition is still owned at a different epoch "
                            f"{previous}"
                        )
                if not epochs:
                    del self.partition_epochs[topic_id]

    # ------------------------------------------------------------------ deletion
    def tombstone_keys(self) -> list[ConsumerKey]:
        """Keys to tombstone to delete the group, in Kafka's order
        (ConsumerGroup.createGroupTombstoneRecords)."""
        g = self.group_id
        keys = [ConsumerKey(CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT, g, m) for m in self.members]
        keys += [ConsumerKey(CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER, g, m) for m in self.members]
        keys.append(ConsumerKey(CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA, g))
        keys += [ConsumerKey(CONSUMER_GROUP_MEMBER_METADATA, g, m) for m in self.members]
        keys += [
            ConsumerKey(CONSUMER_GROUP_REGULAR_EXPRESSION, g, regex=r)
            for r in self.resolved_regexes
        ]
        keys.append(ConsumerKey(CONSUMER_GROUP_PARTITION_METADATA, g))
        keys.append(ConsumerKey(CONSUMER_GROUP_METADATA, g))
        return keys
