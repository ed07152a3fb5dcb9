"""The classic group coordinator: Kafka's rebalance protocol, offsets, and their records.

This follows Kafka's ``GroupCoordinator`` (the classic protocol as 4.x still serves it in
``GroupMetadataManager`` / ``OffsetMetadataManager``): the same states, transitions, error
codes and timers. Differences are of mechanism only:

- Kafka's purgatories become timers (``Scheduler.call_later``): the delayed join (with
  ``group.initial.rebalance.delay.ms`` for a group leaving Empty), the pending-sync
  deadline, each member's session expiration and each KIP-394 pending member's. Nothing
  polls; a JoinGroup or SyncGroup that must wait holds a callback the coordinator calls.
- Appends to ``__consumer_offsets`` complete before the call returns (the log write is a
  page-cache write on the loop), so Kafka's "store, then in the callback" steps run
  inline with the same checks.

Everything runs on one thread (the broker's event loop); the coordinator never blocks.
Groups live in the partitions of the offsets topic this broker leads: ``load`` replays a
partition into memory, ``unload`` fails the waiters of its groups with NOT_COORDINATOR.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pybroker.broker.groups.append_errors import map_append_error
from pybroker.broker.groups.consumer_coordinator import ClassicJoin, ConsumerGroupManager
from pybroker.broker.groups.consumer_group import ConsumerGroup
from pybroker.broker.groups.consumer_records import CONSUMER_RECORD_TYPES
from pybroker.broker.groups.group import (
    UNKNOWN_MEMBER_ID,
    ClassicGroup,
    GroupState,
    JoinCallback,
    JoinResult,
    Member,
    OffsetAndMetadata,
    SyncCallback,
    SyncResult,
)
from pybroker.broker.groups.records import (
    GroupMetadataKey,
    GroupMetadataValue,
    MemberMetadata,
    OffsetCommitKey,
    OffsetCommitValue,
    OtherKey,
    RecordFormatError,
    decode_group_metadata_value,
    decode_key,
    decode_offset_commit_value,
    encode_group_metadata_key,
    encode_group_metadata_value,
    encode_offset_commit_key,
    encode_offset_commit_value,
    java_string_length,
    partition_for,
)
from pybroker.broker.scheduling import Scheduler, TimerHandle
from pybroker.protocol.errors import ErrorCode, KafkaError

log = logging.getLogger(__name__)

OFFSETS_TOPIC = "__consumer_offsets"
# Kafka's classicGroupNewMemberJoinTimeoutMs: a new member must finish joining within it.
NEW_MEMBER_JOIN_TIMEOUT_MS = 5 * 60 * 1000

Record = tuple[bytes, bytes | None]


class GroupStore(Protocol):
    """Where the coordinator's records go: the partitions of ``__consumer_offsets``."""

    def append(self, partition: int, records: Sequence[Record]) -> None:
        """Append records as one batch; raises KafkaError as a produce would."""

    def read(self, partition: int) -> Iterable[tuple[bytes | None, bytes | None]]:
        """Every (key, value) of the partition in offset order."""


@dataclass(frozen=True, slots=True)
class CoordinatorConfig:
    offsets_topic_partitions: int = 50
    initial_rebalance_delay_ms: int = 3000
    min_session_timeout_ms: int = 6000
    max_session_timeout_ms: int = 1_800_000
    max_size: int = 2**31 - 1
    offsets_retention_ms: int = 7 * 24 * 3600 * 1000
    offsets_retention_check_interval_ms: int = 600_000
    offset_metadata_max_bytes: int = 4096

    @classmethod
    def from_broker(cls, config: Any) -> CoordinatorConfig:
        return cls(
            offsets_topic_partitions=config.offsets_topic_num_partitions,
            initial_rebalance_delay_ms=config.group_initial_rebalance_delay_ms,
            min_session_timeout_ms=config.group_min_session_timeout_ms,
            max_session_timeout_ms=config.group_max_session_timeout_ms,
            max_size=config.group_max_size,
            offsets_retention_ms=config.offsets_retention_minutes * 60_000,
            offsets_retention_check_interval_ms=config.offsets_retention_check_interval_ms,
            offset_metadata_max_bytes=config.offset_metadata_max_bytes,
        )


@dataclass(frozen=True, slots=True)
class CommitEntry:
    topic: str
    partition: int
    offset: int
    leader_epoch: int  # -1: none
    metadata: str | None


@dataclass(frozen=True, slots=True)
class ListedGroup:
    group_id: str
    protocol_type: str
    state: str
    group_type: str = "classic"


def _commit_error(code: ErrorCode) -> ErrorCode:
    """GroupMetadataManager's mapping of append errors for offset commits."""
    return map_append_error(code, ErrorCode.invalid_commit_offset_size)


def _group_store_error(code: ErrorCode) -> ErrorCode:
    """The same mapping for group metadata writes (too large is a server error there)."""
    return map_append_error(code, ErrorCode.unknown_server_error)


