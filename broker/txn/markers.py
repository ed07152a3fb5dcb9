"""Transaction markers at the partition leaders: Kafka's ``TransactionMarkerChannelManager``
and the append side of ``KafkaApis.handleWriteTxnMarkersRequest``.

- ``TxnMarkerChannel.write_markers`` looks up the leader of each partition of a
  transaction in the current image. Partitions this broker leads get their marker
  appended here; the others are queued per leader broker, and one WriteTxnMarkers (key 27)
  request per broker carries whatever markers are queued for it (markers of several
  transactions travel together, as Kafka's send thread drains its per-broker queues). The
  result is each partition's error; the coordinator retries the failed ones, so a leader
  that moved (NOT_LEADER_OR_FOLLOWER), a topic a broker does not know yet
  (UNKNOWN_TOPIC_OR_PARTITION), an ISR below min.insync.replicas, a timeout or a lost
  connection are all looked up and sent again. One ``BrokerClient`` per broker, reused.
- ``write_local_markers`` is what a leader does with markers (for itself or for a
  WriteTxnMarkers request): append each as a control batch with the partition's leader
  epoch and acks=all, and answer once the ISR has it (``ReplicaManager.wait_for_commit``,
  ``request.timeout.ms``). A marker that lands in ``__consumer_offsets`` then tells the
  group coordinator, which materializes (or drops) the transaction's offsets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pybroker.broker.clock import now_ms
from pybroker.broker.groups.coordinator import OFFSETS_TOPIC
from pybroker.broker.txn.metadata import TopicPartition
from pybroker.protocol.codec import build, request_type
from pybroker.protocol.errors import ErrorCode, KafkaError
from pybroker.protocol.records import build_control_batch
from pybroker.replication.broker_client import BrokerClient, BrokerUnavailable
from pybroker.replication.metadata import ClusterImage

if TYPE_CHECKING:
    from pybroker.broker.server import Broker

log = logging.getLogger(__name__)

WRITE_TXN_MARKERS = 27
WRITE_TXN_MARKERS_VERSION = 1
Errors = dict[TopicPartition, ErrorCode]


# ---------------------------------------------------------------------- peers


class PeerClients:
    """One Kafka-protocol client per other broker, at its registered endpoint (a broker
    that comes back on another endpoint gets a new client)."""

    def __init__(self, broker: Broker, purpose: str) -> None:
        self.broker = broker
        self.client_id = f"broker-{broker.node_id}-{purpose}"
        self._clients: dict[int, BrokerClient] = {}

    def client(self, broker_id: int) -> BrokerClient | None:
        image = current_image(self.broker)
        info = image.brokers.get(broker_id) if image is not None else None
        if info is None:
            return None
        c = self._clients.get(broker_id)
        if c is not None and not c.closed and (c.host, c.port) == (info.host, info.port):
            return c
        if c is not None:
            _close_later(c)
        c = BrokerClient(
            info.host,
            info.port,
            self.client_id,
            ssl=self.broker.inter_broker_ssl,
            sasl=self.broker.inter_broker_sasl,
        )
        self._clients[broker_id] = c
        return c

    def close(self) -> None:
        clients, self._clients = self._clients, {}
        for c in clients.values():
            _close_later(c)


def current_image(broker: Broker) -> ClusterImage | None:
    """The broker's metadata image, None while it is still being loaded at start-up (a
    coordinator partition loaded then retries its markers a moment later)."""
    return broker.image if broker.controller is not None else None


def _close_later(client: BrokerClient) -> None:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        client.closed = True
        return
    task = loop.create_task(client.close())
    _background.add(task)
    task.add_done_callback(_background.discard)


_background: set[asyncio.Task[Any]] = set()


def _spawn(coro: Any) -> asyncio.Task[Any]:
    task = asyncio.get_running_loop().create_task(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


# ---------------------------------------------------------------------- local leader


def write_local_markers(
    broker: Broker,
    producer_id: int,
    producer_epoch: int,
    commit: bool,
    coordinator_epoch: int,
    partitions: Sequence[TopicPartition],
) -> Errors | asyncio.Future[Errors]:
    """Append a marker to each partition this broker leads (acks=all); the error of each,
    at once when every append is already committed (a single node), else as a future
    resolved when the ISR has them (or with the reason it cannot)."""
    rm = broker.replica_manager
    out: Errors = {}
    waits: list[tuple[str, int, int]] = []
    for topic, partition in partitions:
        batch = build_control_batch(
            commit,
            base_offset=0,
            producer_id=producer_id,
            producer_epoch=producer_epoch,
            coordinator_epoch=coordinator_epoch,
            timestamp=now_ms(),
        )
        try:
            # The leader epoch is stamped by the append; min.insync.replicas is checked.
            lg, info = rm.append(topic, partition, bytearray(batch), -1, client=False)
        except KafkaError as e:
            out[(topic, partition)] = e.code
            log.debug(
                "%s marker for producer %d in %s-%d failed: %s",
                "COMMIT" if commit else "ABORT",
                producer_id,
                topic,
                partition,
                e,
            )
            continue
        out[(topic, partition)] = ErrorCode.none
        end = info.last_offset + 1
        if lg.high_watermark < end:
            waits.append((topic, partition, end))
    if not waits:
        _offsets_completed(broker, producer_id, commit, out)
        return out
    timeout = broker.config.request_timeout_ms / 1000
    return _spawn(_wait_committed(broker, producer_id, commit, out, waits, timeout))


async def _wait_committed(
    broker: Broker,
    producer_id: int,
    commit: bool,
    out: Errors,
    waits: list[tuple[str, int, int]],
    timeout: float,
) -> Errors:
    codes = await broker.replica_manager.wait_for_commit(waits, timeout)
    for topic, partition, _ in waits:
        code = codes.get((topic, partition), ErrorCode.not_leader_or_follower)
        if code != ErrorCode.none:
            log.info(
                "%s marker for producer %d in %s-%d not committed: %s",
                "COMMIT" if commit else "ABORT",
                producer_id,
                topic,
                partition,
                code.name,
            )
        out[(topic, partition)] = code
    _offsets_completed(broker, producer_id, commit, out)
    return out


def _offsets_completed(broker: Broker, producer_id: int, commit: bool, out: Errors) -> None:
    """Kafka: "as soon as the end transaction marker has been written for a transactional
    offset commit, call to the group coordinator to materialize the offsets"."""
    offsets = [p for (t, p), code in out.items() if t == OFFSETS_TOPIC and code == ErrorCode.none]
    if not offsets:
        return
    complete = getattr(broker.group_coordinator, "on_transaction_completed", None)
    if complete is None:
        return
    for partition in offsets:
        try:
            complete(producer_id, partition, commit)
        except Exception:
            log.exception(
                "Group coordinator failed to complete producer %d's offsets in %s-%d",
                producer_id,
                OFFSETS_TOPIC,
                partition,
            )


