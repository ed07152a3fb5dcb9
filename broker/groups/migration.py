"""Online migration between the classic and the consumer group protocol (KIP-848).

Kafka 4.1 (``group.consumer.migration.policy=bidirectional``) lets a group change protocol
while it runs, so consumers can be rolled from ``group.protocol=classic`` to ``consumer``
one at a time:

- *Upgrade*: a consumer-protocol member joins a non-empty classic group that uses the
  consumer embedded protocol. The group becomes a consumer group at epoch = the classic
  generation; each classic member keeps its last assignment as target and current
  assignment (Stable) and stays a classic member, served JoinGroup/SyncGroup/Heartbeat
  by the consumer group (ConsumerGroup.fromClassicGroup).
- *Downgrade*: the last consumer-protocol member leaves (or is fenced) and the rest are
  classic members. The group becomes a classic group at generation = the group epoch,
  every member keeping its target assignment, and a rebalance starts
  (ClassicGroup.fromConsumerGroup).

These functions are pure: they build the new group and say what to write; the
coordinators write it and move the timers.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from pybroker.broker.groups.consumer_group import (
    CONSUMER_PROTOCOL_TYPE,
    Assignment,
    ConsumerGroup,
    ConsumerGroupMember,
    MemberState,
)
from pybroker.broker.groups.consumer_protocol import (
    encode_assignment,
    metadata_version,
    parse_assignment,
    parse_subscription,
)
from pybroker.broker.groups.consumer_records import (
    CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT,
    CONSUMER_GROUP_MEMBER_METADATA,
    CONSUMER_GROUP_METADATA,
    CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER,
    CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA,
    AssignmentEpochValue,
    ClassicMemberMetadata,
    ConsumerKey,
    ConsumerValue,
    GroupEpochValue,
    TargetAssignmentValue,
)
from pybroker.broker.groups.group import ClassicGroup, GroupState, Member

# (topic id, partition count) of every topic, by name.
TopicsView = Mapping[str, tuple[uuid.UUID, int]]


def to_consumer_group(
    classic: ClassicGroup, topics: TopicsView
) -> tuple[ConsumerGroup, list[tuple[ConsumerKey, ConsumerValue]]]:
    """The consumer group a classic group becomes, already holding the records that create
    it (returned in Kafka's order: member metadata, group epoch, targets, assignment epoch,
    current assignments). Raises RecordFormatError when a member's subscription or
    assignment is not the consumer protocol's."""
    gid, generation = classic.group_id, classic.generation_id
    protocol = classic.protocol_name or ""
    members = []
    for m in classic.members.values():
        subscription = parse_subscription(m.metadata(protocol))
        assigned: dict[uuid.UUID, frozenset[int]] = {}
        for topic, parts in (parse_assignment(m.assignment) if m.assignment else {}).items():
            if topic in topics:
                assigned[topics[topic][0]] = parts
        members.append(
            ConsumerGroupMember(
                m.member_id,
                member_epoch=generation,
                previous_member_epoch=generation,
                state=MemberState.STABLE,
                instance_id=m.group_instance_id,
                rack_id=subscription.rack_id,
                rebalance_timeout_ms=m.rebalance_timeout_ms,
                client_id=m.client_id,
                client_host=m.client_host,
                subscribed_topic_names=frozenset(subscription.topics),
                classic=ClassicMemberMetadata(m.session_timeout_ms, tuple(m.protocols)),
                assigned=assigned,
            )
        )
    records: list[tuple[ConsumerKey, ConsumerValue]] = []
    for cm in members:
        key = ConsumerKey(CONSUMER_GROUP_MEMBER_METADATA, gid, cm.member_id)
        records.append((key, cm.metadata_value()))
    records.append((ConsumerKey(CONSUMER_GROUP_METADATA, gid), GroupEpochValue(generation)))
    for cm in members:
        key = ConsumerKey(CONSUMER_GROUP_TARGET_ASSIGNMENT_MEMBER, gid, cm.member_id)
        records.append((key, TargetAssignmentValue(cm.assigned)))
    records.append(
        (
            ConsumerKey(CONSUMER_GROUP_TARGET_ASSIGNMENT_METADATA, gid),
            AssignmentEpochValue(generation),
        )
    )
    for cm in members:
        key = ConsumerKey(CONSUMER_GROUP_CURRENT_MEMBER_ASSIGNMENT, gid, cm.member_id)
        records.append((key, cm.assignment_value()))
    group = ConsumerGroup(gid)
    for key, value in records:
        group.apply(key, value)
    return group, records


def to_classic_group(
    group: ConsumerGroup,
    leaving_member_id: str,
    now_ms: int,
    names: Mapping[uuid.UUID, str],
    joining: ConsumerGroupMember | None = None,
) -> tuple[ClassicGroup, dict[str, bytes]]:
    """The classic group a consumer group becomes when ``leaving_member_id`` (its last
    consumer-protocol member) leaves, or is replaced by ``joining`` (a classic static member
    with its instance id), and each member's assignment: its target assignment (the
    replaced member's for ``joining``) in the consumer-protocol version it speaks. The group
    is Stable; after a departure the caller starts the rebalance that follows."""
    classic = ClassicGroup(group.group_id, now_ms)
    classic.state = GroupState.STABLE
    classic.generation_id = group.group_epoch
    classic.protocol_type = CONSUMER_PROTOCOL_TYPE
    staying = [m for m in group.members.values() if m.member_id != leaving_member_id]
    for m in [*staying, *([joining] if joining is not None else [])]:
        if m.classic is None:
            continue
        classic.add(
            Member(
                member_id=m.member_id,
                group_instance_id=m.instance_id,
                client_id=m.client_id,
                client_host=m.client_host,
                rebalance_timeout_ms=m.rebalance_timeout_ms,
                session_timeout_ms=m.classic.session_timeout_ms,
                protocol_type=CONSUMER_PROTOCOL_TYPE,
                protocols=list(m.classic.protocols),
            )
        )
    classic.protocol_name = classic.select_protocol()
    classic.subscribed_topics = classic.compute_subscribed_topics()
    assignments = {}
    for member in classic.members.values():
        owner = member.member_id
        if joining is not None and owner == joining.member_id:
            owner = leaving_member_id
        target: Assignment = group.target.get(owner, {})
        by_name = {names[tid]: parts for tid, parts in target.items() if tid in names}
        version = metadata_version(member.metadata(classic.protocol_name))
        member.assignment = encode_assignment(by_name, version)
        assignments[member.member_id] = member.assignment
    return classic, assignments
