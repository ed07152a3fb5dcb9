"""A classic group and its members: the data and bookkeeping of Kafka's ``ClassicGroup``.

Pure state: no timers, no I/O. The coordinator drives transitions; this module keeps the
invariants Kafka's ``ClassicGroup`` keeps (member counts awaiting join, the votes per
protocol, static-member and pending-member maps, the leader) and answers the questions
the protocol asks (which protocol to select, has everyone joined, may this commit pass).
A member waiting on JoinGroup or SyncGroup holds a callback that receives its result.
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pybroker.broker.groups.consumer_protocol import subscribed_topics
from pybroker.broker.groups.records import RecordFormatError
from pybroker.protocol.errors import ErrorCode, KafkaError

log = logging.getLogger(__name__)

CONSUMER_PROTOCOL_TYPE = "consumer"
UNKNOWN_MEMBER_ID = ""


class GroupState(enum.Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


_VALID_PREVIOUS: dict[GroupState, frozenset[GroupState]] = {
    GroupState.EMPTY: frozenset({GroupState.PREPARING_REBALANCE}),
    GroupState.PREPARING_REBALANCE: frozenset(
        {GroupState.STABLE, GroupState.COMPLETING_REBALANCE, GroupState.EMPTY}
    ),
    GroupState.COMPLETING_REBALANCE: frozenset({GroupState.PREPARING_REBALANCE}),
    GroupState.STABLE: frozenset({GroupState.COMPLETING_REBALANCE}),
    GroupState.DEAD: frozenset(GroupState),
}


@dataclass(slots=True)
class JoinResult:
    error: ErrorCode
    member_id: str
    generation_id: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = ""
    skip_assignment: bool = False
    # (member_id, group_instance_id, metadata) for the leader; empty for followers.
    members: list[tuple[str, str | None, bytes]] = field(default_factory=list)


@dataclass(slots=True)
class SyncResult:
    error: ErrorCode
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""


JoinCallback = Callable[[JoinResult], None]
SyncCallback = Callable[[SyncResult], None]


@dataclass(slots=True)
class OffsetAndMetadata:
    offset: int
    metadata: str
    commit_timestamp: int
    leader_epoch: int = -1
    expire_timestamp: int = -1


@dataclass(eq=False, slots=True)
class Member:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]  # in the member's order of preference
    assignment: bytes = b""
    join_callback: JoinCallback | None = None
    sync_callback: SyncCallback | None = None
    is_new: bool = False
    heartbeat_timer: object | None = None  # the coordinator's timer handle

    @property
    def is_static(self) -> bool:
        return self.group_instance_id is not None

    @property
    def awaiting_join(self) -> bool:
        return self.join_callback is not None

    @property
    def awaiting_sync(self) -> bool:
        return self.sync_callback is not None

    def protocol_names(self) -> list[str]:
        return [name for name, _ in self.protocols]

    def metadata(self, protocol: str) -> bytes:
        for name, data in self.protocols:
            if name == protocol:
                return data
        raise KeyError(f"member {self.member_id} does not support protocol {protocol}")

    def matches(self, protocols: list[tuple[str, bytes]]) -> bool:
        return self.protocols == protocols

    def vote(self, candidates: set[str]) -> str:
        for name, _ in self.protocols:
            if name in candidates:
                return name
        raise ValueError(f"member {self.member_id} supports none of {candidates}")

    def has_satisfied_heartbeat(self) -> bool:
        """With no heartbeat since the timer started: new members expire even while they
        wait to join; members awaiting a rebalance step count as alive."""
        if self.is_new:
            return False
        return self.awaiting_join or self.awaiting_sync


def _answer(callback: Callable[[Any], None], result: Any) -> None:
    try:
        callback(result)
    except Exception:
        log.exception("Answering a superseded group request failed")


class ClassicGroup:
    def __init__(self, group_id: str, now_ms: int) -> None:
        self.group_id = group_id
        self.state = GroupState.EMPTY
        self.previous_state = GroupState.EMPTY
        self.state_timestamp = now_ms
        self.protocol_type: str | None = None
        self.protocol_name: str | None = None
        self.generation_id = 0
        self.leader_id: str | None = None
        self.members: dict[str, Member] = {}
        self.static_members: dict[str, str] = {}  # group.instance.id -> member id
        self.pending_members: set[str] = set()  # KIP-394: given an id, not joined yet
        self.pending_sync_members: set[str] = set()
        self.num_members_awaiting_join = 0
        self.supported_protocols: Counter[str] = Counter()
        self.subscribed_topics: set[str] | None = None
        self.new_member_added = False
        self.offsets: dict[tuple[str, int], OffsetAndMetadata] = {}
        # The coordinator's timers: the delayed join (and whether it is the initial one),
        # the pending-sync deadline and the expirations of pending members.
        self.join_timer: object | None = None
        self.join_initial = False
        self.join_delay_ms = 0
        self.join_remaining_ms = 0
        self.sync_timer: object | None = None
        self.pending_timers: dict[str, object] = {}

    def __repr__(self) -> str:
        return (
            f"ClassicGroup({self.group_id!r}, {self.state.value}, generation "
            f"{self.generation_id}, {len(self.members)} member(s))"
        )

    # ------------------------------------------------------------------ state
    def is_state(self, *states: GroupState) -> bool:
        return self.state in states

    def can_rebalance(self) -> bool:
        return self.state in _VALID_PREVIOUS[GroupState.PREPARING_REBALANCE]

    def transition_to(self, target: GroupState, now_ms: int) -> None:
        if self.state not in _VALID_PREVIOUS[target]:
            raise AssertionError(
                f"group {self.group_id} should be in {_VALID_PREVIOUS[target]} to move to "
                f"{target.value}, but is {self.state.value}"
            )
        self.previous_state = self.state
        self.state = target
        self.state_timestamp = now_ms

    # ------------------------------------------------------------------ members
    def has_member(self, member_id: str) -> bool:
        return member_id in self.members

    def is_leader(self, member_id: str) -> bool:
        return self.leader_id == member_id

    def static_member_id(self, instance_id: str) -> str | None:
        return self.static_members.get(instance_id)

    def generate_member_id(self, client_id: str, instance_id: str | None) -> str:
        return f"{instance_id if instance_id is not None else client_id}-{uuid.uuid4()}"

    def add(self, member: Member, callback: JoinCallback | None = None) -> None:
        if not self.members:
            self.protocol_type = member.protocol_type
        if member.group_instance_id is not None:
            self.static_members[member.group_instance_id] = member.member_id
        if self.leader_id is None:
            self.leader_id = member.member_id
        self.members[member.member_id] = member
        self.supported_protocols.update(member.protocol_names())
        member.join_callback = callback
        if member.awaiting_join:
            self.num_members_awaiting_join += 1
        self.pending_members.discard(member.member_id)

    def remove(self, member_id: str) -> Member | None:
        member = self.members.pop(member_id, None)
        if member is not None:
            self.supported_protocols.subtract(member.protocol_names())
            self.supported_protocols += Counter()  # drop zero counts
            if member.awaiting_join:
                self.num_members_awaiting_join -= 1
            if member.group_instance_id is not None:
                self.static_members.pop(member.group_instance_id, None)
        if self.leader_id == member_id:
            self.leader_id = next(iter(self.members), None)
        self.pending_members.discard(member_id)
        self.pending_sync_members.discard(member_id)
        return member

    def update_member(
        self, member: Member, protocols: list[tuple[str, bytes]], callback: JoinCallback | None
    ) -> None:
        self.supported_protocols.subtract(member.protocol_names())
        self.supported_protocols += Counter()
        member.protocols = protocols
        self.supported_protocols.update(member.protocol_names())
        previous = member.join_callback
        if callback is not None and previous is None:
            self.num_members_awaiting_join += 1
        elif callback is None and previous is not None:
            self.num_members_awaiting_join -= 1
        member.join_callback = callback
        if previous is not None and callback is not None:
            # A retried JoinGroup (the client gave up on the first): answer the old one,
            # whose connection is most likely gone, rather than leave it waiting forever.
            _answer(previous, JoinResult(ErrorCode.rebalance_in_progress, member.member_id))

    def await_sync(self, member: Member, callback: SyncCallback) -> None:
        previous = member.sync_callback
        member.sync_callback = callback
        if previous is not None:
            _answer(previous, SyncResult(ErrorCode.rebalance_in_progress))

    def replace_static_member(self, instance_id: str, old_id: str, new_id: str) -> Member:
        member = self.members.pop(old_id)
        # Fence a duplicate still waiting on the old id.
        self.invoke_join_callback(member, JoinResult(ErrorCode.fenced_instance_id, old_id))
        self.invoke_sync_callback(member, SyncResult(ErrorCode.fenced_instance_id))
        member.member_id = new_id
        self.members[new_id] = member
        if self.leader_id == old_id:
            self.leader_id = new_id
        if old_id in self.pending_sync_members:
            self.pending_sync_members.discard(old_id)
            self.pending_sync_members.add(new_id)
        self.static_members[instance_id] = new_id
        return member

    def invoke_join_callback(self, member: Member, result: JoinResult) -> None:
        callback = member.join_callback
        if callback is None:
            return
        member.join_callback = None
        self.num_members_awaiting_join -= 1
        try:
            callback(result)
        except Exception:
            log.exception("JoinGroup callback of member %s failed", member.member_id)

    def invoke_sync_callback(self, member: Member, result: SyncResult) -> bool:
        callback = member.sync_callback
        if callback is None:
            return False
        member.sync_callback = None
        try:
            callback(result)
        except Exception:
            log.exception("SyncGroup callback of member %s failed", member.member_id)
        return True

    def has_all_members_joined(self) -> bool:
        return len(self.members) == self.num_members_awaiting_join and not self.pending_members

    def not_yet_rejoined(self) -> list[Member]:
        return [m for m in self.members.values() if not m.awaiting_join]

    def rebalance_timeout_ms(self) -> int:
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    def max_session_timeout_ms(self) -> int:
        return max((m.session_timeout_ms for m in self.members.values()), default=0)

    # ------------------------------------------------------------------ protocols
    def supports_protocols(self, protocol_type: str, protocols: set[str]) -> bool:
        if self.state == GroupState.EMPTY:
            return bool(protocol_type) and bool(protocols)
        return self.protocol_type == protocol_type and any(
            self.supported_protocols[p] == len(self.members) for p in protocols
        )

    def candidate_protocols(self) -> set[str]:
        n = len(self.members)
        return {p for p, count in self.supported_protocols.items() if count == n}

    def select_protocol(self) -> str:
        """The protocol every member supports with the most first-choice votes; ties go
        to the leader's preference (Kafka leaves them to hash order)."""
        if not self.members:
            raise AssertionError("cannot select a protocol for an empty group")
        candidates = self.candidate_protocols()
        votes = Counter(m.vote(candidates) for m in self.members.values())
        best = max(votes.values())
        tied = {p for p, v in votes.items() if v == best}
        leader = self.members.get(self.leader_id or "") or next(iter(self.members.values()))
        for name in leader.protocol_names():
            if name in tied:
                return name
        return sorted(tied)[0]

    def compute_subscribed_topics(self) -> set[str] | None:
        """Topics the consumer-protocol members subscribe to, None when unknown."""
        if self.protocol_type != CONSUMER_PROTOCOL_TYPE:
            return None
        if not self.members:
            return set()
        if self.protocol_name is None:
            return None
        topics: set[str] = set()
        try:
            for m in self.members.values():
                topics |= subscribed_topics(m.metadata(self.protocol_name))
        except (RecordFormatError, KeyError) as exc:
            log.warning(
                "Cannot parse the consumer subscriptions of group %s (%s): offsets of its "
                "topics are not protected from expiration",
                self.group_id,
                exc,
            )
            return None
        return topics

    def is_subscribed_to(self, topic: str) -> bool:
        return self.subscribed_topics is not None and topic in self.subscribed_topics

    def init_next_generation(self, now_ms: int) -> None:
        self.generation_id += 1
        if self.members:
            self.protocol_name = self.select_protocol()
            self.subscribed_topics = self.compute_subscribed_topics()
            self.transition_to(GroupState.COMPLETING_REBALANCE, now_ms)
        else:
            self.protocol_name = None
            self.subscribed_topics = self.compute_subscribed_topics()
            self.transition_to(GroupState.EMPTY, now_ms)
        self.pending_sync_members.clear()

    def maybe_elect_new_joined_leader(self) -> bool:
        """Keep a leader that rejoined, else promote any member that did."""
        if self.leader_id is None:
            return False
        leader = self.members.get(self.leader_id)
        if leader is not None and leader.awaiting_join:
            return True
        for member_id, member in self.members.items():
            if member.awaiting_join:
                self.leader_id = member_id
                return True
        return False

    def current_member_metadata(self) -> list[tuple[str, str | None, bytes]]:
        assert self.protocol_name is not None
        return [
            (m.member_id, m.group_instance_id, m.metadata(self.protocol_name))
            for m in self.members.values()
        ]

    # ------------------------------------------------------------------ validation
    def validate_member(self, member_id: str, instance_id: str | None) -> ErrorCode | None:
        """Kafka's ClassicGroup.validateMember: a static id must map to ``member_id``, and
        the member must be in the group."""
        if instance_id is not None:
            current = self.static_members.get(instance_id)
            if current is None:
                return ErrorCode.unknown_member_id
            if current != member_id:
                log.info(
                    "Member %s of group %s with group.instance.id %s is fenced by %s",
                    member_id,
                    self.group_id,
                    instance_id,
                    current,
                )
                return ErrorCode.fenced_instance_id
        if member_id not in self.members:
            return ErrorCode.unknown_member_id
        return None

    def validate_offset_commit(
        self,
        member_id: str,
        instance_id: str | None,
        generation_id: int,
        *,
        transactional: bool = False,
    ) -> None:
        """Kafka 4's ClassicGroup.validateOffsetCommit; raises KafkaError with the group
        error. Only CompletingRebalance refuses a commit of the current generation: in
        PreparingRebalance members commit their positions as they rejoin (eager clients
        do so before revoking, a leaving member before its LeaveGroup), and refusing them
        makes the next owner consume those records again. ``transactional``
        (TxnOffsetCommit): a commit without member id or generation is accepted whatever
        the group's state, and no state refuses it."""
        if self.state == GroupState.DEAD:
            raise KafkaError(f"group {self.group_id} is dead", ErrorCode.coordinator_not_available)
        if generation_id < 0 and self.state == GroupState.EMPTY:
            return  # a simple (non-member) commit to an empty group
        if generation_id >= 0 or member_id or instance_id is not None:
            error = self.validate_member(member_id, instance_id)
            if error is not None:
                raise KafkaError(f"member {member_id!r} of group {self.group_id}", error)
            if generation_id != self.generation_id:
                raise KafkaError(
                    f"generation {generation_id} is not the group's {self.generation_id}",
                    ErrorCode.illegal_generation,
                )
        elif self.state != GroupState.EMPTY and not transactional:
            raise KafkaError(
                "commits without a member id need an empty group", ErrorCode.unknown_member_id
            )
        if self.state == GroupState.COMPLETING_REBALANCE and not transactional:
            # The member has this generation from its JoinGroup answer but not yet its
            # assignment: REBALANCE_IN_PROGRESS lets the client finish the sync and retry.
            raise KafkaError(
                f"group {self.group_id} is awaiting its assignment",
                ErrorCode.rebalance_in_progress,
            )

    # ------------------------------------------------------------------ expiration
    def expiration_base(self) -> Callable[[OffsetAndMetadata], int] | None:
        """Kafka's offsetExpirationCondition: the timestamp retention counts from."""
        if self.protocol_type is not None:
            if self.state == GroupState.EMPTY:
                ts = self.state_timestamp
                return lambda o: ts if ts >= 0 else o.commit_timestamp
            if (
                self.protocol_type == CONSUMER_PROTOCOL_TYPE
                and self.subscribed_topics is not None
                and self.state == GroupState.STABLE
            ):
                return lambda o: o.commit_timestamp
            return None
        return lambda o: o.commit_timestamp

    def expired_offsets(self, now_ms: int, retention_ms: int) -> tuple[list[tuple[str, int]], bool]:
        """(partitions whose offsets expired, whether that is all of them)."""
        base = self.expiration_base()
        if base is None:
            return [], not self.offsets
        expired = []
        all_expired = True
        for tp, o in self.offsets.items():
            if self.is_subscribed_to(tp[0]):
                all_expired = False
                continue
            if o.expire_timestamp >= 0:
                gone = now_ms >= o.expire_timestamp
            else:
                gone = now_ms - base(o) >= retention_ms
            if gone:
                expired.append(tp)
            else:
                all_expired = False
        return expired, all_expired