# ---------------------------------------------------------------------- the channel


@dataclass(slots=True)
class _Queued:
    producer_id: int
    producer_epoch: int
    commit: bool
    coordinator_epoch: int
    partitions: list[TopicPartition]
    future: asyncio.Future[Errors]

    def resolve(self, errors: Errors) -> None:
        if not self.future.done():
            self.future.set_result(errors)

    def fail(self, code: ErrorCode) -> None:
        self.resolve(dict.fromkeys(self.partitions, code))


class TxnMarkerChannel:
    """The coordinator's ``MarkerWriter`` (Kafka's TransactionMarkerChannelManager)."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.peers = PeerClients(broker, "txn-markers")
        self._queues: dict[int, list[_Queued]] = {}
        self._senders: dict[int, asyncio.Task[None]] = {}

    def partition_exists(self, tp: TopicPartition) -> bool:
        image = current_image(self.broker)
        return image is None or image.partition(*tp) is not None

    def write_markers(
        self,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        coordinator_epoch: int,
        partitions: Sequence[TopicPartition],
    ) -> Errors | asyncio.Future[Errors]:
        image = current_image(self.broker)
        if image is None:
            return dict.fromkeys(partitions, ErrorCode.not_leader_or_follower)
        node_id = self.broker.node_id
        out: Errors = {}
        local: list[TopicPartition] = []
        remote: dict[int, list[TopicPartition]] = {}
        for tp in partitions:
            state = image.partition(*tp)
            if state is None:
                out[tp] = ErrorCode.unknown_topic_or_partition
            elif state.leader == node_id:
                local.append(tp)
            elif state.leader < 0 or state.leader not in image.brokers:
                # Kafka's queue for unknown brokers: looked up again on the retry.
                out[tp] = ErrorCode.not_leader_or_follower
            else:
                remote.setdefault(state.leader, []).append(tp)
        pending: list[asyncio.Future[Errors]] = []
        if local:
            written = write_local_markers(
                self.broker, producer_id, producer_epoch, commit, coordinator_epoch, local
            )
            if isinstance(written, asyncio.Future):
                pending.append(written)
            else:
                out.update(written)
        for broker_id, tps in sorted(remote.items()):
            pending.append(
                self._enqueue(
                    broker_id, producer_id, producer_epoch, commit, coordinator_epoch, tps
                )
            )
        if not pending:
            return out
        return _spawn(_gather(out, pending, list(partitions)))

    def _enqueue(
        self,
        broker_id: int,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        coordinator_epoch: int,
        partitions: list[TopicPartition],
    ) -> asyncio.Future[Errors]:
        loop = asyncio.get_running_loop()
        queued = _Queued(
            producer_id,
            producer_epoch,
            commit,
            coordinator_epoch,
            partitions,
            loop.create_future(),
        )
        self._queues.setdefault(broker_id, []).append(queued)
        sender = self._senders.get(broker_id)
        if sender is None or sender.done():
            self._senders[broker_id] = loop.create_task(self._drain(broker_id))
        return queued.future

    async def _drain(self, broker_id: int) -> None:
        """Send what is queued for ``broker_id``, one request at a time, until empty."""
        try:
            while True:
                batch = self._queues.pop(broker_id, [])
                if not batch:
                    return
                try:
                    await self._send(broker_id, batch)
                except asyncio.CancelledError:
                    for q in batch:
                        q.fail(ErrorCode.network_exception)
                    raise
                except Exception:
                    log.exception("Sending transaction markers to broker %d failed", broker_id)
                    for q in batch:
                        q.fail(ErrorCode.network_exception)
        finally:
            if self._senders.get(broker_id) is asyncio.current_task():
                del self._senders[broker_id]

    async def _send(self, broker_id: int, batch: list[_Queued]) -> None:
        client = self.peers.client(broker_id)
        if client is None:
            for q in batch:
                q.fail(ErrorCode.not_leader_or_follower)
            return
        markers = []
        for q in batch:
            by_topic: dict[str, list[int]] = {}
            for topic, partition in q.partitions:
                by_topic.setdefault(topic, []).append(partition)
            markers.append(
                dict(
                    producer_id=q.producer_id,
                    producer_epoch=q.producer_epoch,
                    transaction_result=q.commit,
                    topics=[dict(name=t, partition_indexes=ps) for t, ps in by_topic.items()],
                    coordinator_epoch=q.coordinator_epoch,
                )
            )
        body = build(request_type(WRITE_TXN_MARKERS, WRITE_TXN_MARKERS_VERSION), markers=markers)
        # The leader answers within request.timeout.ms (its wait for the ISR).
        timeout = self.broker.config.request_timeout_ms / 1000 + 5
        try:
            resp = await client.request(WRITE_TXN_MARKERS, WRITE_TXN_MARKERS_VERSION, body, timeout)
        except BrokerUnavailable as exc:
            log.info(
                "Transaction markers for %d transaction(s) to broker %d not sent: %s",
                len(batch),
                broker_id,
                exc,
            )
            for q in batch:
                q.fail(ErrorCode.network_exception)
            return
        by_pid: dict[int, Errors] = {}
        for m in resp.markers:
            found = by_pid.setdefault(int(m.producer_id), {})
            for t in m.topics:
                for p in t.partitions:
                    found[(t.name, int(p.partition_index))] = ErrorCode(p.error_code)
        for q in batch:
            found = by_pid.get(q.producer_id, {})
            q.resolve({tp: found.get(tp, ErrorCode.unknown_server_error) for tp in q.partitions})

    def close(self) -> None:
        for task in list(self._senders.values()):
            task.cancel()
        self._senders.clear()
        for queue in self._queues.values():
            for q in queue:
                q.fail(ErrorCode.network_exception)
        self._queues.clear()
        self.peers.close()


async def _gather(
    out: Errors, pending: list[asyncio.Future[Errors]], partitions: list[TopicPartition]
) -> Errors:
    for fut in pending:
        try:
            out.update(await fut)
        except Exception:
            log.exception("Writing transaction markers failed")
    for tp in partitions:
        out.setdefault(tp, ErrorCode.network_exception)
    return out
