"""KIP-890 verification at a partition leader: Kafka's ``AddPartitionsToTxnManager``.

Before a producer's first transactional write starts a transaction in a partition (a
Produce, or a TxnOffsetCommit to the group coordinator), the leader asks the transaction
coordinator of the transactional id whether the partition is in the transaction
(``add=False``, AddPartitionsToTxn v4+ with ``verify_only``) or has it added
(``add=True``: Produce v12 / TxnOffsetCommit v5, KIP-890 part 2). The coordinator is the
leader of the id's ``__transaction_state`` partition: this broker answers itself, any
other is asked over the wire (one client per broker, reused).

The answer is the coordinator's error per partition. As in Kafka: no coordinator known
(no topic, no leader) is COORDINATOR_NOT_AVAILABLE, a lost or timed-out connection
NETWORK_EXCEPTION, a request-level error applies to every partition
(CLUSTER_AUTHORIZATION_FAILED becomes INVALID_TXN_STATE). Callers map these to what
their clients expect.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pybroker.broker.txn.coordinator import TXN_STATE_TOPIC, resolve
from pybroker.broker.txn.markers import PeerClients, TxnMarkerChannel, current_image
from pybroker.broker.txn.metadata import TopicPartition
from pybroker.protocol.codec import build, request_type
from pybroker.protocol.errors import ErrorCode
from pybroker.replication.broker_client import BrokerUnavailable

if TYPE_CHECKING:
    from pybroker.broker.server import Broker

log = logging.getLogger(__name__)

ADD_PARTITIONS_TO_TXN = 24
BROKER_VERSION = 5  # the inter-broker versions are 4 and 5; 5 knows TRANSACTION_ABORTABLE
Errors = dict[TopicPartition, ErrorCode]


def _peers(broker: Broker) -> PeerClients | None:
    """The marker channel's clients (one per broker, shared with the markers)."""
    markers = broker.txn_coordinator.markers
    return markers.peers if isinstance(markers, TxnMarkerChannel) else None


def coordinator_node(broker: Broker, transactional_id: str) -> int | None:
    """The broker that coordinates ``transactional_id`` (None if unknown)."""
    image = current_image(broker)
    if image is None or TXN_STATE_TOPIC not in image.topics:
        return None
    state = image.partition(TXN_STATE_TOPIC, broker.txn_coordinator.partition_for(transactional_id))
    if state is None or state.leader < 0 or state.leader not in image.brokers:
        return None
    return state.leader


async def verify_transaction(
    broker: Broker,
    transactional_id: str,
    producer_id: int,
    producer_epoch: int,
    partitions: Sequence[TopicPartition],
    add: bool,
) -> Errors:
    """The coordinator's answer for ``partitions`` (see the module docstring)."""
    wanted = list(partitions)
    node = coordinator_node(broker, transactional_id)
    if node is None:
        return dict.fromkeys(wanted, ErrorCode.coordinator_not_available)
    coordinator = broker.txn_coordinator
    if node == broker.node_id:
        if add:
            code = await resolve(
                coordinator.add_partitions(transactional_id, producer_id, producer_epoch, wanted, 2)
            )
            return dict.fromkeys(wanted, code)
        return coordinator.verify_partitions(transactional_id, producer_id, producer_epoch, wanted)
    peers = _peers(broker)
    client = peers.client(node) if peers is not None else None
    if client is None:
        return dict.fromkeys(wanted, ErrorCode.coordinator_not_available)
    by_topic: dict[str, list[int]] = {}
    for topic, partition in wanted:
        by_topic.setdefault(topic, []).append(partition)
    body = build(
        request_type(ADD_PARTITIONS_TO_TXN, BROKER_VERSION),
        transactions=[
            dict(
                transactional_id=transactional_id,
                producer_id=producer_id,
                producer_epoch=producer_epoch,
                verify_only=not add,
                topics=[dict(name=t, partitions=ps) for t, ps in by_topic.items()],
            )
        ],
    )
    timeout = broker.config.request_timeout_ms / 1000
    try:
        resp = await client.request(ADD_PARTITIONS_TO_TXN, BROKER_VERSION, body, timeout)
    except BrokerUnavailable as exc:
        log.info(
            "Cannot verify %s's partitions with its coordinator %d: %s",
            transactional_id,
            node,
            exc,
        )
        return dict.fromkeys(wanted, ErrorCode.network_exception)
    top = ErrorCode(resp.error_code)
    if top != ErrorCode.none:
        if top == ErrorCode.cluster_authorization_failed:
            top = ErrorCode.invalid_txn_state
        return dict.fromkeys(wanted, top)
    found: Errors = {}
    for txn in resp.results_by_transaction:
        if txn.transactional_id != transactional_id:
            continue
        for t in txn.topic_results:
            for p in t.results_by_partition:
                found[(t.name, int(p.partition_index))] = ErrorCode(p.partition_error_code)
    return {tp: found.get(tp, ErrorCode.unknown_server_error) for tp in wanted}