class GroupCoordinator:
    def __init__(
        self,
        config: CoordinatorConfig,
        store: GroupStore,
        scheduler: Scheduler,
        clock: Callable[[], int],
    ) -> None:
        self.config = config
        self.store = store
        self.scheduler = scheduler
        self.clock = clock
        self.groups: dict[str, ClassicGroup | ConsumerGroup] = {}
        self.owned: set[int] = set()
        self.topic_id: object | None = None
        self.num_partitions = config.offsets_topic_partitions
        self.active = True
        self._cleanup_timer: TimerHandle | None = None
        # TxnOffsetCommit offsets waiting for their transaction's marker:
        # producer id -> group -> (topic, partition) -> offset
        self.pending_txn_offsets: dict[int, dict[str, dict[tuple[str, int], OffsetAndMetadata]]]
        self.pending_txn_offsets = {}
        # KIP-848 consumer groups (they live in ``groups`` too, as ConsumerGroup).
        self.consumer = ConsumerGroupManager(self)

    # =================================================================== ownership
    def partition_for(self, group_id: str) -> int:
        return partition_for(group_id, self.num_partitions)

    def start(self) -> None:
        self._schedule_cleanup()

    def set_owned(
        self,
        partitions: set[int],
        topic_id: object | None = None,
        num_partitions: int | None = None,
    ) -> None:
        """Load the partitions this broker now leads, unload the ones it lost. A new
        ``topic_id`` (the offsets topic was recreated) or partition count starts over."""
        count = num_partitions or self.config.offsets_topic_partitions
        if topic_id != self.topic_id or count != self.num_partitions:
            for p in sorted(self.owned):
                self.unload(p)
            self.topic_id = topic_id
            self.num_partitions = count
        for p in sorted(self.owned - partitions):
            self.unload(p)
        for p in sorted(partitions - self.owned):
            try:
                self.load(p)
            except Exception:
                # As Kafka: the partition's groups stay unserved (NOT_COORDINATOR) rather
                # than served from a partial replay.
                log.exception("Failed to load %s-%d; its groups are not served", OFFSETS_TOPIC, p)
                for group_id in [g for g in self.groups if self.partition_for(g) == p]:
                    self._cancel_timers(self.groups.pop(group_id))

    def load(self, partition: int) -> None:
        """Rebuild the groups and offsets of one partition from its records."""
        metadata: dict[str, GroupMetadataValue] = {}
        offsets: dict[str, dict[tuple[str, int], OffsetAndMetadata]] = defaultdict(dict)
        # transactional offsets by producer id, until their marker (Kafka's replay of
        # pendingTransactionalOffsets and of end-transaction markers)
        pending: dict[int, dict[str, dict[tuple[str, int], OffsetAndMetadata]]] = {}
        consumer_records: list[tuple[bytes, bytes | None]] = []
        count = 0
        for key_bytes, value, producer_id, commit in self._read_entries(partition):
            count += 1
            if commit is not None:
                for group_id, done in pending.pop(producer_id, {}).items():
                    if commit:
                        offsets[group_id].update(done)
                continue
            if key_bytes is None:
                continue
            target = offsets
            if producer_id >= 0:
                target = pending.setdefault(producer_id, defaultdict(dict))
            try:
                key = decode_key(key_bytes)
                if isinstance(key, OffsetCommitKey):
                    tp = (key.topic, key.partition)
                    if value is None:
                        target[key.group].pop(tp, None)
                    else:
                        v = decode_offset_commit_value(value)
                        target[key.group][tp] = OffsetAndMetadata(
                            v.offset,
                            v.metadata,
                            v.commit_timestamp,
                            v.leader_epoch,
                            v.expire_timestamp,
                        )
                elif isinstance(key, GroupMetadataKey):
                    if value is None:
                        metadata.pop(key.group, None)
                    else:
                        metadata[key.group] = decode_group_metadata_value(value)
                elif isinstance(key, OtherKey) and key.record_type in CONSUMER_RECORD_TYPES:
                    consumer_records.append((bytes(key_bytes), value))
            except RecordFormatError as exc:
                log.warning(
                    "Skipping unreadable record in %s-%d: %s", OFFSETS_TOPIC, partition, exc
                )
        now = self.clock()
        loaded = 0
        for group_id in set(metadata) | {g for g, o in offsets.items() if o}:
            if self.partition_for(group_id) != partition:
                log.warning(
                    "Group %s found in %s-%d, which does not own it; ignoring",
                    group_id,
                    OFFSETS_TOPIC,
                    partition,
                )
                continue
            group = self._group_from_record(group_id, metadata.get(group_id), now)
            group.offsets = offsets.get(group_id, {})
            self.groups[group_id] = group
            for member in group.members.values():
                self._schedule_heartbeat(group, member, member.session_timeout_ms)
            loaded += 1
        self.consumer.replay_loaded(partition, consumer_records)
        self._load_pending_txn_offsets(partition, pending)
        self.owned.add(partition)
        if count:
            log.info(
                "Loaded %d group(s) from %d record(s) of %s-%d",
                loaded,
                count,
                OFFSETS_TOPIC,
                partition,
            )

    def _group_from_record(
        self, group_id: str, value: GroupMetadataValue | None, now: int
    ) -> ClassicGroup:
        group = ClassicGroup(group_id, now)
        if value is None:
            return group
        group.protocol_type = value.protocol_type or None
        group.generation_id = value.generation
        group.protocol_name = value.protocol
        group.state_timestamp = value.current_state_timestamp
        if value.members and value.protocol is not None:
            for m in value.members:
                member = Member(
                    member_id=m.member_id,
                    group_instance_id=m.group_instance_id,
                    client_id=m.client_id,
                    client_host=m.client_host,
                    rebalance_timeout_ms=(
                        m.rebalance_timeout if m.rebalance_timeout >= 0 else m.session_timeout
                    ),
                    session_timeout_ms=m.session_timeout,
                    protocol_type=value.protocol_type,
                    protocols=[(value.protocol, m.subscription)],
                    assignment=m.assignment,
                )
                group.add(member)
            group.leader_id = value.leader if value.leader in group.members else group.leader_id
            group.state = GroupState.STABLE
            group.previous_state = GroupState.COMPLETING_REBALANCE
        group.subscribed_topics = group.compute_subscribed_topics()
        return group

    def unload(self, partition: int) -> None:
        self.owned.discard(partition)
        doomed = [g for g in self.groups if self.partition_for(g) == partition]
        for group_id in doomed:
            group = self.groups.pop(group_id)
            if isinstance(group, ConsumerGroup):
                self.consumer.unload_group(group)
                continue
            self._fail_waiters(group, ErrorCode.not_coordinator)
            self._cancel_timers(group)
            group.transition_to(GroupState.DEAD, self.clock())
        if doomed:
            log.info("Unloaded %d group(s) of %s-%d", len(doomed), OFFSETS_TOPIC, partition)

    def shutdown(self) -> None:
        """Answer every waiting JoinGroup/SyncGroup (NOT_COORDINATOR) and stop timers."""
        self.active = False
        if self._cleanup_timer is not None:
            self._cleanup_timer.cancel()
            self._cleanup_timer = None
        for p in sorted(self.owned):
            self.unload(p)

    def _fail_waiters(self, group: ClassicGroup, error: ErrorCode) -> None:
        for member in list(group.members.values()):
            group.invoke_join_callback(member, JoinResult(error, member.member_id))
            group.invoke_sync_callback(member, SyncResult(error))

    def _cancel_timers(self, group: ClassicGroup | ConsumerGroup) -> None:
        if isinstance(group, ConsumerGroup):
            self.consumer.unload_group(group)
            return
        for member in group.members.values():
            self._cancel_heartbeat(member)
        for handle in group.pending_timers.values():
            handle.cancel()  # type: ignore[attr-defined]
        group.pending_timers.clear()
        self._cancel_join_timer(group)
        self._cancel_sync_timer(group)

    def check_group(self, group_id: str | None, allow_empty: bool = False) -> ErrorCode | None:
        """validateGroupStatus: INVALID_GROUP_ID, NOT_COORDINATOR or None."""
        if not self.active:
            return ErrorCode.coordinator_not_available
        if group_id is None or (group_id == "" and not allow_empty):
            return ErrorCode.invalid_group_id
        if self.partition_for(group_id) not in self.owned:
            return ErrorCode.not_coordinator
        return None

    # =================================================================== timers
    def _later(self, delay_ms: int, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        return self.scheduler.call_later(max(delay_ms, 0) / 1000, callback, *args)

    def _live(self, group: ClassicGroup) -> bool:
        return self.groups.get(group.group_id) is group and group.state != GroupState.DEAD

    def _schedule_heartbeat(self, group: ClassicGroup, member: Member, timeout_ms: int) -> None:
        self._cancel_heartbeat(member)
        member.heartbeat_timer = self._later(timeout_ms, self._expire_heartbeat, group, member)

    @staticmethod
    def _cancel_heartbeat(member: Member) -> None:
        if member.heartbeat_timer is not None:
            member.heartbeat_timer.cancel()  # type: ignore[attr-defined]
            member.heartbeat_timer = None

    def _expire_heartbeat(self, group: ClassicGroup, member: Member) -> None:
        member.heartbeat_timer = None
        if not self._live(group) or group.members.get(member.member_id) is not member:
            return
        if member.has_satisfied_heartbeat():
            return
        log.info(
            "Member %s in group %s has failed (no heartbeat within %d ms), removing it",
            member.member_id,
            group.group_id,
            member.session_timeout_ms,
        )
        self._remove_member_and_update_group(
            group, member, f"removing member {member.member_id} on heartbeat expiration"
        )

    def _expire_pending_member(self, group: ClassicGroup, member_id: str) -> None:
        group.pending_timers.pop(member_id, None)
        if not self._live(group) or member_id not in group.pending_members:
            return
        log.info(
            "Pending member %s in group %s has been removed after session timeout expiration",
            member_id,
            group.group_id,
        )
        self._remove_pending_member(group, member_id)

    def _remove_pending_member(self, group: ClassicGroup, member_id: str) -> None:
        group.remove(member_id)
        handle = group.pending_timers.pop(member_id, None)
        if handle is not None:
            handle.cancel()  # type: ignore[attr-defined]
        if group.state == GroupState.PREPARING_REBALANCE:
            self._try_complete_join(group)

    def _cancel_join_timer(self, group: ClassicGroup) -> None:
        if group.join_timer is not None:
            group.join_timer.cancel()  # type: ignore[attr-defined]
            group.join_timer = None

    def _cancel_sync_timer(self, group: ClassicGroup) -> None:
        if group.sync_timer is not None:
            group.sync_timer.cancel()  # type: ignore[attr-defined]
            group.sync_timer = None

    def _schedule_cleanup(self) -> None:
        self._cleanup_timer = self._later(
            self.config.offsets_retention_check_interval_ms, self._run_cleanup
        )

    def _run_cleanup(self) -> None:
        try:
            removed = self.cleanup_expired_offsets()
            if removed:
                log.info("Removed %d expired offset(s)", removed)
        except Exception:
            log.exception("Offset expiration failed")
        if self.active:
            self._schedule_cleanup()

    # =================================================================== join
    def join_group(
        self,
        group_id: str,
        member_id: str,
        group_instance_id: str | None,
        require_known_member_id: bool,
        supports_skip_assignment: bool,
        client_id: str,
        client_host: str,
        rebalance_timeout_ms: int,
        session_timeout_ms: int,
        protocol_type: str,
        protocols: list[tuple[str, bytes]],
        reason: str | None,
        callback: JoinCallback,
    ) -> None:
        error = self.check_group(group_id)
        if error is not None:
            callback(JoinResult(error, member_id))
            return
        if not (
            self.config.min_session_timeout_ms
            <= session_timeout_ms
            <= self.config.max_session_timeout_ms
        ):
            callback(JoinResult(ErrorCode.invalid_session_timeout, member_id))
            return
        unknown = member_id == UNKNOWN_MEMBER_ID
        group = self.groups.get(group_id)
        if isinstance(group, ConsumerGroup) and not group.is_empty():
            # Classic members live on in a non-empty consumer group (online migration).
            join = ClassicJoin(
                member_id,
                group_instance_id,
                require_known_member_id,
                client_id,
                client_host,
                rebalance_timeout_ms,
                session_timeout_ms,
                protocol_type,
                protocols,
            )
            callback(self.consumer.classic_join(group, join))
            return
        if isinstance(group, ConsumerGroup):
            # An empty consumer group gives way to a classic one.
            error = self.consumer.release_for_classic(group, member_id)
            if error is not None:
                callback(JoinResult(error, member_id))
                return
            group = self.groups.get(group_id)
        if group is None:
            if not unknown:
                callback(JoinResult(ErrorCode.unknown_member_id, member_id))
                return
            group = ClassicGroup(group_id, self.clock())
            try:
                self._append_group_metadata(group, {})
            except KafkaError as exc:
                log.warning("Failed to write empty metadata for group %s: %s", group_id, exc)
                callback(JoinResult(_group_store_error(exc.code), member_id))
                return
            self.groups[group_id] = group
        if not self._accept_joining_member(group, member_id):
            group.remove(member_id)
            callback(JoinResult(ErrorCode.group_max_size_reached, UNKNOWN_MEMBER_ID))
        elif unknown:
            self._join_new_member(
                group,
                group_instance_id,
                require_known_member_id,
                supports_skip_assignment,
                client_id,
                client_host,
                rebalance_timeout_ms,
                session_timeout_ms,
                protocol_type,
                protocols,
                reason,
                callback,
            )
        else:
            self._join_existing_member(
                group,
                member_id,
                group_instance_id,
                client_id,
                client_host,
                rebalance_timeout_ms,
                session_timeout_ms,
                protocol_type,
                protocols,
                reason,
                callback,
            )
        if group.state == GroupState.PREPARING_REBALANCE:
            self._try_complete_join(group)

    def _accept_joining_member(self, group: ClassicGroup, member_id: str) -> bool:
        max_size = self.config.max_size
        if group.is_state(GroupState.EMPTY, GroupState.DEAD):
            return True
        if group.state == GroupState.PREPARING_REBALANCE:
            member = group.members.get(member_id)
            return (
                member is not None and member.awaiting_join
            ) or group.num_members_awaiting_join < max_size
        return member_id in group.members or len(group.members) < max_size

    def _join_new_member(
        self,
        group: ClassicGroup,
        instance_id: str | None,
        require_known_member_id: bool,
        supports_skip_assignment: bool,
        client_id: str,
        client_host: str,
        rebalance_timeout_ms: int,
        session_timeout_ms: int,
        protocol_type: str,
        protocols: list[tuple[str, bytes]],
        reason: str | None,
        callback: JoinCallback,
    ) -> None:
        if group.state == GroupState.DEAD:
            callback(JoinResult(ErrorCode.coordinator_not_available, UNKNOWN_MEMBER_ID))
            return
        if not group.supports_protocols(protocol_type, {name for name, _ in protocols}):
            callback(JoinResult(ErrorCode.inconsistent_group_protocol, UNKNOWN_MEMBER_ID))
            return
        new_id = group.generate_member_id(client_id, instance_id)
        if instance_id is not None:
            old_id = group.static_member_id(instance_id)
            if old_id is not None:
                log.info(
                    "Static member with group.instance.id %s and unknown member id joins group "
                    "%s in %s state; replacing previously mapped member %s",
                    instance_id,
                    group.group_id,
                    group.state.value,
                    old_id,
                )
                self._update_static_member_and_rebalance(
                    group,
                    old_id,
                    new_id,
                    instance_id,
                    protocols,
                    rebalance_timeout_ms,
                    session_timeout_ms,
                    reason,
                    supports_skip_assignment,
                    callback,
                )
                return
        elif require_known_member_id:
            log.debug(
                "Dynamic member with unknown member id joins group %s in %s state; created "
                "member id %s and asked the member to rejoin with it",
                group.group_id,
                group.state.value,
                new_id,
            )
            group.pending_members.add(new_id)
            group.pending_timers[new_id] = self._later(
                session_timeout_ms, self._expire_pending_member, group, new_id
            )
            callback(JoinResult(ErrorCode.member_id_required, new_id))
            return
        self._add_member_and_rebalance(
            group,
            new_id,
            instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            protocol_type,
            protocols,
            reason,
            callback,
        )

    def _join_existing_member(
        self,
        group: ClassicGroup,
        member_id: str,
        instance_id: str | None,
        client_id: str,
        client_host: str,
        rebalance_timeout_ms: int,
        session_timeout_ms: int,
        protocol_type: str,
        protocols: list[tuple[str, bytes]],
        reason: str | None,
        callback: JoinCallback,
    ) -> None:
        if group.state == GroupState.DEAD:
            callback(JoinResult(ErrorCode.unknown_member_id, member_id))
            return
        if not group.supports_protocols(protocol_type, {name for name, _ in protocols}):
            callback(JoinResult(ErrorCode.inconsistent_group_protocol, member_id))
            return
        if member_id in group.pending_members:
            if instance_id is not None:
                # A pending member is always dynamic; a static id here is a client bug.
                callback(JoinResult(ErrorCode.unknown_member_id, member_id))
                return
            handle = group.pending_timers.pop(member_id, None)
            if handle is not None:
                handle.cancel()  # type: ignore[attr-defined]
            self._add_member_and_rebalance(
                group,
                member_id,
                None,
                client_id,
                client_host,
                rebalance_timeout_ms,
                session_timeout_ms,
                protocol_type,
                protocols,
                reason,
                callback,
            )
            return
        error = group.validate_member(member_id, instance_id)
        if error is not None:
            callback(JoinResult(error, member_id))
            return
        member = group.members[member_id]
        # Kafka keeps the timeouts of the latest JoinGroup.
        member.rebalance_timeout_ms = rebalance_timeout_ms
        member.session_timeout_ms = session_timeout_ms
        member.client_id = client_id
        member.client_host = client_host
        why = f"client reason: {reason or 'not provided'}"
        if group.state == GroupState.PREPARING_REBALANCE:
            self._update_member_and_rebalance(
                group,
                member,
                protocols,
                f"Member {member_id} joining group during PreparingRebalance; {why}",
                callback,
            )
        elif group.state == GroupState.COMPLETING_REBALANCE:
            if member.matches(protocols):
                # A retry of a JoinGroup whose answer the member missed.
                callback(
                    self._join_result(group, member_id, leader_view=group.is_leader(member_id))
                )
            else:
                self._update_member_and_rebalance(
                    group,
                    member,
                    protocols,
                    f"Updating metadata for member {member_id} during CompletingRebalance; {why}",
                    callback,
                )
        elif group.state == GroupState.STABLE:
            if group.is_leader(member_id):
                # A rejoining leader forces a rebalance (it may have seen metadata change).
                self._update_member_and_rebalance(
                    group,
                    member,
                    protocols,
                    f"Leader {member_id} re-joining group during Stable; {why}",
                    callback,
                )
            elif not member.matches(protocols):
                self._update_member_and_rebalance(
                    group,
                    member,
                    protocols,
                    f"Updating metadata for member {member_id} during Stable; {why}",
                    callback,
                )
            else:
                callback(self._join_result(group, member_id, leader_view=False))
        else:  # Empty
            log.warning(
                "Attempt to add rejoining member %s of group %s in unexpected state %s",
                member_id,
                group.group_id,
                group.state.value,
            )
            callback(JoinResult(ErrorCode.unknown_member_id, member_id))

    def _join_result(
        self,
        group: ClassicGroup,
        member_id: str,
        leader_view: bool,
        leader: str | None = None,
        skip_assignment: bool = False,
    ) -> JoinResult:
        return JoinResult(
            ErrorCode.none,
            member_id,
            group.generation_id,
            group.protocol_type,
            group.protocol_name,
            (group.leader_id or "") if leader is None else leader,
            skip_assignment,
            group.current_member_metadata() if leader_view else [],
        )

    def _add_member_and_rebalance(
        self,
        group: ClassicGroup,
        member_id: str,
        instance_id: str | None,
        client_id: str,
        client_host: str,
        rebalance_timeout_ms: int,
        session_timeout_ms: int,
        protocol_type: str,
        protocols: list[tuple[str, bytes]],
        reason: str | None,
        callback: JoinCallback,
    ) -> None:
        member = Member(
            member_id,
            instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            protocol_type,
            protocols,
        )
        member.is_new = True
        if (
            group.state == GroupState.PREPARING_REBALANCE
            and group.previous_state == GroupState.EMPTY
        ):
            group.new_member_added = True  # lets the initial delay stretch
        group.add(member, callback)
        # A new member cannot heartbeat until it has its id, and its socket is muted while
        # it waits: expire it if it never completes the join (it will simply retry).
        self._schedule_heartbeat(group, member, NEW_MEMBER_JOIN_TIMEOUT_MS)
        self._maybe_prepare_rebalance(
            group,
            f"Adding new member {member_id} with group instance id {instance_id}; client reason: "
            f"{reason or 'not provided'}",
        )

    def _update_member_and_rebalance(
        self,
        group: ClassicGroup,
        member: Member,
        protocols: list[tuple[str, bytes]],
        reason: str,
        callback: JoinCallback,
    ) -> None:
        group.update_member(member, protocols, callback)
        self._maybe_prepare_rebalance(group, reason)

    def _update_static_member_and_rebalance(
        self,
        group: ClassicGroup,
        old_id: str,
        new_id: str,
        instance_id: str,
        protocols: list[tuple[str, bytes]],
        rebalance_timeout_ms: int,
        session_timeout_ms: int,
        reason: str | None,
        supports_skip_assignment: bool,
        callback: JoinCallback,
    ) -> None:
        current_leader = group.leader_id
        member = group.replace_static_member(instance_id, old_id, new_id)
        old_protocols = member.protocols
        old_timeouts = (member.rebalance_timeout_ms, member.session_timeout_ms)
        member.rebalance_timeout_ms = rebalance_timeout_ms
        member.session_timeout_ms = session_timeout_ms
        self._schedule_heartbeat(group, member, member.session_timeout_ms)
        group.update_member(member, protocols, callback)
        why = f"client reason: {reason or 'not provided'}"
        if group.state == GroupState.STABLE:
            if group.protocol_name == group.select_protocol():
                log.info(
                    "Static member %s of group %s rejoined with id %s without changing the "
                    "selected protocol: no rebalance",
                    instance_id,
                    group.group_id,
                    new_id,
                )
                try:
                    self._append_group_metadata(
                        group, {m.member_id: m.assignment for m in group.members.values()}
                    )
                except KafkaError as exc:
                    log.warning("Failed to persist metadata for group %s: %s", group.group_id, exc)
                    group.update_member(member, old_protocols, None)
                    member.rebalance_timeout_ms, member.session_timeout_ms = old_timeouts
                    restored = group.replace_static_member(instance_id, new_id, old_id)
                    self._schedule_heartbeat(group, restored, restored.session_timeout_ms)
                    callback(
                        JoinResult(
                            _group_store_error(exc.code),
                            UNKNOWN_MEMBER_ID,
                            group.generation_id,
                            group.protocol_type,
                            group.protocol_name,
                            current_leader or "",
                        )
                    )
                    return
                if supports_skip_assignment:
                    # JoinGroup v9+: the leader learns it leads but keeps the assignment.
                    is_leader = group.is_leader(new_id)
                    group.invoke_join_callback(
                        member,
                        self._join_result(
                            group, new_id, leader_view=is_leader, skip_assignment=is_leader
                        ),
                    )
                else:
                    # Older clients: answer with the old leader id so a rejoining leader
                    # does not run a trivial assignment a Stable group would not spread.
                    group.invoke_join_callback(
                        member,
                        self._join_result(
                            group, new_id, leader_view=False, leader=current_leader or ""
                        ),
                    )
            else:
                self._maybe_prepare_rebalance(
                    group,
                    f"Group's selected protocol will change because static member {new_id} "
                    f"with instance id {instance_id} joined with a change of protocol; {why}",
                )
        elif group.state == GroupState.COMPLETING_REBALANCE:
            # The leader may have assigned to the old id: start over.
            self._prepare_rebalance(
                group,
                f"Updating metadata for static member {new_id} with instance id "
                f"{instance_id}; {why}",
            )
        # PreparingRebalance: the member now waits for the join like everyone else.

    def _maybe_prepare_rebalance(self, group: ClassicGroup, reason: str) -> None:
        if group.can_rebalance():
            self._prepare_rebalance(group, reason)

    def _prepare_rebalance(self, group: ClassicGroup, reason: str) -> None:
        if group.state == GroupState.COMPLETING_REBALANCE:
            self._reset_and_propagate_assignment_error(group, ErrorCode.rebalance_in_progress)
        self._cancel_sync_timer(group)
        self._cancel_join_timer(group)
        was_empty = group.state == GroupState.EMPTY
        group.transition_to(GroupState.PREPARING_REBALANCE, self.clock())
        log.info(
            "Preparing to rebalance group %s in state PreparingRebalance with old generation "
            "%d (%s-%d) (reason: %s)",
            group.group_id,
            group.generation_id,
            OFFSETS_TOPIC,
            self.partition_for(group.group_id),
            reason,
        )
        if was_empty:
            delay = self.config.initial_rebalance_delay_ms
            self._start_initial_join(group, delay, max(group.rebalance_timeout_ms() - delay, 0))
        else:
            self._start_join(group)

    def _start_initial_join(self, group: ClassicGroup, delay_ms: int, remaining_ms: int) -> None:
        group.join_initial = True
        group.join_delay_ms = delay_ms
        group.join_remaining_ms = remaining_ms
        group.join_timer = self._later(delay_ms, self._on_initial_join_timer, group)

    def _on_initial_join_timer(self, group: ClassicGroup) -> None:
        group.join_timer = None
        if not self._live(group) or group.state != GroupState.PREPARING_REBALANCE:
            return
        if group.new_member_added and group.join_remaining_ms != 0:
            group.new_member_added = False
            delay = min(self.config.initial_rebalance_delay_ms, group.join_remaining_ms)
            remaining = max(group.join_remaining_ms - group.join_delay_ms, 0)
            self._start_initial_join(group, delay, remaining)
        else:
            self._complete_join(group)

    def _start_join(self, group: ClassicGroup) -> None:
        group.join_initial = False
        group.join_timer = self._later(group.rebalance_timeout_ms(), self._on_join_timer, group)
        self._try_complete_join(group)

    def _on_join_timer(self, group: ClassicGroup) -> None:
        group.join_timer = None
        if self._live(group) and group.state == GroupState.PREPARING_REBALANCE:
            self._complete_join(group)

    def _try_complete_join(self, group: ClassicGroup) -> None:
        if (
            group.join_timer is not None
            and not group.join_initial
            and group.state == GroupState.PREPARING_REBALANCE
            and group.has_all_members_joined()
        ):
            self._complete_join(group)

    def _complete_join(self, group: ClassicGroup) -> None:
        self._cancel_join_timer(group)
        gone = [m for m in group.not_yet_rejoined() if not m.is_static]
        if gone:
            log.info(
                "Group %s removed dynamic members who haven't joined: %s",
                group.group_id,
                [m.member_id for m in gone],
            )
            for m in gone:
                group.remove(m.member_id)
                self._cancel_heartbeat(m)
        if group.state == GroupState.DEAD:
            return
        if not group.maybe_elect_new_joined_leader() and group.members:
            # Only static members that have not rejoined are left: wait for them to rejoin
            # or for their sessions to expire.
            log.error(
                "Group %s could not complete rebalance because no members rejoined",
                group.group_id,
            )
            self._start_join(group)
            return
        group.init_next_generation(self.clock())
        if group.state == GroupState.EMPTY:
            log.info(
                "Group %s with generation %d is now empty (%s-%d)",
                group.group_id,
                group.generation_id,
                OFFSETS_TOPIC,
                self.partition_for(group.group_id),
            )
            try:
                self._append_group_metadata(group, {})
            except KafkaError as exc:
                log.warning("Failed to write empty metadata for group %s: %s", group.group_id, exc)
            return
        log.info(
            "Stabilized group %s generation %d (%s-%d) with %d members",
            group.group_id,
            group.generation_id,
            OFFSETS_TOPIC,
            self.partition_for(group.group_id),
            len(group.members),
        )
        for member in list(group.members.values()):
            result = self._join_result(
                group, member.member_id, leader_view=group.is_leader(member.member_id)
            )
            group.invoke_join_callback(member, result)
            self._schedule_heartbeat(group, member, member.session_timeout_ms)
            member.is_new = False
            group.pending_sync_members.add(member.member_id)
        self._schedule_pending_sync(group)

    # =================================================================== sync
    def _schedule_pending_sync(self, group: ClassicGroup) -> None:
        self._cancel_sync_timer(group)
        if group.state == GroupState.COMPLETING_REBALANCE:
            group.sync_timer = self._later(
                group.rebalance_timeout_ms(),
                self._expire_pending_sync,
                group,
                group.generation_id,
            )

    def _remove_pending_sync_member(self, group: ClassicGroup, member_id: str) -> None:
        group.pending_sync_members.discard(member_id)
        if not group.pending_sync_members:
            self._cancel_sync_timer(group)

    def _expire_pending_sync(self, group: ClassicGroup, generation_id: int) -> None:
        group.sync_timer = None
        if not self._live(group) or generation_id != group.generation_id:
            return
        if not group.is_state(GroupState.COMPLETING_REBALANCE, GroupState.STABLE):
            return
        pending = sorted(group.pending_sync_members)
        if not pending:
            return
        for member_id in pending:
            member = group.remove(member_id)
            if member is not None:
                self._cancel_heartbeat(member)
        log.info(
            "Group %s removed members who haven't sent their sync request: %s",
            group.group_id,
            pending,
        )
        self._prepare_rebalance(group, f"Removing {pending} on pending sync request expiration")

    def sync_group(
        self,
        group_id: str,
        generation_id: int,
        member_id: str,
        protocol_type: str | None,
        protocol_name: str | None,
        group_instance_id: str | None,
        assignments: dict[str, bytes],
        callback: SyncCallback,
    ) -> None:
        error = self.check_group(group_id)
        if error is not None:
            callback(SyncResult(error))
            return
        group = self.groups.get(group_id)
        if isinstance(group, ConsumerGroup):
            callback(
                self.consumer.classic_sync(
                    group, member_id, group_instance_id, generation_id, protocol_type, protocol_name
                )
            )
            return
        if group is None:
            callback(SyncResult(ErrorCode.unknown_member_id))
            return
        if group.state == GroupState.DEAD:
            callback(SyncResult(ErrorCode.coordinator_not_available))
            return
        error = group.validate_member(member_id, group_instance_id)
        if error is None and generation_id != group.generation_id:
            error = ErrorCode.illegal_generation
        if error is None and (
            (protocol_type is not None and protocol_type != group.protocol_type)
            or (protocol_name is not None and protocol_name != group.protocol_name)
        ):
            error = ErrorCode.inconsistent_group_protocol
        if error is not None:
            callback(SyncResult(error))
            return
        if group.state == GroupState.EMPTY:
            callback(SyncResult(ErrorCode.unknown_member_id))
        elif group.state == GroupState.PREPARING_REBALANCE:
            callback(SyncResult(ErrorCode.rebalance_in_progress))
        elif group.state == GroupState.COMPLETING_REBALANCE:
            member = group.members[member_id]
            group.await_sync(member, callback)
            self._remove_pending_sync_member(group, member_id)
            if group.is_leader(member_id):
                self._complete_sync(group, generation_id, member_id, assignments)
        else:  # Stable
            self._remove_pending_sync_member(group, member_id)
            member = group.members[member_id]
            callback(
                SyncResult(
                    ErrorCode.none, group.protocol_type, group.protocol_name, member.assignment
                )
            )
            self._schedule_heartbeat(group, member, member.session_timeout_ms)

    def _complete_sync(
        self,
        group: ClassicGroup,
        generation_id: int,
        leader_id: str,
        assignments: dict[str, bytes],
    ) -> None:
        log.info(
            "Assignment received from leader %s for group %s for generation %d. The group "
            "has %d members, %d of which are static.",
            leader_id,
            group.group_id,
            generation_id,
            len(group.members),
            len(group.static_members),
        )
        missing = [m for m in group.members if m not in assignments]
        if missing:
            log.warning(
                "Setting empty assignments for members %s of %s for generation %d",
                missing,
                group.group_id,
                generation_id,
            )
        assignment = {m: assignments.get(m, b"") for m in group.members}
        error: ErrorCode | None = None
        try:
            self._append_group_metadata(group, assignment)
        except KafkaError as exc:
            error = _group_store_error(exc.code)
        if group.state != GroupState.COMPLETING_REBALANCE or generation_id != group.generation_id:
            return
        if error is not None:
            self._reset_and_propagate_assignment_error(group, error)
            self._maybe_prepare_rebalance(
                group, f"Error when storing group assignment during SyncGroup (member: {leader_id})"
            )
            return
        for member in group.members.values():
            member.assignment = assignment[member.member_id]
        self._propagate_assignment(group, ErrorCode.none)
        group.transition_to(GroupState.STABLE, self.clock())

    def _reset_and_propagate_assignment_error(self, group: ClassicGroup, error: ErrorCode) -> None:
        for member in group.members.values():
            member.assignment = b""
        self._propagate_assignment(group, error)

    def _propagate_assignment(self, group: ClassicGroup, error: ErrorCode) -> None:
        ok = error == ErrorCode.none
        for member in list(group.members.values()):
            result = SyncResult(
                error,
                group.protocol_type if ok else None,
                group.protocol_name if ok else None,
                member.assignment,
            )
            if group.invoke_sync_callback(member, result):
                self._schedule_heartbeat(group, member, member.session_timeout_ms)

    # =================================================================== heartbeat, leave
    def heartbeat(
        self, group_id: str, member_id: str, group_instance_id: str | None, generation_id: int
    ) -> ErrorCode:
        error = self.check_group(group_id)
        if error is not None:
            return ErrorCode.none if error == ErrorCode.coordinator_load_in_progress else error
        group = self.groups.get(group_id)
        if isinstance(group, ConsumerGroup):
            return self.consumer.classic_heartbeat(
                group, member_id, group_instance_id, generation_id
            )
        if group is None:
            return ErrorCode.unknown_member_id
        if group.state == GroupState.DEAD:
            return ErrorCode.coordinator_not_available
        error = group.validate_member(member_id, group_instance_id)
        if error is not None:
            return error
        if generation_id != group.generation_id:
            return ErrorCode.illegal_generation
        if group.state == GroupState.EMPTY:
            return ErrorCode.unknown_member_id
        member = group.members[member_id]
        self._schedule_heartbeat(group, member, member.session_timeout_ms)
        if group.state == GroupState.PREPARING_REBALANCE:
            return ErrorCode.rebalance_in_progress
        return ErrorCode.none

    def leave_group(
        self, group_id: str, leaving: Sequence[tuple[str, str | None, str | None]]
    ) -> tuple[ErrorCode, list[ErrorCode]]:
        """(top-level error, one error per (member_id, group_instance_id, reason))."""
        error = self.check_group(group_id)
        if error is not None:
            return error, []
        group = self.groups.get(group_id)
        if group is None or group.state == GroupState.DEAD:
            # Kafka 4.x answers UNKNOWN_MEMBER_ID for every member of a group it does not
            # know (the top-level error stays NONE; v0-2 carry the member's error up).
            return ErrorCode.none, [ErrorCode.unknown_member_id] * len(leaving)
        if isinstance(group, ConsumerGroup):
            return ErrorCode.none, self.consumer.classic_leave(group, leaving)
        errors = []
        for member_id, instance_id, reason in leaving:
            why = reason or "not provided"
            if member_id == UNKNOWN_MEMBER_ID:
                # Administrative removal by group.instance.id (KIP-345).
                current = group.static_member_id(instance_id) if instance_id is not None else None
                if current is None:
                    errors.append(ErrorCode.unknown_member_id)
                else:
                    self._remove_current_member(group, current, why)
                    errors.append(ErrorCode.none)
            elif member_id in group.pending_members:
                self._remove_pending_member(group, member_id)
                log.info(
                    "Pending member %s has left group %s through explicit LeaveGroup; client "
                    "reason: %s",
                    member_id,
                    group_id,
                    why,
                )
                errors.append(ErrorCode.none)
            else:
                error = group.validate_member(member_id, instance_id)
                if error is None:
                    self._remove_current_member(group, member_id, why)
                    errors.append(ErrorCode.none)
                else:
                    errors.append(error)
        return ErrorCode.none, errors

    def _remove_current_member(self, group: ClassicGroup, member_id: str, reason: str) -> None:
        member = group.members[member_id]
        self._cancel_heartbeat(member)
        self._remove_member_and_update_group(
            group, member, f"Removing member {member_id} on LeaveGroup; client reason: {reason}"
        )
        log.info(
            "Member %s has left group %s through explicit LeaveGroup; client reason: %s",
            member_id,
            group.group_id,
            reason,
        )

    def _remove_member_and_update_group(
        self, group: ClassicGroup, member: Member, reason: str
    ) -> None:
        # A new member may still wait in JoinGroup: answer it so it retries.
        group.invoke_join_callback(
            member, JoinResult(ErrorCode.unknown_member_id, UNKNOWN_MEMBER_ID)
        )
        group.remove(member.member_id)
        self._cancel_heartbeat(member)
        if group.is_state(GroupState.STABLE, GroupState.COMPLETING_REBALANCE):
            self._maybe_prepare_rebalance(group, reason)
        elif group.state == GroupState.PREPARING_REBALANCE:
            self._try_complete_join(group)

    # =================================================================== offsets
    def commit_offsets(
        self,
        group_id: str,
        member_id: str,
        group_instance_id: str | None,
        generation_id: int,
        entries: Sequence[CommitEntry],
        api_version: int,
        retention_ms: int = -1,
    ) -> list[ErrorCode]:
        """One error per entry. Group-level failures give every entry the group's error."""
        error = self.check_group(group_id)
        if error is not None:
            return [error] * len(entries)
        group = self.groups.get(group_id)
        created = False
        if group is None or group.state == GroupState.DEAD:
            if generation_id >= 0:
                # v9+ names the problem; older clients expect ILLEGAL_GENERATION.
                code = ErrorCode.illegal_generation
                if api_version >= 9:
                    code = ErrorCode.group_id_not_found
                return [code] * len(entries)
            log.info("Creating a simple consumer group %s via manual offset commit", group_id)
            group = ClassicGroup(group_id, self.clock())
            self.groups[group_id] = group
            created = True
        try:
            if isinstance(group, ConsumerGroup):
                group.validate_offset_commit(
                    member_id, group_instance_id, generation_id, api_version=api_version
                )
            else:
                group.validate_offset_commit(member_id, group_instance_id, generation_id)
        except KafkaError as exc:
            return [exc.code] * len(entries)
        member = group.members.get(member_id) if isinstance(group, ClassicGroup) else None
        if member is not None and group.state in (
            GroupState.STABLE,
            GroupState.PREPARING_REBALANCE,
        ):
            # Kafka's OffsetMetadataManager.commitOffset: a classic member's commit keeps
            # its session alive, as a heartbeat does (a member committing before it
            # rejoins is not expired meanwhile).
            self._schedule_heartbeat(group, member, member.session_timeout_ms)
        now = self.clock()
        errors: list[ErrorCode] = []
        records: list[Record] = []
        staged: list[tuple[tuple[str, int], OffsetAndMetadata]] = []
        for e in entries:
            metadata = e.metadata if e.metadata is not None else ""
            if java_string_length(metadata) > self.config.offset_metadata_max_bytes:
                errors.append(ErrorCode.offset_metadata_too_large)
                continue
            om = OffsetAndMetadata(
                e.offset,
                metadata,
                now,
                e.leader_epoch if e.leader_epoch >= 0 else -1,
                now + retention_ms if retention_ms >= 0 else -1,
            )
            records.append(
                (
                    encode_offset_commit_key(group_id, e.topic, e.partition),
                    encode_offset_commit_value(
                        OffsetCommitValue(
                            om.offset,
                            om.metadata,
                            om.commit_timestamp,
                            om.leader_epoch,
                            om.expire_timestamp,
                        )
                    ),
                )
            )
            staged.append(((e.topic, e.partition), om))
            errors.append(ErrorCode.none)
        if records:
            try:
                self.store.append(self.partition_for(group_id), records)
            except KafkaError as exc:
                code = _commit_error(exc.code)
                log.warning("Offset commit of group %s failed: %s", group_id, exc)
                errors = [code if err == ErrorCode.none else err for err in errors]
                staged = []
        for tp, om in staged:
            group.offsets[tp] = om
        if created and not group.offsets:
            del self.groups[group_id]
        return errors

    def fetch_offsets(
        self, group_id: str, partitions: Sequence[tuple[str, Sequence[int]]] | None
    ) -> tuple[ErrorCode, list[tuple[str, list[tuple[int, OffsetAndMetadata | None]]]]]:
        """(group error, [(topic, [(partition, committed or None)])]); all committed
        offsets when ``partitions`` is None."""
        error = self.check_group(group_id)
        if error is not None:
            return error, []
        group = self.groups.get(group_id)
        offsets = group.offsets if group is not None and group.state != GroupState.DEAD else {}
        if partitions is None:
            by_topic: dict[str, list[tuple[int, OffsetAndMetadata | None]]] = defaultdict(list)
            for (topic, p), om in sorted(offsets.items()):
                by_topic[topic].append((p, om))
            return ErrorCode.none, list(by_topic.items())
        return ErrorCode.none, [
            (topic, [(p, offsets.get((topic, p))) for p in parts]) for topic, parts in partitions
        ]

    def delete_offsets(
        self, group_id: str, topics: Sequence[tuple[str, Sequence[int]]]
    ) -> tuple[ErrorCode, list[tuple[str, list[tuple[int, ErrorCode]]]]]:
        """OffsetDelete (KIP-496): a group error, or per-partition errors."""
        error = self.check_group(group_id)
        if error is not None:
            return error, []
        group = self.groups.get(group_id)
        if group is None or group.state == GroupState.DEAD:
            return ErrorCode.group_id_not_found, []
        if group.state != GroupState.EMPTY and group.protocol_type != "consumer":
            return ErrorCode.non_empty_group, []
        records: list[Record] = []
        out: list[tuple[str, list[tuple[int, ErrorCode]]]] = []
        doomed: list[tuple[str, int]] = []
        for topic, parts in topics:
            if group.state != GroupState.EMPTY and group.is_subscribed_to(topic):
                out.append((topic, [(p, ErrorCode.group_subscribed_to_topic) for p in parts]))
                continue
            for p in parts:
                if (topic, p) in group.offsets:
                    records.append((encode_offset_commit_key(group_id, topic, p), None))
                    doomed.append((topic, p))
            out.append((topic, [(p, ErrorCode.none) for p in parts]))
        if records:
            try:
                self.store.append(self.partition_for(group_id), records)
            except KafkaError as exc:
                return _commit_error(exc.code), []
        for tp in doomed:
            group.offsets.pop(tp, None)
        return ErrorCode.none, out

    # =================================================================== admin
    def list_groups(
        self, states: Sequence[str] = (), types: Sequence[str] = ()
    ) -> tuple[ErrorCode, list[ListedGroup]]:
        if not self.active:
            return ErrorCode.coordinator_not_available, []
        wanted_states = {s.lower() for s in states}
        wanted_types = {t.lower() for t in types}
        out = []
        for group in self.groups.values():
            if group.state == GroupState.DEAD:
                continue
            group_type = "consumer" if isinstance(group, ConsumerGroup) else "classic"
            if wanted_types and group_type not in wanted_types:
                continue
            if wanted_states and group.state.value.lower() not in wanted_states:
                continue
            out.append(
                ListedGroup(
                    group.group_id, group.protocol_type or "", group.state.value, group_type
                )
            )
        return ErrorCode.none, sorted(out, key=lambda g: g.group_id)

    def describe_group(self, group_id: str) -> tuple[ErrorCode, ClassicGroup | None]:
        """(error, group); (GROUP_ID_NOT_FOUND, None) for a group that does not exist."""
        error = self.check_group(group_id, allow_empty=True)
        if error is not None:
            return error, None
        group = self.groups.get(group_id)
        if group is None or group.state == GroupState.DEAD or isinstance(group, ConsumerGroup):
            # Kafka 4.0 describes a consumer group as "not a classic group" here.
            return ErrorCode.group_id_not_found, None
        return ErrorCode.none, group

    def delete_groups(self, group_ids: Sequence[str]) -> dict[str, ErrorCode]:
        results: dict[str, ErrorCode] = {}
        for group_id in group_ids:
            error = self.check_group(group_id, allow_empty=True)
            if error is not None:
                results[group_id] = error
                continue
            group = self.groups.get(group_id)
            if group is None or group.state == GroupState.DEAD:
                results[group_id] = ErrorCode.group_id_not_found
            elif isinstance(group, ConsumerGroup):
                results[group_id] = self.consumer.delete_group(group)
            elif group.state != GroupState.EMPTY:
                results[group_id] = ErrorCode.non_empty_group
            else:
                records: list[Record] = [
                    (encode_offset_commit_key(group_id, t, p), None) for t, p in group.offsets
                ]
                records.append((encode_group_metadata_key(group_id), None))
                try:
                    self.store.append(self.partition_for(group_id), records)
                except KafkaError as exc:
                    results[group_id] = _group_store_error(exc.code)
                    continue
                self._drop_group(group)
                results[group_id] = ErrorCode.none
                log.info("Deleted group %s and %d offset(s)", group_id, len(records) - 1)
        return results

    def _drop_group(self, group: ClassicGroup) -> None:
        self._cancel_timers(group)
        group.transition_to(GroupState.DEAD, self.clock())
        group.offsets.clear()
        self.groups.pop(group.group_id, None)

    def cleanup_expired_offsets(self) -> int:
        """Expire offsets per offsets.retention.minutes; delete empty groups left with
        none (Kafka's cleanupGroupMetadata). Returns the number of offsets removed."""
        now = self.clock()
        by_partition: dict[int, list[tuple[ClassicGroup, list[tuple[str, int]], bool]]] = (
            defaultdict(list)
        )
        for group in list(self.groups.values()):
            if group.state == GroupState.DEAD:
                continue
            expired, all_expired = group.expired_offsets(now, self.config.offsets_retention_ms)
            delete_group = all_expired and (
                group.is_empty()
                if isinstance(group, ConsumerGroup)
                else group.state == GroupState.EMPTY
            )
            if expired or delete_group:
                by_partition[self.partition_for(group.group_id)].append(
                    (group, expired, delete_group)
                )
        removed = 0
        for partition, work in by_partition.items():
            records: list[Record] = []
            for group, expired, delete_group in work:
                records += [
                    (encode_offset_commit_key(group.group_id, t, p), None) for t, p in expired
                ]
                if delete_group and isinstance(group, ConsumerGroup):
                    records += self.consumer.tombstones(group)
                elif delete_group:
                    records.append((encode_group_metadata_key(group.group_id), None))
            try:
                self.store.append(partition, records)
            except KafkaError as exc:
                log.warning("Cannot expire offsets in %s-%d: %s", OFFSETS_TOPIC, partition, exc)
                continue
            for group, expired, delete_group in work:
                for tp in expired:
                    group.offsets.pop(tp, None)
                removed += len(expired)
                if delete_group:
                    log.info("Group %s transitioned to Dead: empty with no offsets", group.group_id)
                    if isinstance(group, ConsumerGroup):
                        self.consumer.forget(group)
                    else:
                        self._drop_group(group)
        return removed

    # =================================================================== records
    def _append_group_metadata(self, group: ClassicGroup, assignment: dict[str, bytes]) -> None:
        self.store.append(
            self.partition_for(group.group_id), [self.group_metadata_record(group, assignment)]
        )

    def on_downgraded(self, group: ClassicGroup, rebalance: bool) -> None:
        """A consumer group became this classic group: its members' sessions start, and
        (after a member left) a rebalance makes them rejoin as a classic group."""
        for member in group.members.values():
            self._schedule_heartbeat(group, member, member.session_timeout_ms)
        if rebalance:
            self._prepare_rebalance(
                group, f"Downgrade group {group.group_id} from consumer to classic."
            )

    @staticmethod
    def group_metadata_record(
        group: ClassicGroup, assignment: dict[str, bytes]
    ) -> tuple[bytes, bytes]:
        """The GroupMetadata record (key, value) of a classic group and its assignment."""
        members = []
        if group.members:
            assert group.protocol_name is not None
            for m in group.members.values():
                members.append(
                    MemberMetadata(
                        member_id=m.member_id,
                        client_id=m.client_id,
                        client_host=m.client_host,
                        session_timeout=m.session_timeout_ms,
                        subscription=m.metadata(group.protocol_name),
                        assignment=assignment.get(m.member_id, b""),
                        rebalance_timeout=m.rebalance_timeout_ms,
                        group_instance_id=m.group_instance_id,
                    )
                )
        value = GroupMetadataValue(
            protocol_type=group.protocol_type or "",
            generation=group.generation_id,
            protocol=group.protocol_name,
            leader=group.leader_id,
            current_state_timestamp=group.state_timestamp,
            members=tuple(members),
        )
        return encode_group_metadata_key(group.group_id), encode_group_metadata_value(value)

    # =================================================================== transactions
    def _read_entries(
        self, partition: int
    ) -> Iterable[tuple[bytes | None, bytes | None, int, bool | None]]:
        """(key, value, producer id of a transactional batch or -1, None) per record and
        (None, None, producer id, committed) per transaction marker, in log order."""
        read_entries = getattr(self.store, "read_entries", None)
        if read_entries is not None:
            yield from read_entries(partition)
            return
        for key, value in self.store.read(partition):
            yield key, value, -1, None

    def _load_pending_txn_offsets(
        self,
        partition: int,
        pending: dict[int, dict[str, dict[tuple[str, int], OffsetAndMetadata]]],
    ) -> None:
        """Open transactions of a loaded partition keep their offsets pending."""
        for by_group in self.pending_txn_offsets.values():
            for group_id in [g for g in by_group if self.partition_for(g) == partition]:
                del by_group[group_id]
        for producer_id, by_group in pending.items():
            for group_id, offsets in by_group.items():
                if offsets and self.partition_for(group_id) == partition:
                    self.pending_txn_offsets.setdefault(producer_id, {})[group_id] = dict(offsets)
        self.pending_txn_offsets = {p: g for p, g in self.pending_txn_offsets.items() if g}

    def commit_transactional_offsets(
        self,
        group_id: str,
        producer_id: int,
        producer_epoch: int,
        member_id: str,
        group_instance_id: str | None,
        generation_id: int,
        entries: Sequence[CommitEntry],
        verified: bool,
    ) -> list[ErrorCode]:
        """TxnOffsetCommit (Kafka 4's OffsetMetadataManager.commitTransactionalOffset): the
        offsets go to the log in a transactional batch of the producer and become the
        group's committed offsets only when the transaction commits. ``verified``: the
        transaction coordinator confirmed the group's partition is in the transaction."""
        error = self.check_group(group_id)
        if error is not None:
            return [error] * len(entries)
        group = self.groups.get(group_id)
        created = False
        if group is None or group.state == GroupState.DEAD:
            if generation_id >= 0:
                return [ErrorCode.illegal_generation] * len(entries)
            group = ClassicGroup(group_id, self.clock())
            self.groups[group_id] = group
            created = True
        try:
            group.validate_offset_commit(
                member_id, group_instance_id, generation_id, transactional=True
            )
        except KafkaError as exc:
            if created:
                del self.groups[group_id]
            # OffsetMetadataManager.validateTransactionalOffsetCommit: a KIP-848 member's
            # stale epoch is ILLEGAL_GENERATION to a transactional producer.
            code = exc.code
            if code == ErrorCode.stale_member_epoch:
                code = ErrorCode.illegal_generation
            return [code] * len(entries)
        now = self.clock()
        errors: list[ErrorCode] = []
        records: list[Record] = []
        staged: list[tuple[tuple[str, int], OffsetAndMetadata]] = []
        for e in entries:
            metadata = e.metadata if e.metadata is not None else ""
            if java_string_length(metadata) > self.config.offset_metadata_max_bytes:
                errors.append(ErrorCode.offset_metadata_too_large)
                continue
            om = OffsetAndMetadata(
                e.offset, metadata, now, e.leader_epoch if e.leader_epoch >= 0 else -1, -1
            )
            records.append(
                (
                    encode_offset_commit_key(group_id, e.topic, e.partition),
                    encode_offset_commit_value(
                        OffsetCommitValue(om.offset, om.metadata, now, om.leader_epoch, -1)
                    ),
                )
            )
            staged.append(((e.topic, e.partition), om))
            errors.append(ErrorCode.none)
        if records:
            append = getattr(self.store, "append_transactional", None)
            try:
                if append is None:
                    raise KafkaError("no transactional store", ErrorCode.unknown_server_error)
                append(self.partition_for(group_id), records, producer_id, producer_epoch, verified)
            except KafkaError as exc:
                code = exc.code
                if code not in (
                    ErrorCode.invalid_producer_epoch,
                    ErrorCode.invalid_txn_state,
                    ErrorCode.transaction_coordinator_fenced,
                ):
                    code = _group_store_error(exc.code)
                log.info("Transactional offset commit of group %s failed: %s", group_id, exc)
                errors = [code if err == ErrorCode.none else err for err in errors]
                staged = []
        if staged:
            by_group = self.pending_txn_offsets.setdefault(producer_id, {})
            by_group.setdefault(group_id, {}).update(staged)
        if created and not staged:
            del self.groups[group_id]
        return errors

    def on_transaction_completed(self, producer_id: int, partition: int, commit: bool) -> None:
        """A COMMIT/ABORT marker of ``producer_id`` landed in our partition ``partition``:
        its pending offsets there become committed, or are dropped."""
        by_group = self.pending_txn_offsets.get(producer_id)
        if not by_group:
            return
        for group_id in [g for g in by_group if self.partition_for(g) == partition]:
            offsets = by_group.pop(group_id)
            if not commit:
                continue
            group = self.groups.get(group_id)
            if group is None or group.state == GroupState.DEAD:
                group = self.groups[group_id] = ClassicGroup(group_id, self.clock())
            group.offsets.update(offsets)
        if not by_group:
            del self.pending_txn_offsets[producer_id]

    def has_pending_txn_offset(self, group_id: str, topic: str, partition: int) -> bool:
        """OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT for these."""
        tp = (topic, partition)
        return any(tp in g.get(group_id, {}) for g in self.pending_txn_offsets.values())
