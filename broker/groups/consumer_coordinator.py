"""The KIP-848 consumer group protocol, served beside the classic one.

A port of Kafka 4.0's ``GroupMetadataManager`` for consumer groups
(``consumerGroupHeartbeat``, ``consumerGroupLeave``, ``consumerGroupFenceMember``, the
session and rebalance timers, ``consumerGroupDescribe``, the replay of the group records
and ``onNewMetadataImage``). Consumer groups live in the classic coordinator's ``groups``
map, so one group id names one group of one type, exactly as in Kafka; their committed
offsets are the ``offsets`` of the :class:`ConsumerGroup` and go through the
coordinator's offset paths, which ask this module to validate member epochs.

Every mutation is made the way Kafka makes it: a request computes records, the records
are appended to the group's ``__consumer_offsets`` partition, and only then are they
replayed into the in-memory group (the same replay that rebuilds groups at start-up).
A failed append changes nothing. Timers (session, rebalance) are asyncio timers keyed by
group and member id; they look the group up again when they fire.

Differences from Kafka 4.0, by design or scope:

- Online migration (``group.consumer.migration.policy``, Kafka 4.1's default
  bidirectional): a ConsumerGroupHeartbeat for a non-empty classic group upgrades it
  (:mod:`pybroker.broker.groups.migration`), classic members are served JoinGroup, SyncGroup
  and Heartbeat inside the consumer group (``classic_join``, ``classic_sync``,
  ``classic_heartbeat``, with their own session, join and sync timeouts), and the last
  consumer-protocol member leaving, being fenced, or being replaced by a classic static
  member with its instance id downgrades it.
- A member rejoining with epoch 0 under the member id it already has is accepted (Kafka
  after 4.0, the fenced-member recovery of KIP-848); 4.0 answered FENCED_MEMBER_EPOCH
  again, which a client keeping its id (KIP-1082) cannot get out of.
- Regular expressions (``subscribed_topic_regex``, Python ``re`` full match standing in
  for RE2/J, its errors reported in RE2/J's words) are validated on the heartbeat that
  brings them and resolved just after it, as Kafka 4.1's executor does (the resolution
  bumps the group epoch when the topics change); they are re-resolved at most every 10 s
  after topics were created.
"""

from __future__ import annotations

import base64
import logging
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pybroker.broker.groups.append_errors import map_append_error
from pybroker.broker.groups.assignors import (
    Assignor,
    MemberSpec,
    PartitionAssignorError,
    resolve_assignors,
)
from pybroker.broker.groups.consumer_group import (
    CONSUMER_PROTOCOL_TYPE,
    LEAVE_GROUP_MEMBER_EPOCH,
    LEAVE_GROUP_STATIC_MEMBER_EPOCH,
    Assignment,
    ConsumerGroup,
    ConsumerGroupMember,
    MemberState,
    OwnedPartitions,
    reconcile,
)
from pybroker.broker.groups.consumer_protocol import (
    check_consumer_assignment,
    encode_assignment,
    metadata_version,
    parse_subscription,
)
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
    GroupEpochValue,
    PartitionMetadataValue,
    RegexValue,
    TargetAssignmentValue,
    TopicMetadata,
    decode_consumer_key,
    decode_value,
    encode_key,
    encode_value,
)
from pybroker.broker.groups.group import ClassicGroup, GroupState, JoinResult, SyncResult
from pybroker.broker.groups.migration import to_classic_group, to_consumer_group
from pybroker.broker.groups.records import (
    GroupMetadataValue,
    RecordFormatError,
    encode_group_metadata_key,
    encode_group_metadata_value,
    encode_offset_commit_key,
)
from pybroker.protocol.errors import ErrorCode, KafkaError

if TYPE_CHECKING:
    from pybroker.broker.groups.coordinator import GroupCoordinator

log = logging.getLogger(__name__)

# Kafka's METADATA_REFRESH_INTERVAL_MS (Integer.MAX_VALUE): metadata is refreshed when a
# subscription changes or the image says a subscribed topic changed, not by time.
METADATA_REFRESH_INTERVAL_MS = 2**31 - 1
REGEX_REFRESH_MIN_INTERVAL_MS = 10_000
CONSUMER_GENERATED_MEMBER_ID_REQUIRED_VERSION = 1

# (topic id, partition count) of every topic in the cluster, by name.
TopicsView = Mapping[str, tuple[uuid.UUID, int]]
# A record of a write: a consumer-group key and value (None: tombstone), or raw bytes for
# the classic GroupMetadata record a conversion writes.
Rec = tuple[ConsumerKey | bytes, ConsumerValue | bytes | None]


@dataclass(frozen=True, slots=True)
class ConsumerGroupConfig:
    """The broker's group.consumer.* settings (Kafka's GroupCoordinatorConfig)."""

    session_timeout_ms: int = 45_000
    heartbeat_interval_ms: int = 5_000
    max_size: int = 2**31 - 1
    assignors: tuple[str, ...] = ("uniform", "range")
    migration_policy: str = "bidirectional"  # disabled, upgrade, downgrade, bidirectional
    classic_max_size: int = 2**31 - 1  # group.max.size: a downgraded group must fit

    @property
    def upgrade_enabled(self) -> bool:
        return self.migration_policy in ("upgrade", "bidirectional")

    @property
    def downgrade_enabled(self) -> bool:
        return self.migration_policy in ("downgrade", "bidirectional")

    @classmethod
    def from_broker(cls, config: Any) -> ConsumerGroupConfig:
        return cls(
            session_timeout_ms=config.group_consumer_session_timeout_ms,
            heartbeat_interval_ms=config.group_consumer_heartbeat_interval_ms,
            max_size=config.group_consumer_max_size,
            assignors=tuple(config.group_consumer_assignors.split(",")),
            migration_policy=config.group_consumer_migration_policy.lower(),
            classic_max_size=config.group_max_size,
        )


@dataclass(frozen=True, slots=True)
class HeartbeatRequest:
    group_id: str
    member_id: str
    member_epoch: int
    instance_id: str | None = None
    rack_id: str | None = None
    rebalance_timeout_ms: int = -1
    subscribed_topic_names: Sequence[str] | None = None
    subscribed_topic_regex: str | None = None
    server_assignor: str | None = None
    owned: OwnedPartitions | None = None


@dataclass(frozen=True, slots=True)
class ClassicJoin:
    """A classic JoinGroup for a consumer group (the fields the consumer group uses)."""

    member_id: str
    instance_id: str | None
    require_known_member_id: bool
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]


@dataclass(slots=True)
class HeartbeatResult:
    error: ErrorCode = ErrorCode.none
    message: str | None = None
    member_id: str | None = None
    member_epoch: int = 0
    heartbeat_interval_ms: int = 0
    assignment: Assignment | None = None


@dataclass(slots=True)
class _Write:
    """What one operation will append and replay."""

    group: ConsumerGroup
    records: list[Rec] = field(default_factory=list)
    new_group: bool = False
    replaces: ClassicGroup | None = None  # the classic group this one takes over
    applied: int = 0  # the first records are already in ``group`` (an upgrade built it)

    def add(self, key: ConsumerKey, value: ConsumerValue | None) -> None:
        self.records.append((key, value))


class StoreFailure(KafkaError):
    """An append to __consumer_offsets failed; the answer carries no message."""


def _store_error(code: ErrorCode) -> ErrorCode:
    """GroupCoordinatorService.handleOperationException for failed appends."""
    return map_append_error(code, ErrorCode.unknown_server_error)


def new_member_id() -> str:
    """Kafka's Uuid.randomUuid().toString(): URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _blank(value: str | None) -> bool:
    return value is not None and value.strip() == ""


class ConsumerGroupManager:
    def __init__(
        self,
        coordinator: GroupCoordinator,
        config: ConsumerGroupConfig | None = None,
        topics: Callable[[], TopicsView] | None = None,
    ) -> None:
        self.coordinator = coordinator
        self.config = config or ConsumerGroupConfig()
        chain = resolve_assignors(list(self.config.assignors))
        self.assignors: dict[str, Assignor] = {a.name: a for a in chain}
        self.default_assignor = chain[0].name
        self.topics: Callable[[], TopicsView] = topics or (lambda: self._known_topics or {})
        self.timers: dict[tuple[str, str, str], Any] = {}
        self.regex_refresh_min_interval_ms = REGEX_REFRESH_MIN_INTERVAL_MS
        self._known_topics: dict[str, tuple[uuid.UUID, int]] | None = None
        self.image_version = 0  # bumped when topics are created (regex refreshes)

    # =================================================================== plumbing
    @property
    def clock(self) -> Callable[[], int]:
        return self.coordinator.clock

    def group(self, group_id: str) -> ConsumerGroup | None:
        group = self.coordinator.groups.get(group_id)
        return group if isinstance(group, ConsumerGroup) else None

    def _write(self, w: _Write) -> None:
        """Append the records to the group's partition, then replay them."""
        coordinator = self.coordinator
        encoded: list[tuple[bytes, bytes | None]] = []
        for key, value in w.records:
            if isinstance(key, bytes):
                assert value is None or isinstance(value, bytes)
                encoded.append((key, value))
            else:
                assert not isinstance(value, bytes)
                encoded.append((encode_key(key), None if value is None else encode_value(value)))
        if encoded:
            try:
                coordinator.store.append(coordinator.partition_for(w.group.group_id), encoded)
            except KafkaError as exc:
                log.warning("Write for consumer group %s failed: %s", w.group.group_id, exc)
                raise StoreFailure(str(exc), _store_error(exc.code)) from None
        group = w.group
        if w.new_group:
            if w.replaces is not None:
                coordinator._cancel_timers(w.replaces)
                group.offsets = w.replaces.offsets
                # An upgrade: the classic members waiting in a rebalance rejoin the
                # consumer group; each is now on its classic session timeout.
                coordinator._fail_waiters(w.replaces, ErrorCode.rebalance_in_progress)
                for member in group.classic_members():
                    self.schedule_session_timeout(group.group_id, member.member_id)
            coordinator.groups[group.group_id] = group
        for key, value in w.records[w.applied :]:
            if isinstance(key, ConsumerKey):
                assert not isinstance(value, bytes)
                if key.record_type == CONSUMER_GROUP_METADATA and value is None:
                    self._drop(group)
                    continue
                try:
                    group.apply(key, value)
                except ValueError:
                    log.exception("[GroupId %s] A written record does not apply", group.group_id)

    def tombstones(self, group: ConsumerGroup) -> list[tuple[bytes, bytes | None]]:
        """The records that delete the group (its offsets are the caller's)."""
        return [(encode_key(key), None) for key in group.tombstone_keys()]

    def forget(self, group: ConsumerGroup) -> None:
        """The group was deleted by records the caller wrote."""
        group.offsets.clear()
        self._drop(group)

    def _drop(self, group: ConsumerGroup) -> None:
        for member_id in list(group.members):
            self._cancel_timers(group.group_id, member_id)
        if self.coordinator.groups.get(group.group_id) is group:
            del self.coordinator.groups[group.group_id]

    # =================================================================== timers
    def _schedule(
        self,
        kind: str,
        group_id: str,
        member_id: str,
        delay_ms: int,
        fn: Callable[..., Any],
        *args: Any,
    ) -> None:
        key = (kind, group_id, member_id)
        old = self.timers.pop(key, None)
        if old is not None:
            old.cancel()
        self.timers[key] = self.coordinator.scheduler.call_later(
            max(delay_ms, 0) / 1000, self._fire, key, fn, *args
        )

    def _fire(self, key: tuple[str, str, str], fn: Callable[..., Any], *args: Any) -> None:
        self.timers.pop(key, None)
        try:
            fn(*args)
        except Exception:
            log.exception("Consumer group timer %s failed", key)

    def _cancel(self, kind: str, group_id: str, member_id: str) -> None:
        handle = self.timers.pop((kind, group_id, member_id), None)
        if handle is not None:
            handle.cancel()

    def _cancel_timers(self, group_id: str, member_id: str) -> None:
        for kind in ("session", "rebalance", "join", "sync"):
            self._cancel(kind, group_id, member_id)

    def schedule_session_timeout(self, group_id: str, member_id: str) -> None:
        """A classic member's own session timeout, else group.consumer.session.timeout.ms."""
        group = self.group(group_id)
        member = group.members.get(member_id) if group is not None else None
        timeout = self.config.session_timeout_ms
        if member is not None and member.classic is not None:
            timeout = member.classic.session_timeout_ms
        self._schedule(
            "session",
            group_id,
            member_id,
            timeout,
            self._fence_operation,
            group_id,
            member_id,
            "the member session expired",
        )

    def _schedule_join_timeout_if_absent(self, group_id: str, member: ConsumerGroupMember) -> None:
        """A classic member told to rejoin must do so within its rebalance timeout."""
        if ("join", group_id, member.member_id) in self.timers:
            return
        self._schedule(
            "join",
            group_id,
            member.member_id,
            member.rebalance_timeout_ms,
            self._fence_operation,
            group_id,
            member.member_id,
            "the classic member failed to join within the rebalance timeout",
        )

    def _schedule_sync_timeout(self, group_id: str, member_id: str, timeout_ms: int) -> None:
        self._schedule(
            "sync",
            group_id,
            member_id,
            timeout_ms,
            self._fence_operation,
            group_id,
            member_id,
            "the member failed to sync within timeout",
        )

    def _schedule_rebalance_timeout(
        self, group: ConsumerGroup, member: ConsumerGroupMember
    ) -> None:
        self._schedule(
            "rebalance",
            group.group_id,
            member.member_id,
            member.rebalance_timeout_ms,
            self._rebalance_timeout,
            group.group_id,
            member.member_id,
            member.member_epoch,
            member.rebalance_timeout_ms,
        )

    def _fence_operation(self, group_id: str, member_id: str, reason: str) -> None:
        group = self.group(group_id)
        if group is None or member_id not in group.members:
            return
        log.info(
            "[GroupId %s] Member %s fenced from the group because %s.", group_id, member_id, reason
        )
        try:
            self._fence(group, group.members[member_id])
        except KafkaError as exc:
            log.warning("[GroupId %s] Could not fence %s: %s; retrying", group_id, member_id, exc)
            self.schedule_session_timeout(group_id, member_id)

    def _rebalance_timeout(self, group_id: str, member_id: str, epoch: int, timeout: int) -> None:
        group = self.group(group_id)
        member = group.members.get(member_id) if group is not None else None
        if group is None or member is None or member.member_epoch != epoch:
            return
        log.info(
            "[GroupId %s] Member %s fenced from the group because it failed to transition "
            "from epoch %d within %dms.",
            group_id,
            member_id,
            epoch,
            timeout,
        )
        try:
            self._fence(group, member)
        except KafkaError as exc:
            log.warning("[GroupId %s] Could not fence %s: %s", group_id, member_id, exc)

    # =================================================================== heartbeat
    def heartbeat(
        self, request: HeartbeatRequest, api_version: int, client_id: str, client_host: str
    ) -> HeartbeatResult:
        coordinator = self.coordinator
        if not coordinator.active:
            return HeartbeatResult(ErrorCode.coordinator_not_available)
        if coordinator.partition_for(request.group_id) not in coordinator.owned:
            return HeartbeatResult(ErrorCode.not_coordinator)
        try:
            self._validate(request, api_version)
            if request.member_epoch in (LEAVE_GROUP_MEMBER_EPOCH, LEAVE_GROUP_STATIC_MEMBER_EPOCH):
                return self._leave(request)
            return self._heartbeat(request, client_id, client_host)
        except KafkaError as exc:
            message: str | None = exc.message
            if isinstance(exc, StoreFailure):
                message = None
            elif exc.code == ErrorCode.unknown_server_error:
                log.error("ConsumerGroupHeartbeat of group %s failed: %s", request.group_id, exc)
                message = None
            return HeartbeatResult(exc.code, message)
        except Exception:
            # Kafka answers UNKNOWN_SERVER_ERROR for what it did not expect; nothing was
            # written unless the append went through (the state replays what was).
            log.exception("ConsumerGroupHeartbeat of group %s failed", request.group_id)
            return HeartbeatResult(ErrorCode.unknown_server_error)

    def _validate(self, r: HeartbeatRequest, api_version: int) -> None:
        """throwIfConsumerGroupHeartbeatRequestIsInvalid."""

        def invalid(message: str) -> KafkaError:
            return KafkaError(message, ErrorCode.invalid_request)

        if (
            api_version >= CONSUMER_GENERATED_MEMBER_ID_REQUIRED_VERSION
            or r.member_epoch > 0
            or r.member_epoch == LEAVE_GROUP_MEMBER_EPOCH
        ) and _blank(r.member_id):
            raise invalid("MemberId can't be empty.")
        if _blank(r.group_id):
            raise invalid("GroupId can't be empty.")
        if _blank(r.instance_id):
            raise invalid("InstanceId can't be empty.")
        if _blank(r.rack_id):
            raise invalid("RackId can't be empty.")
        if r.member_epoch == 0:
            if r.rebalance_timeout_ms == -1:
                raise invalid("RebalanceTimeoutMs must be provided in first request.")
            if r.owned is None or r.owned:
                raise invalid("TopicPartitions must be empty when (re-)joining.")
            if r.subscribed_topic_names is None and r.subscribed_topic_regex is None:
                raise invalid(
                    "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when "
                    "(re-)joining."
                )
        elif r.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH:
            if r.instance_id is None:
                raise invalid("InstanceId can't be null.")
        elif r.member_epoch < LEAVE_GROUP_STATIC_MEMBER_EPOCH:
            raise invalid("MemberEpoch is invalid.")
        if r.server_assignor is not None and r.server_assignor not in self.assignors:
            raise KafkaError(
                f"ServerAssignor {r.server_assignor} is not supported. Supported assignors: "
                + ", ".join(self.assignors)
                + ".",
                ErrorCode.unsupported_assignor,
            )

    def _heartbeat(self, r: HeartbeatRequest, client_id: str, client_host: str) -> HeartbeatResult:
        now = self.clock()
        create = r.member_epoch == 0
        w = self._group_for_heartbeat(r.group_id, create)
        group = w.group
        if len(group.members) >= self.config.max_size and (
            not r.member_id or r.member_id not in group.members
        ):
            raise KafkaError(
                "The consumer group has reached its maximum capacity of "
                f"{self.config.max_size} members.",
                ErrorCode.group_max_size_reached,
            )
        member_id = r.member_id or new_member_id()
        if r.instance_id is None:
            member = self._dynamic_member(group, member_id, r.member_epoch, r.owned, create)
        else:
            member = self._static_member(
                w, member_id, r.member_epoch, r.instance_id, r.owned, create
            )
        # 1. The member's metadata.
        updated = replace(
            member,
            instance_id=r.instance_id if r.instance_id is not None else member.instance_id,
            rack_id=r.rack_id if r.rack_id is not None else member.rack_id,
            rebalance_timeout_ms=(
                r.rebalance_timeout_ms
                if r.rebalance_timeout_ms != -1
                else member.rebalance_timeout_ms
            ),
            server_assignor=(
                r.server_assignor if r.server_assignor is not None else member.server_assignor
            ),
            subscribed_topic_names=(
                frozenset(r.subscribed_topic_names)
                if r.subscribed_topic_names is not None
                else member.subscribed_topic_names
            ),
            subscribed_topic_regex=(
                r.subscribed_topic_regex
                if r.subscribed_topic_regex is not None
                else member.subscribed_topic_regex
            ),
            client_id=client_id,
            client_host=client_host,
            classic=None,
        )
        reconciled, rebalance_timer = self._advance(w, member, updated, r.owned, now)

        replaced = group.static_members.get(r.instance_id) if r.instance_id is not None else None
        self._write(w)
        if replaced is not None and replaced != member_id:
            self._cancel_timers(group.group_id, replaced)
        self.schedule_session_timeout(group.group_id, member_id)
        if rebalance_timer is True:
            self._schedule_rebalance_timeout(group, reconciled)
        elif rebalance_timer is False:
            self._cancel("rebalance", group.group_id, member_id)

        full = r.member_epoch == 0 or (
            r.rebalance_timeout_ms != -1
            and r.subscribed_topic_names is not None
            and r.owned is not None
        )
        return HeartbeatResult(
            member_id=reconciled.member_id,
            member_epoch=reconciled.member_epoch,
            heartbeat_interval_ms=self.config.heartbeat_interval_ms,
            assignment=(
                reconciled.assigned if full or reconciled.assigned != member.assigned else None
            ),
        )

    def _advance(
        self,
        w: _Write,
        member: ConsumerGroupMember,
        updated: ConsumerGroupMember,
        owned: OwnedPartitions | None,
        now: int,
    ) -> tuple[ConsumerGroupMember, bool | None]:
        """The heart of a heartbeat (or of a classic member's JoinGroup): write the member's
        new metadata, bump the group epoch if the subscriptions changed, compute a new target
        assignment for it, and reconcile the member towards its target. Returns the
        reconciled member and what to do with its rebalance timer (True: schedule, False:
        cancel, None: leave)."""
        group = w.group
        bump = group.group_epoch == 0
        if updated != member:
            w.add(
                ConsumerKey(CONSUMER_GROUP_MEMBER_METADATA, group.group_id, updated.member_id),
                updated.metadata_value(),
            )
            if updated.subscribed_topic_names != member.subscribed_topic_names:
                bump = True
        resolved = self._maybe_update_regexes(w, member, updated, now)
        if resolved is not None:
            bump = True
        regexes = {**{k: v.topics for k, v in group.resolved_regexes.items()}}
        for regex, topics in (self._pending_regexes(w)).items():
            if topics is None:
                regexes.pop(regex, None)
            else:
                regexes[regex] = topics

        group_epoch = group.group_epoch
        subscription = group.subscription_metadata
        if bump or group.has_metadata_expired(now):
            names = self._subscribed_names(group, regexes, old=member, new=updated)
            subscription = self._subscription_metadata(names)
            if subscription != group.subscription_metadata:
                bump = True
                w.add(
                    ConsumerKey(CONSUMER_GROUP_PARTITION_METADATA, group.group_id),
                    PartitionMetadataValue(tuple(subscription.values())),
                )
            if bump:
                group_epoch += 1
                w.add(
                    ConsumerKey(CONSUMER_GROUP_METADATA, group.group_id),
                    GroupEpochValue(group_epoch),
                )
                log.info("[GroupId %s] Bumped group epoch to %d.", group.group_id, group_epoch)
            group.refresh_deadline = (now + METADATA_REFRESH_INTERVAL_MS, group_epoch)

        # 2. The target assignment, if the group epoch moved past it.
        if group_epoch > group.assignment_epoch:
            target = self._update_target(w, group_epoch, member, updated, subscription, regexes)
            target_epoch = group_epoch
        else:
            target_epoch = group.assignment_epoch
            target = group.target_of(updated.member_id, updated.instance_id)

        # 3. Reconcile the member towards it.
        reconciled = updated
        rebalance_timer: bool | None = None  # True: schedule, False: cancel, None: leave
        if not updated.is_reconciled_to(target_epoch):
            reconciled = reconcile(updated, target_epoch, target, group.partition_epoch, owned)
            if reconciled != updated:
                w.add(
                    ConsumerKey(
                        CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT, group.group_id, updated.member_id
                    ),
                    reconciled.assignment_value(),
                )
                rebalance_timer = reconciled.state == MemberState.UNREVOKED_PARTITIONS
                log.debug(
                    "[GroupId %s] Member %s new assignment state: epoch=%d, previousEpoch=%d, "
                    "state=%s, assigned=%s, revoking=%s",
                    group.group_id,
                    updated.member_id,
                    reconciled.member_epoch,
                    reconciled.previous_member_epoch,
                    reconciled.state.name,
                    _fmt(reconciled.assigned),
                    _fmt(reconciled.pending_revocation),
                )
        return reconciled, rebalance_timer

    # ------------------------------------------------------------------ group and member
    def _group_for_heartbeat(self, group_id: str, create: bool) -> _Write:
        """getOrMaybeCreateConsumerGroup (the group joins ``groups`` when written)."""
        existing = self.coordinator.groups.get(group_id)
        if isinstance(existing, ConsumerGroup):
            return _Write(existing)
        if existing is None or existing.state == GroupState.DEAD:
            if not create:
                raise KafkaError(
                    f"Consumer group {group_id} not found.", ErrorCode.group_id_not_found
                )
            return _Write(ConsumerGroup(group_id), new_group=True)
        if create and existing.state == GroupState.EMPTY:
            # An empty classic group (or one that only holds offsets) becomes a consumer
            # group: its metadata is deleted, its offsets stay.
            w = _Write(ConsumerGroup(group_id), new_group=True, replaces=existing)
            w.records.append((encode_group_metadata_key(group_id), None))
            log.info(
                "[GroupId %s] Converted the empty classic group to a consumer group.", group_id
            )
            return w
        refusal = self._upgrade_refusal(existing)
        if create and refusal is None:
            return self._upgrade(existing)
        raise KafkaError(
            refusal or f"Group {group_id} is not a consumer group.", ErrorCode.group_id_not_found
        )

    def _upgrade_refusal(self, group: ClassicGroup) -> str | None:
        """Why a non-empty classic group cannot become a consumer group online (Kafka 4.1's
        checks, in its order and words), or None when it can."""
        why = f"Cannot upgrade classic group {group.group_id} to consumer group because"
        if not self.config.upgrade_enabled:
            return f"{why} the online upgrade is disabled."
        if group.protocol_type != CONSUMER_PROTOCOL_TYPE:
            return f"{why} the group does not use the consumer embedded protocol."
        if len(group.members) > self.config.max_size:
            return f"{why} the group size exceeds the consumer group maximum size."
        try:
            for m in group.members.values():
                parse_subscription(m.metadata(group.protocol_name or ""))
                if m.assignment:  # none yet is no assignment, not a malformed one
                    check_consumer_assignment(m.assignment)
        except (RecordFormatError, KeyError):
            return f"{why} the embedded consumer protocol is malformed."
        return None

    def _upgrade(self, classic: ClassicGroup) -> _Write:
        """convertToConsumerGroup: the classic group's members become classic members of a
        consumer group at the classic generation; the joining member's heartbeat goes on
        from there (and bumps the epoch). Written together with that heartbeat's records."""
        group, records = to_consumer_group(classic, self.topics())
        w = _Write(group, new_group=True, replaces=classic)
        w.records.append((encode_group_metadata_key(classic.group_id), None))
        w.records.extend(records)
        w.applied = len(w.records)
        log.info(
            "[GroupId %s] Upgrading the classic group (generation %d, %d member(s)) to a "
            "consumer group.",
            classic.group_id,
            classic.generation_id,
            len(classic.members),
        )
        return w

    @staticmethod
    def _check_epoch(
        member: ConsumerGroupMember, received: int, owned: OwnedPartitions | None
    ) -> None:
        """throwIfConsumerGroupMemberEpochIsInvalid (epoch 0: the member rejoins)."""
        if received == 0:
            return
        if received > member.member_epoch:
            raise KafkaError(
                f"The consumer group member has a greater member epoch ({received}) than the "
                f"one known by the group coordinator ({member.member_epoch}). The member must "
                "abandon all its partitions and rejoin.",
                ErrorCode.fenced_member_epoch,
            )
        if received < member.member_epoch:
            # The previous epoch is accepted if the member owns a subset of its assignment:
            # the response that bumped its epoch may have been lost.
            subset = owned is not None and all(
                set(parts) <= member.assigned.get(topic_id, frozenset())
                for topic_id, parts in owned
            )
            if received != member.previous_member_epoch or not subset:
                raise KafkaError(
                    f"The consumer group member has a smaller member epoch ({received}) than "
                    f"the one known by the group coordinator ({member.member_epoch}). The "
                    "member must abandon all its partitions and rejoin.",
                    ErrorCode.fenced_member_epoch,
                )

    def _dynamic_member(
        self,
        group: ConsumerGroup,
        member_id: str,
        epoch: int,
        owned: OwnedPartitions | None,
        create: bool,
        classic: bool = False,
    ) -> ConsumerGroupMember:
        member = group.members.get(member_id)
        if member is None:
            if not create:
                raise KafkaError(
                    f"Member {member_id} is not a member of group {group.group_id}.",
                    ErrorCode.unknown_member_id,
                )
            log.info(
                "[GroupId %s] Member %s joins the consumer group using the %s protocol.",
                group.group_id,
                member_id,
                "classic" if classic else "consumer",
            )
            return ConsumerGroupMember(member_id)
        if not classic:
            self._check_epoch(member, epoch, owned)
        return member

    def _static_member(
        self,
        w: _Write,
        member_id: str,
        epoch: int,
        instance_id: str,
        owned: OwnedPartitions | None,
        create: bool,
        classic: bool = False,
    ) -> ConsumerGroupMember:
        group = w.group
        existing = group.static_member(instance_id)
        if create:
            if existing is None:
                log.info(
                    "[GroupId %s] Static member %s with instance id %s joins the consumer group.",
                    group.group_id,
                    member_id,
                    instance_id,
                )
                return group.members.get(member_id) or ConsumerGroupMember(member_id)
            if existing.member_id == member_id:
                return existing  # the same member rejoining after being fenced
            if (
                not classic
                and existing.classic is None
                and existing.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH
            ):
                raise KafkaError(
                    f"Static member {member_id} with instance id {instance_id} cannot join the "
                    f"group because the instance id is owned by {existing.member_id} member.",
                    ErrorCode.unreleased_instance_id,
                )
            new = replace(existing, member_id=member_id, member_epoch=0, previous_member_epoch=0)
            self._replace_member(w, existing, new)
            log.info(
                "[GroupId %s] Static member with instance id %s re-joins the consumer group. "
                "Created a new member %s to replace the existing member %s.",
                group.group_id,
                instance_id,
                member_id,
                existing.member_id,
            )
            return new
        if existing is None:
            raise KafkaError(f"Instance id {instance_id} is unknown.", ErrorCode.unknown_member_id)
        if existing.member_id != member_id:
            raise KafkaError(
                f"Static member {member_id} with instance id {instance_id} was fenced by member "
                f"{existing.member_id}.",
                ErrorCode.fenced_instance_id,
            )
        self._check_epoch(existing, epoch, owned)
        return existing

    def _replace_member(
        self, w: _Write, old: ConsumerGroupMember, new: ConsumerGroupMember
    ) -> None:
        g = w.group.group_id
        self._remove_member_records(w, old.member_id)
        w.add(ConsumerKey(CONSUMER_GROUP_MEMBER_METADATA, g, new.member_id), new.metadata_value())
        w.add(
            ConsumerKey(CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER, g, new.member_id),
            TargetAssignmentValue(w.group.target.get(old.member_id, {})),
        )
        w.add(
            ConsumerKey(CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT, g, new.member_id),
            new.assignment_value(),
        )

    @staticmethod
    def _remove_member_records(w: _Write, member_id: str) -> None:
        g = w.group.group_id
        w.add(ConsumerKey(CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT, g, member_id), None)
        w.add(ConsumerKey(CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER, g, member_id), None)
        w.add(ConsumerKey(CONSUMER_GROUP_MEMBER_METADATA, g, member_id), None)

    # ------------------------------------------------------------------ subscriptions
    def _subscribed_names(
        self,
        group: ConsumerGroup,
        regexes: Mapping[str, frozenset[str]],
        old: ConsumerGroupMember | None = None,
        new: ConsumerGroupMember | None = None,
        removed: Iterable[str] = (),
    ) -> set[str]:
        skip = set(removed)
        for m in (old, new):
            if m is not None:
                skip.add(m.member_id)
        members = [m for m in group.members.values() if m.member_id not in skip]
        if new is not None:
            members.append(new)
        names: set[str] = set()
        for m in members:
            names |= _member_topics(m, regexes)
        return names

    def _subscription_metadata(self, names: Iterable[str]) -> dict[str, TopicMetadata]:
        topics = self.topics()
        out = {}
        for name in sorted(names):
            info = topics.get(name)
            if info is not None:
                out[name] = TopicMetadata(info[0], name, info[1])
        return out

    # ------------------------------------------------------------------ regexes
    @staticmethod
    def _pending_regexes(w: _Write) -> dict[str, frozenset[str] | None]:
        out: dict[str, frozenset[str] | None] = {}
        for key, value in w.records:
            if (
                isinstance(key, ConsumerKey)
                and key.record_type == CONSUMER_GROUP_REGULAR_EXPRESSION
            ):
                assert key.regex is not None
                out[key.regex] = frozenset(value.topics) if isinstance(value, RegexValue) else None
        return out

    def _maybe_update_regexes(
        self, w: _Write, old: ConsumerGroupMember, new: ConsumerGroupMember, now: int
    ) -> bool | None:
        """maybeUpdateRegularExpressions. A new regex is validated here but resolved
        afterwards, as Kafka's executor does: until then it subscribes the member to
        nothing, and the resolution bumps the group epoch if the group's topics change.
        Returns True when the member's regex changed (a new group epoch), None otherwise."""
        group = w.group
        counts = group.subscribed_regexes()
        if old.member_id in group.members and old.subscribed_topic_regex:
            counts[old.subscribed_topic_regex] -= 1
        if new.subscribed_topic_regex:
            counts[new.subscribed_topic_regex] += 1
        counts = +counts
        changed = False
        resolve = False
        if old.subscribed_topic_regex != new.subscribed_topic_regex:
            previous = old.subscribed_topic_regex
            if previous and previous not in counts and previous in group.resolved_regexes:
                w.add(
                    ConsumerKey(CONSUMER_GROUP_REGULAR_EXPRESSION, group.group_id, regex=previous),
                    None,
                )
                changed |= bool(group.resolved_regexes[previous].topics)
            regex = new.subscribed_topic_regex
            if regex and regex not in group.resolved_regexes:
                _compile(regex)  # INVALID_REGULAR_EXPRESSION now; the topics come later
                changed = resolve = True
            elif regex:
                changed = True
        # Refresh the group's regexes when topics were created since their resolution.
        last = max((v.timestamp for v in group.resolved_regexes.values()), default=0)
        stale = [
            r
            for r, v in group.resolved_regexes.items()
            if r in counts and v.version < self.image_version
        ]
        if stale and now >= last + self.regex_refresh_min_interval_ms:
            resolve = True
        if resolve:
            self._schedule("regex", group.group_id, "", 0, self._resolve_regexes, group.group_id)
        return True if changed else None

    def _resolve_regexes(self, group_id: str) -> None:
        """The executor's task and its result (handleRegularExpressionsResult): every
        regex of the group resolved against the topics now, written, and a new group
        epoch when the group's subscribed topics changed."""
        group = self.group(group_id)
        counts = group.subscribed_regexes() if group is not None else None
        if group is None or not counts:
            return
        now = self.clock()
        names = list(self.topics())
        w = _Write(group)
        resolved = {k: v.topics for k, v in group.resolved_regexes.items()}
        bump = False  # any regex whose topics changed (a new one had none)
        for regex in counts:
            try:
                pattern = _compile(regex)
            except KafkaError:
                continue
            topics = frozenset(t for t in names if pattern.fullmatch(t))
            bump |= topics != resolved.get(regex, frozenset())
            resolved[regex] = topics
            w.add(
                ConsumerKey(CONSUMER_GROUP_REGULAR_EXPRESSION, group.group_id, regex=regex),
                RegexValue(tuple(sorted(topics)), self.image_version, now),
            )
        subscription = self._subscription_metadata(self._subscribed_names(group, resolved))
        if subscription != group.subscription_metadata:
            bump = True
            w.add(
                ConsumerKey(CONSUMER_GROUP_PARTITION_METADATA, group.group_id),
                PartitionMetadataValue(tuple(subscription.values())),
            )
        if bump:
            w.add(
                ConsumerKey(CONSUMER_GROUP_METADATA, group.group_id),
                GroupEpochValue(group.group_epoch + 1),
            )
            log.info(
                "[GroupId %s] Bumped group epoch to %d after resolving regexes.",
                group_id,
                group.group_epoch + 1,
            )
        try:
            self._write(w)
        except KafkaError as exc:
            log.warning("[GroupId %s] Could not write resolved regexes: %s", group_id, exc)

    # ------------------------------------------------------------------ target assignment
    def _update_target(
        self,
        w: _Write,
        group_epoch: int,
        old: ConsumerGroupMember,
        new: ConsumerGroupMember,
        subscription: Mapping[str, TopicMetadata],
        regexes: Mapping[str, frozenset[str]],
    ) -> Assignment:
        """TargetAssignmentBuilder: a new target for every member at ``group_epoch``."""
        group = w.group
        name = group.preferred_assignor(old, new) or self.default_assignor
        assignor = self.assignors.get(name) or self.assignors[self.default_assignor]
        base: dict[str, tuple[ConsumerGroupMember, Assignment]] = {
            mid: (m, group.target.get(mid, {})) for mid, m in group.members.items()
        }
        current = group.target.get(new.member_id)
        previous = group.static_members.get(new.instance_id) if new.instance_id else None
        if previous is not None and previous != new.member_id:
            if current is None:
                current = group.target.get(previous, {})
            base.pop(previous, None)
        base[new.member_id] = (new, current or {})
        return self._assign(w, group_epoch, assignor, base, subscription, regexes, new.member_id)

    def _assign(
        self,
        w: _Write,
        group_epoch: int,
        assignor: Assignor,
        base: Mapping[str, tuple[ConsumerGroupMember, Assignment]],
        subscription: Mapping[str, TopicMetadata],
        regexes: Mapping[str, frozenset[str]],
        member_id: str | None,
    ) -> Assignment:
        group = w.group
        ids = {name: t.topic_id for name, t in subscription.items()}
        specs = {
            mid: MemberSpec(
                frozenset(ids[t] for t in _member_topics(m, regexes) if t in ids),
                current,
                m.instance_id,
                m.rack_id,
            )
            for mid, (m, current) in base.items()
        }
        counts = {t.topic_id: t.num_partitions for t in subscription.values()}
        try:
            result = assignor.assign(specs, counts)
        except PartitionAssignorError as exc:
            raise KafkaError(
                f"Failed to compute a new target assignment for epoch {group_epoch}: {exc}",
                ErrorCode.unknown_server_error,
            ) from None
        for mid in specs:
            assignment = result.get(mid, {})
            if group.target.get(mid) != assignment or mid not in group.target:
                w.add(
                    ConsumerKey(CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER, group.group_id, mid),
                    TargetAssignmentValue(assignment),
                )
        w.add(
            ConsumerKey(CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA, group.group_id),
            AssignmentEpochValue(group_epoch),
        )
        log.info(
            "[GroupId %s] Computed a new target assignment for epoch %d with '%s' assignor.",
            group.group_id,
            group_epoch,
            assignor.name,
        )
        return result.get(member_id, {}) if member_id is not None else {}

    # =================================================================== leaving
    def _leave(self, r: HeartbeatRequest) -> HeartbeatResult:
        existing = self.coordinator.groups.get(r.group_id)
        if existing is None or (
            isinstance(existing, ClassicGroup) and existing.state == GroupState.DEAD
        ):
            raise KafkaError(f"Group {r.group_id} not found.", ErrorCode.group_id_not_found)
        group = self.group(r.group_id)
        if group is None:
            raise KafkaError(
                f"Group {r.group_id} is not a consumer group.", ErrorCode.group_id_not_found
            )
        if r.instance_id is None:
            member = group.members.get(r.member_id)
            if member is None:
                raise KafkaError(
                    f"Member {r.member_id} is not a member of group {group.group_id}.",
                    ErrorCode.unknown_member_id,
                )
            log.info("[GroupId %s] Member %s left the consumer group.", group.group_id, r.member_id)
            self._fence(group, member)
            return HeartbeatResult(member_id=r.member_id, member_epoch=r.member_epoch)
        member = group.static_member(r.instance_id)
        if member is None:
            raise KafkaError(
                f"Instance id {r.instance_id} is unknown.", ErrorCode.unknown_member_id
            )
        if member.member_id != r.member_id:
            raise KafkaError(
                f"Static member {r.member_id} with instance id {r.instance_id} was fenced by "
                f"member {member.member_id}.",
                ErrorCode.fenced_instance_id,
            )
        if r.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH:
            log.info(
                "[GroupId %s] Static member %s with instance id %s temporarily left the "
                "consumer group.",
                group.group_id,
                r.member_id,
                r.instance_id,
            )
            w = _Write(group)
            leaving = replace(
                member, member_epoch=LEAVE_GROUP_STATIC_MEMBER_EPOCH, pending_revocation={}
            )
            w.add(
                ConsumerKey(
                    CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT, group.group_id, member.member_id
                ),
                leaving.assignment_value(),
            )
            self._write(w)
            self._cancel("rebalance", group.group_id, member.member_id)
            return HeartbeatResult(
                member_id=member.member_id, member_epoch=LEAVE_GROUP_STATIC_MEMBER_EPOCH
            )
        log.info(
            "[GroupId %s] Static member %s with instance id %s left the consumer group.",
            group.group_id,
            r.member_id,
            r.instance_id,
        )
        self._fence(group, member)
        return HeartbeatResult(member_id=r.member_id, member_epoch=r.member_epoch)

    def _fence(
        self, group: ConsumerGroup, *members: ConsumerGroupMember, downgrade: bool = True
    ) -> None:
        """consumerGroupFenceMember(s): remove the members, bump the group epoch once; or,
        when the one member going is the last on the consumer protocol, downgrade."""
        if downgrade and len(members) == 1 and self._may_downgrade(group, members[0].member_id):
            self._downgrade(group, members[0].member_id)
            return
        w = _Write(group)
        removed = [m.member_id for m in members]
        for member_id in removed:
            self._remove_member_records(w, member_id)
        regexes = {k: v.topics for k, v in group.resolved_regexes.items()}
        subscription = self._subscription_metadata(
            self._subscribed_names(group, regexes, removed=removed)
        )
        if subscription != group.subscription_metadata:
            w.add(
                ConsumerKey(CONSUMER_GROUP_PARTITION_METADATA, group.group_id),
                PartitionMetadataValue(tuple(subscription.values())),
            )
        w.add(
            ConsumerKey(CONSUMER_GROUP_METADATA, group.group_id),
            GroupEpochValue(group.group_epoch + 1),
        )
        self._write(w)
        for member_id in removed:
            self._cancel_timers(group.group_id, member_id)

    def _may_downgrade(
        self, group: ConsumerGroup, leaving_member_id: str, *, replacing: bool = False
    ) -> bool:
        """validateOnlineDowngradeWithFencedMember (the member leaves) or, ``replacing``,
        validateOnlineDowngradeWithReplacedMemberId (a classic static member takes its
        instance id)."""
        if not group.all_members_use_classic_except(leaving_member_id):
            return False
        if len(group.members) <= 1 and not replacing:
            return False
        why = f"[GroupId {group.group_id}] Cannot downgrade the consumer group to a classic group"
        if not self.config.downgrade_enabled:
            log.info("%s because the online downgrade is disabled.", why)
            return False
        if len(group.members) - (0 if replacing else 1) > self.config.classic_max_size:
            log.info("%s because its size is greater than group.max.size.", why)
            return False
        return True

    def _downgrade(
        self,
        group: ConsumerGroup,
        leaving_member_id: str,
        *,
        joining: ConsumerGroupMember | None = None,
        w: _Write | None = None,
    ) -> None:
        """convertToClassicGroup: the consumer group's records are deleted and the classic
        group is written in one append; its members keep their target assignments. When a
        member left, a rebalance starts so they rejoin as a classic group; when ``joining``
        replaced it (a static member, whose JoinGroup records are in ``w``), the group stays
        Stable and ``joining`` takes the replaced member's partitions."""
        coordinator = self.coordinator
        names = {tid: name for name, (tid, _) in self.topics().items()}
        classic, assignments = to_classic_group(
            group, leaving_member_id, self.clock(), names, joining
        )
        offsets = group.offsets
        w = w or _Write(group)
        for key in group.tombstone_keys():
            if joining is not None and key.member_id == leaving_member_id:
                key = replace(key, member_id=joining.member_id)
            w.add(key, None)
        w.records.append(coordinator.group_metadata_record(classic, assignments))
        self._write(w)  # replaying the tombstones drops the consumer group and its timers
        classic.offsets = offsets
        coordinator.groups[group.group_id] = classic
        log.info(
            "[GroupId %s] Downgraded the consumer group to a classic group (generation %d) "
            "after member %s %s.",
            group.group_id,
            classic.generation_id,
            leaving_member_id,
            "left" if joining is None else f"was replaced by {joining.member_id}",
        )
        coordinator.on_downgraded(classic, rebalance=joining is None)

    # =================================================================== classic APIs
    def classic_join(self, group: ConsumerGroup, r: ClassicJoin) -> JoinResult:
        """classicGroupJoinToConsumerGroup: a classic member joins (or rejoins) a non-empty
        consumer group. It is answered at once, with its epoch as the generation and no
        leader: its assignment comes from the consumer group through SyncGroup."""
        try:
            return self._classic_join(group, r)
        except KafkaError as exc:
            return JoinResult(exc.code, r.member_id)

    def _classic_join(self, group: ConsumerGroup, r: ClassicJoin) -> JoinResult:
        member_id, instance_id, protocols = r.member_id, r.instance_id, r.protocols
        gid = group.group_id
        unknown = member_id == ""
        if unknown:
            member_id = new_member_id()
        if member_id not in group.members and len(group.members) >= self.config.max_size:
            raise KafkaError(
                "The consumer group has reached its maximum capacity of "
                f"{self.config.max_size} members.",
                ErrorCode.group_max_size_reached,
            )
        if not group.supports_classic_protocols(r.protocol_type, {n for n, _ in protocols}):
            raise KafkaError(
                f"Member {member_id}'s protocols are not supported.",
                ErrorCode.inconsistent_group_protocol,
            )
        if r.require_known_member_id and unknown:
            log.info(
                "[GroupId %s] Dynamic member with unknown member id joins the consumer group. "
                "Created a new member id %s and requesting the member to rejoin with this id.",
                gid,
                member_id,
            )
            return JoinResult(ErrorCode.member_id_required, member_id)
        w = _Write(group)
        if instance_id is None:
            member = self._dynamic_member(group, member_id, -1, None, True, classic=True)
        else:
            member = self._static_member(w, member_id, -1, instance_id, None, True, classic=True)
        try:
            subscription = parse_subscription(protocols[0][1])
        except RecordFormatError:
            raise KafkaError(
                "Malformed embedded consumer protocol in subscription deserialization.",
                ErrorCode.unknown_server_error,
            ) from None
        topics = self.topics()
        owned = [
            (topics[topic][0], list(parts))
            for topic, parts in subscription.owned
            if topic in topics
        ]
        updated = replace(
            member,
            instance_id=instance_id if instance_id is not None else member.instance_id,
            rack_id=subscription.rack_id if subscription.rack_id is not None else member.rack_id,
            rebalance_timeout_ms=(
                r.rebalance_timeout_ms
                if r.rebalance_timeout_ms != -1
                else member.rebalance_timeout_ms
            ),
            subscribed_topic_names=frozenset(subscription.topics),
            client_id=r.client_id,
            client_host=r.client_host,
            classic=ClassicMemberMetadata(r.session_timeout_ms, tuple(protocols)),
        )
        reconciled, _ = self._advance(w, member, updated, owned, self.clock())
        replaced = group.static_members.get(instance_id) if instance_id is not None else None
        if (
            replaced is not None
            and replaced != member_id
            and self._may_downgrade(group, replaced, replacing=True)
        ):
            self._downgrade(group, replaced, joining=reconciled, w=w)
            return JoinResult(
                ErrorCode.none,
                reconciled.member_id,
                reconciled.member_epoch,
                CONSUMER_PROTOCOL_TYPE,
                updated.protocol_name,
            )
        self._write(w)
        if replaced is not None and replaced != member_id:
            self._cancel_timers(gid, replaced)
        self._cancel("join", gid, member_id)
        self.schedule_session_timeout(gid, member_id)
        self._schedule_sync_timeout(gid, member_id, r.rebalance_timeout_ms)
        return JoinResult(
            ErrorCode.none,
            reconciled.member_id,
            reconciled.member_epoch,
            CONSUMER_PROTOCOL_TYPE,
            updated.protocol_name,
        )

    def _classic_member(
        self, group: ConsumerGroup, member_id: str, instance_id: str | None, generation: int
    ) -> ConsumerGroupMember:
        """validateConsumerGroupMember, then: it speaks the classic protocol, and the
        generation it sends is its member epoch."""
        if instance_id is None:
            member = group.members.get(member_id)
            if member is None:
                raise KafkaError(
                    f"Member {member_id} is not a member of group {group.group_id}.",
                    ErrorCode.unknown_member_id,
                )
        else:
            member = group.static_member(instance_id)
            if member is None:
                raise KafkaError(
                    f"Member with instance id {instance_id} is not a member of group "
                    f"{group.group_id}.",
                    ErrorCode.unknown_member_id,
                )
            if member.member_id != member_id:
                raise KafkaError(
                    f"Static member {member_id} with instance id {instance_id} was fenced by "
                    f"member {member.member_id}.",
                    ErrorCode.fenced_instance_id,
                )
        if member.classic is None:
            raise KafkaError(
                f"Member {member.member_id} does not use the classic protocol.",
                ErrorCode.unknown_member_id,
            )
        if generation != member.member_epoch:
            raise KafkaError(
                f"The request generation id {generation} is not equal to the member epoch "
                f"{member.member_epoch} of member {member.member_id}.",
                ErrorCode.illegal_generation,
            )
        return member

    def classic_sync(
        self,
        group: ConsumerGroup,
        member_id: str,
        instance_id: str | None,
        generation_id: int,
        protocol_type: str | None,
        protocol_name: str | None,
    ) -> SyncResult:
        """classicGroupSyncToConsumerGroup: the member's current assignment, in the
        consumer-protocol version it speaks, unless it must rejoin first."""
        gid = group.group_id
        try:
            member = self._classic_member(group, member_id, instance_id, generation_id)
            if protocol_type is not None and protocol_type != CONSUMER_PROTOCOL_TYPE:
                raise KafkaError(
                    f"The protocol type {protocol_type} from member {member_id} request is not "
                    f"equal to the group protocol type {CONSUMER_PROTOCOL_TYPE}.",
                    ErrorCode.inconsistent_group_protocol,
                )
            if protocol_name is not None and protocol_name != member.protocol_name:
                raise KafkaError(
                    f"The protocol name {protocol_name} from member {member_id} request is not "
                    f"equal to the protocol name {member.protocol_name} returned in the join "
                    "response.",
                    ErrorCode.inconsistent_group_protocol,
                )
            if (
                group.group_epoch > member.member_epoch
                and member.state != MemberState.UNREVOKED_PARTITIONS
            ):
                self._schedule_join_timeout_if_absent(gid, member)
                raise KafkaError(
                    f"A new rebalance is triggered in group {gid} and member {member_id} "
                    "should rejoin to catch up.",
                    ErrorCode.rebalance_in_progress,
                )
        except KafkaError as exc:
            return SyncResult(exc.code)
        self._cancel("sync", gid, member.member_id)
        self.schedule_session_timeout(gid, member.member_id)
        assert member.classic is not None
        names = {tid: name for name, (tid, _) in self.topics().items()}
        partitions = {names[tid]: p for tid, p in member.assigned.items() if tid in names}
        version = metadata_version(member.classic.protocols[0][1])
        return SyncResult(
            ErrorCode.none, protocol_type, protocol_name, encode_assignment(partitions, version)
        )

    def classic_heartbeat(
        self, group: ConsumerGroup, member_id: str, instance_id: str | None, generation_id: int
    ) -> ErrorCode:
        """classicGroupHeartbeatToConsumerGroup: REBALANCE_IN_PROGRESS tells the member to
        rejoin when the group moved on, it must revoke, or what it waits for is free."""
        try:
            member = self._classic_member(group, member_id, instance_id, generation_id)
        except KafkaError as exc:
            return exc.code
        self.schedule_session_timeout(group.group_id, member.member_id)
        if (
            member.member_epoch < group.group_epoch
            or member.state == MemberState.UNREVOKED_PARTITIONS
            or (
                member.state == MemberState.UNRELEASED_PARTITIONS
                and not group.waiting_on_unreleased_partition(member)
            )
        ):
            self._schedule_join_timeout_if_absent(group.group_id, member)
            return ErrorCode.rebalance_in_progress
        return ErrorCode.none

    def release_for_classic(self, group: ConsumerGroup, member_id: str) -> ErrorCode | None:
        """A JoinGroup for an empty consumer group: it gives way to a classic group (keeping
        its offsets)."""
        assert group.is_empty()
        if member_id:
            return ErrorCode.unknown_member_id
        now = self.clock()
        w = _Write(group)
        for key in group.tombstone_keys():
            w.add(key, None)
        w.records.append(
            (
                encode_group_metadata_key(group.group_id),
                encode_group_metadata_value(GroupMetadataValue("", 0, None, None, now, ())),
            )
        )
        try:
            self._write(w)
        except KafkaError as exc:
            return exc.code
        classic = ClassicGroup(group.group_id, now)
        classic.offsets = group.offsets
        self.coordinator.groups[group.group_id] = classic
        log.info(
            "[GroupId %s] Converted the empty consumer group to a classic group.", group.group_id
        )
        return None

    def classic_leave(
        self, group: ConsumerGroup, leaving: Sequence[tuple[str, str | None, str | None]]
    ) -> list[ErrorCode]:
        """LeaveGroup against a consumer group (Kafka 4.1's classicGroupLeaveToConsumerGroup):
        any member, by member id or (static) by instance id, is fenced; the valid ones
        leave together, with one group epoch bump."""
        errors = []
        valid: dict[str, ConsumerGroupMember] = {}
        for member_id, instance_id, _reason in leaving:
            if instance_id is None:
                member = group.members.get(member_id)
            else:
                member = group.static_member(instance_id)
                if member is not None and member_id and member.member_id != member_id:
                    errors.append(ErrorCode.fenced_instance_id)
                    continue
            if member is None:
                errors.append(ErrorCode.unknown_member_id)
                continue
            valid[member.member_id] = member
            errors.append(ErrorCode.none)
        if valid:
            try:
                self._fence(group, *valid.values(), downgrade=False)
            except KafkaError as exc:
                return [exc.code if e == ErrorCode.none else e for e in errors]
        return errors

    def validate_offset_fetch(
        self, group_id: str, member_id: str | None, member_epoch: int
    ) -> ErrorCode | None:
        """OffsetFetch v9+ with a member id and epoch: the consumer group's check."""
        group = self.group(group_id)
        if group is None:
            return None
        try:
            group.validate_offset_fetch(member_id, member_epoch)
        except KafkaError as exc:
            return exc.code
        return None

    def delete_group(self, group: ConsumerGroup) -> ErrorCode:
        """DeleteGroups: offsets and the group's records are tombstoned together."""
        if not group.is_empty():
            return ErrorCode.non_empty_group
        self.delete_records(group)
        return ErrorCode.none

    def delete_records(
        self, group: ConsumerGroup, offsets: Iterable[tuple[str, int]] | None = None
    ) -> None:
        """Tombstone ``offsets`` (all by default) and the group; raises KafkaError."""
        w = _Write(group)
        for topic, partition in list(group.offsets) if offsets is None else offsets:
            w.records.append((encode_offset_commit_key(group.group_id, topic, partition), None))
        for key in group.tombstone_keys():
            w.add(key, None)
        self._write(w)
        group.offsets.clear()
        log.info("[GroupId %s] Deleted the consumer group.", group.group_id)

    # =================================================================== describe
    def describe(self, group_ids: Sequence[str]) -> list[dict[str, Any]]:
        coordinator = self.coordinator
        topics_by_id = {tid: name for name, (tid, _) in self.topics().items()}
        out: list[dict[str, Any]] = []
        for group_id in group_ids:
            entry: dict[str, Any] = dict(group_id=group_id, error_code=ErrorCode.none)
            if not coordinator.active:
                entry["error_code"] = ErrorCode.coordinator_not_available
            elif not group_id:
                entry["error_code"] = ErrorCode.invalid_group_id
            elif coordinator.partition_for(group_id) not in coordinator.owned:
                entry["error_code"] = ErrorCode.not_coordinator
            else:
                existing = coordinator.groups.get(group_id)
                group = self.group(group_id)
                if group is None:
                    entry["error_code"] = ErrorCode.group_id_not_found
                    entry["error_message"] = (
                        f"Group {group_id} not found."
                        if existing is None or getattr(existing, "state", None) == GroupState.DEAD
                        else f"Group {group_id} is not a consumer group."
                    )
                else:
                    entry.update(self._described(group, topics_by_id))
            out.append(entry)
        return out

    def _described(self, group: ConsumerGroup, names: Mapping[uuid.UUID, str]) -> dict[str, Any]:
        def tps(assignment: Assignment) -> list[dict[str, Any]]:
            return [
                dict(topic_id=tid, topic_name=names[tid], partitions=sorted(parts))
                for tid, parts in sorted(assignment.items(), key=lambda kv: names.get(kv[0], ""))
                if tid in names
            ]

        return dict(
            group_state=group.state.value,
            group_epoch=group.group_epoch,
            assignment_epoch=group.assignment_epoch,
            assignor_name=group.preferred_assignor(None, None) or self.default_assignor,
            members=[
                dict(
                    member_id=m.member_id,
                    instance_id=m.instance_id,
                    rack_id=m.rack_id,
                    member_epoch=m.member_epoch,
                    client_id=m.client_id,
                    client_host=m.client_host,
                    subscribed_topic_names=sorted(m.subscribed_topic_names),
                    # Kafka's member keeps "" for no regex and describes it so.
                    subscribed_topic_regex=m.subscribed_topic_regex or "",
                    assignment=dict(topic_partitions=tps(m.assigned)),
                    target_assignment=dict(topic_partitions=tps(group.target.get(m.member_id, {}))),
                    member_type=0 if m.classic else 1,
                )
                for m in group.members.values()
            ],
        )

    # =================================================================== load / unload
    def replay_loaded(self, partition: int, records: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Rebuild the consumer groups of a loaded partition from their records (in log
        order); they take over the offsets the classic loader put in simple groups."""
        coordinator = self.coordinator
        groups: dict[str, ConsumerGroup] = {}
        count = 0
        for key_bytes, value_bytes in records:
            try:
                key = decode_consumer_key(key_bytes)
                if key is None:
                    continue
                value = None if value_bytes is None else decode_value(key.record_type, value_bytes)
            except RecordFormatError as exc:
                log.warning("Skipping unreadable consumer-group record: %s", exc)
                continue
            if coordinator.partition_for(key.group_id) != partition:
                continue
            count += 1
            group = groups.get(key.group_id)
            if key.record_type == CONSUMER_GROUP_METADATA and value is None:
                groups.pop(key.group_id, None)
                continue
            if group is None:
                if value is None:
                    continue
                group = groups[key.group_id] = ConsumerGroup(key.group_id)
            try:
                group.apply(key, value)
            except ValueError as exc:
                log.warning(
                    "[GroupId %s] Skipping a record that does not apply: %s", key.group_id, exc
                )
        for group_id, group in groups.items():
            existing = coordinator.groups.get(group_id)
            if isinstance(existing, ClassicGroup):
                if existing.members:
                    log.warning(
                        "Group %s has both classic and consumer-group records; keeping the "
                        "consumer group",
                        group_id,
                    )
                    coordinator._cancel_timers(existing)
                group.offsets = existing.offsets
            coordinator.groups[group_id] = group
            log.info("Loaded consumer group %s with %d members.", group_id, len(group.members))
            for member in group.members.values():
                self.schedule_session_timeout(group_id, member.member_id)
                if member.state == MemberState.UNREVOKED_PARTITIONS:
                    self._schedule_rebalance_timeout(group, member)
        if count:
            log.info("Loaded %d consumer group(s) from %d record(s)", len(groups), count)

    def unload_group(self, group: ConsumerGroup) -> None:
        for member_id in list(group.members):
            self._cancel_timers(group.group_id, member_id)
        log.info(
            "[GroupId=%s] Unloaded group metadata for group epoch %d.",
            group.group_id,
            group.group_epoch,
        )

    # =================================================================== metadata
    def on_topics(self, topics: TopicsView) -> None:
        """A new cluster image (onNewMetadataImage): groups subscribed to a created,
        changed or deleted topic recompute their subscription on the next heartbeat."""
        previous = self._known_topics
        self._known_topics = dict(topics)
        if previous is None:
            return
        changed = {n for n in set(previous) | set(topics) if previous.get(n) != topics.get(n)}
        if any(n not in previous for n in topics):
            self.image_version += 1
        if not changed:
            return
        for group in self.coordinator.groups.values():
            if not isinstance(group, ConsumerGroup):
                continue
            if any(group.is_subscribed_to(n) for n in changed) or (
                group.subscription_metadata.keys() & changed
            ):
                group.request_metadata_refresh()


def _member_topics(member: ConsumerGroupMember, regexes: Mapping[str, frozenset[str]]) -> set[str]:
    topics = set(member.subscribed_topic_names)
    if member.subscribed_topic_regex:
        topics |= regexes.get(member.subscribed_topic_regex, frozenset())
    return topics


def _compile(regex: str) -> re.Pattern[str]:
    try:
        return re.compile(regex)
    except re.error as exc:
        raise KafkaError(
            f"SubscribedTopicRegex `{regex}` is not a valid regular expression: "
            f"{_re2j_description(exc)}.",
            ErrorCode.invalid_regular_expression,
        ) from None


# Python ``re`` errors and the RE2/J descriptions Kafka reports for the same mistakes.
_RE2J_DESCRIPTIONS = (
    ("unterminated character set", "missing closing ]"),
    ("missing ), unterminated subpattern", "missing closing )"),
    ("unbalanced parenthesis", "unexpected )"),
    ("nothing to repeat", "missing argument to repetition operator"),
    ("multiple repeat", "invalid nested repetition operator"),
    ("bad escape (end of pattern)", "trailing backslash at end of expression"),
    ("bad escape", "invalid escape sequence"),
    ("bad character range", "invalid character class range"),
)


def _re2j_description(exc: re.error) -> str:
    text = str(exc.msg)
    for python, re2j in _RE2J_DESCRIPTIONS:
        if text.startswith(python):
            return re2j
    return text


def _fmt(assignment: Assignment) -> str:
    return ", ".join(f"{t}-{sorted(ps)}" for t, ps in assignment.items()) or "-"
