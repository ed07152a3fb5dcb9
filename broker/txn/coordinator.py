"""The transaction coordinator: Kafka's ``TransactionCoordinator`` and ``TransactionStateManager``.

Transactional ids live in the partitions of ``__transaction_state`` this broker leads
(``abs(javaHashCode(id)) % transaction.state.log.num.partitions``); every state change is a
record there (``broker.txn.records``) and the in-memory ``TransactionMetadata`` changes
only after the record is appended (``broker.txn.metadata`` has the state machine). The
rules, request by request, are Kafka 4's (``TransactionCoordinator.scala``):

- InitProducerId: a new id gets a fresh producer id and epoch 0; an existing one gets its
  epoch bumped (a new producer id once the epoch is exhausted), which fences any older
  producer of the id. With an Ongoing transaction the coordinator first fences the epoch
  and aborts it, and answers CONCURRENT_TRANSACTIONS so the client retries (and bumps the
  epoch once more). KIP-360 expected producer id/epoch: PRODUCER_FENCED unless current,
  new, or a retry of the last bump.
- AddPartitionsToTxn / AddOffsetsToTxn: producer id and epoch must be current
  (INVALID_PRODUCER_ID_MAPPING / PRODUCER_FENCED); not while a transaction completes
  (CONCURRENT_TRANSACTIONS); moves the id to Ongoing with the partitions added.
- Verification (KIP-890, AddPartitionsToTxn v4+ verifyOnly, and the Produce path):
  which partitions are in the transaction, TRANSACTION_ABORTABLE for the others.
- EndTxn: Ongoing -> PrepareCommit/PrepareAbort, then the markers, then
  CompleteCommit/CompleteAbort; retries of a completed end answer NONE; anything else is
  INVALID_TXN_STATE (EndTxn without a transaction among them). EndTxn v5 (KIP-890 part 2)
  bumps the epoch on every completion and answers the new one.
- Transactions open longer than their timeout are aborted with a bumped epoch (the
  producer is fenced); ids idle for ``transactional.id.expiration.ms`` in a final state
  are deleted with a tombstone.

Writes complete on commit, as in Kafka's ``TransactionStateManager.appendTransactionToLog``:
the store appends a record and, when the partition's high watermark does not cover it yet
(a replicated partition), hands back a future of the commit (ReplicaManager's
``wait_for_commit``); the in-memory transition completes only then, and the request is
answered only then (EndTxn after PrepareCommit/PrepareAbort is committed, InitProducerId
after its record). Meanwhile the id has a pending state and other requests for it get
CONCURRENT_TRANSACTIONS. A single node commits on append, so every step there stays
synchronous; methods therefore return either a value or a future of it (``Outcome``;
``resolve`` awaits either). Failures map as Kafka's do (COORDINATOR_NOT_AVAILABLE,
NOT_COORDINATOR), and a commit that lands after the partition moved to another
coordinator epoch answers NOT_COORDINATOR.

Markers (Kafka's ``TransactionMarkerChannelManager``) go through a ``MarkerWriter``: it
writes to the leader of each partition, locally or with WriteTxnMarkers, and answers each
partition's error, at once or as a future. Failed partitions are retried on a timer (the
writer looks their leaders up again) while the id stays in its Prepare state; once every
marker is written (committed by its partition's ISR) CompleteCommit/CompleteAbort is
written. A coordinator that gains a ``__transaction_state`` partition (``load``) completes
the ids it finds in PrepareCommit/PrepareAbort by sending their markers again; Ongoing ones
are aborted by the timeout like any other. One that loses it (``unload``) drops its ids
and answers NOT_COORDINATOR.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from pybroker.broker.groups.records import partition_for
from pybroker.broker.scheduling import Scheduler, TimerHandle
from pybroker.broker.txn.metadata import (
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    IllegalTxnStateError,
    TopicPartition,
    TransactionMetadata,
    TxnState,
    TxnTransit,
)
from pybroker.broker.txn.records import (
    TxnRecordError,
    decode_txn_key,
    decode_txn_value,
    encode_txn_key,
    encode_txn_value,
)
from pybroker.protocol.errors import ErrorCode, KafkaError

log = logging.getLogger(__name__)

TXN_STATE_TOPIC = "__transaction_state"
MARKER_RETRY_BACKOFF_MS = 100
S = TxnState
Record = tuple[bytes, bytes | None]
T = TypeVar("T")
U = TypeVar("U")
# A result now, or a future of it (a write that waits for its commit).
Outcome = T | asyncio.Future[T]


def then(outcome: T | asyncio.Future[T], fn: Callable[[T], U | asyncio.Future[U]]) -> Any:
    """``fn(result)`` of an outcome: called at once for a value, else when the future is
    done (Kafka's response callbacks). ``fn`` runs even if the caller stopped waiting (the
    state transition must complete); a future ``fn`` returns is chained."""
    if not isinstance(outcome, asyncio.Future):
        return fn(outcome)
    out: asyncio.Future[Any] = outcome.get_loop().create_future()

    def done(f: asyncio.Future[T]) -> None:
        if f.cancelled():
            if not out.done():
                out.cancel()
            return
        exc = f.exception()
        if exc is not None:
            if not out.done():
                out.set_exception(exc)
            return
        try:
            result = fn(f.result())
        except Exception as e:
            log.exception("Transaction coordinator callback failed")
            if not out.done():
                out.set_exception(e)
            return
        if isinstance(result, asyncio.Future):
            result.add_done_callback(lambda g: _copy_result(g, out))
        elif not out.done():
            out.set_result(result)

    outcome.add_done_callback(done)
    return out


def _copy_result(src: asyncio.Future[Any], dst: asyncio.Future[Any]) -> None:
    if dst.done():
        return
    if src.cancelled():
        dst.cancel()
    elif src.exception() is not None:
        dst.set_exception(src.exception())  # type: ignore[arg-type]
    else:
        dst.set_result(src.result())


async def resolve(outcome: T | asyncio.Future[T]) -> T:
    """The result of an outcome; a caller that is cancelled leaves the work running."""
    if isinstance(outcome, asyncio.Future):
        return await asyncio.shield(outcome)
    return outcome


class TxnStore(Protocol):
    """The partitions of ``__transaction_state``."""

    def append(self, partition: int, records: Sequence[Record]) -> asyncio.Future[ErrorCode] | None:
        """Append as one batch (acks=all); raises KafkaError as a produce would. None when
        the append is committed on return, else a future of the commit's error."""

    def read(self, partition: int) -> Iterable[tuple[bytes | None, bytes | None]]:
        """Every (key, value) of the partition in offset order."""


class MarkerWriter(Protocol):
    def write_markers(
        self,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        coordinator_epoch: int,
        partitions: Sequence[TopicPartition],
    ) -> dict[TopicPartition, ErrorCode] | asyncio.Future[dict[TopicPartition, ErrorCode]]:
        """Write a COMMIT/ABORT marker to each partition (at its leader, committed by the
        ISR); the error of each, now or as a future."""

    def partition_exists(self, tp: TopicPartition) -> bool:
        """False once the topic or partition is gone (its marker is skipped)."""


ProducerIdSource = Callable[[], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class TxnConfig:
    num_partitions: int = 50
    max_timeout_ms: int = 900_000
    transactional_id_expiration_ms: int = 604_800_000
    abort_timed_out_interval_ms: int = 10_000
    remove_expired_interval_ms: int = 3_600_000

    @classmethod
    def from_broker(cls, config: Any) -> TxnConfig:
        return cls(
            num_partitions=config.transaction_state_log_num_partitions,
            max_timeout_ms=config.transaction_max_timeout_ms,
            transactional_id_expiration_ms=config.transactional_id_expiration_ms,
            abort_timed_out_interval_ms=(
                config.transaction_abort_timed_out_transaction_cleanup_interval_ms
            ),
            remove_expired_interval_ms=(
                config.transaction_remove_expired_transaction_cleanup_interval_ms
            ),
        )


@dataclass(slots=True)
class _PartitionCache:
    coordinator_epoch: int
    txns: dict[str, TransactionMetadata] = field(default_factory=dict)


@dataclass(slots=True)
class _MarkerWork:
    """Markers still to write for a transaction in PrepareCommit/PrepareAbort."""

    txn: TransactionMetadata
    coordinator_epoch: int
    commit: bool
    complete: TxnTransit  # the CompleteCommit/CompleteAbort to write once all are in
    remaining: set[TopicPartition]
    timer: TimerHandle | None = None


@dataclass(frozen=True, slots=True)
class ListedTxn:
    transactional_id: str
    producer_id: int
    state: str


def _log_append_error(code: ErrorCode) -> ErrorCode:
    """TransactionStateManager.appendTransactionToLog's mapping of append errors."""
    if code in (
        ErrorCode.unknown_topic_or_partition,
        ErrorCode.not_enough_replicas,
        ErrorCode.not_enough_replicas_after_append,
        ErrorCode.request_timed_out,
    ):
        return ErrorCode.coordinator_not_available
    if code in (ErrorCode.not_leader_or_follower, ErrorCode.kafka_storage_error):
        return ErrorCode.not_coordinator
    if code in (ErrorCode.message_too_large, ErrorCode.record_list_too_large):
        return ErrorCode.unknown_server_error
    return code


class TransactionCoordinator:
    def __init__(
        self,
        config: TxnConfig,
        store: TxnStore,
        markers: MarkerWriter,
        producer_ids: ProducerIdSource,
        scheduler: Scheduler,
        clock: Callable[[], int],
    ) -> None:
        self.config = config
        self.store = store
        self.markers = markers
        self.producer_ids = producer_ids
        self.scheduler = scheduler
        self.clock = clock
        self.num_partitions = config.num_partitions
        self.topic_id: object | None = None
        self.partitions: dict[int, _PartitionCache] = {}
        self.active = True
        self._marker_work: dict[str, _MarkerWork] = {}
        self._timers: dict[str, TimerHandle] = {}

    # =================================================================== ownership
    def partition_for(self, transactional_id: str) -> int:
        return partition_for(transactional_id, self.num_partitions)

    def start(self) -> None:
        self._every(self.config.abort_timed_out_interval_ms, self.abort_timed_out_transactions)
        self._every(self.config.remove_expired_interval_ms, self.remove_expired_transactional_ids)

    def _every(self, interval_ms: int, job: Callable[[], Any]) -> None:
        name = job.__name__

        def run() -> None:
            if not self.active:
                return
            try:
                job()
            except Exception:
                log.exception("Transaction coordinator job %s failed", name)
            self._timers[name] = self._later(interval_ms, run)

        self._timers[name] = self._later(interval_ms, run)

    def _later(self, delay_ms: int, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        return self.scheduler.call_later(max(delay_ms, 0) / 1000, callback, *args)

    def set_owned(
        self,
        partitions: dict[int, int],
        topic_id: object | None = None,
        num_partitions: int | None = None,
    ) -> None:
        """Own the ``__transaction_state`` partitions this broker leads ({partition:
        leader epoch}); a new leader epoch reloads the partition with that coordinator
        epoch. A recreated topic (new id) or partition count starts over."""
        count = num_partitions or self.config.num_partitions
        if topic_id != self.topic_id or count != self.num_partitions:
            for p in sorted(self.partitions):
                self.unload(p)
            self.topic_id = topic_id
            self.num_partitions = count
        for p in sorted(self.partitions):
            if p not in partitions or self.partitions[p].coordinator_epoch != partitions[p]:
                self.unload(p)
        for p, epoch in sorted(partitions.items()):
            if p not in self.partitions:
                try:
                    self.load(p, epoch)
                except Exception:
                    # As Kafka: the partition's ids stay unserved (NOT_COORDINATOR) rather
                    # than served from a partial replay.
                    log.exception(
                        "Failed to load %s-%d; its ids are not served", TXN_STATE_TOPIC, p
                    )
                    self.unload(p)

    def load(self, partition: int, coordinator_epoch: int) -> None:
        """Rebuild the ids of one partition, then complete what was being completed."""
        loaded: dict[str, TransactionMetadata] = {}
        count = 0
        for key, value in self.store.read(partition):
            count += 1
            if key is None:
                continue
            try:
                txn_id = decode_txn_key(key)
                if value is None:
                    loaded.pop(txn_id, None)
                else:
                    loaded[txn_id] = TransactionMetadata.from_log_value(
                        txn_id, decode_txn_value(value)
                    )
            except (TxnRecordError, IllegalTxnStateError) as e:
                log.warning(
                    "Skipping unreadable record in %s-%d: %s", TXN_STATE_TOPIC, partition, e
                )
        cache = _PartitionCache(coordinator_epoch, loaded)
        self.partitions[partition] = cache
        if count:
            log.info(
                "Loaded %d transactional id(s) from %d record(s) of %s-%d at epoch %d",
                len(loaded),
                count,
                TXN_STATE_TOPIC,
                partition,
                coordinator_epoch,
            )
        now = self.clock()
        for txn in list(loaded.values()):
            if txn.state in (S.PREPARE_COMMIT, S.PREPARE_ABORT):
                log.info(
                    "Completing transaction %s (%s) found in %s-%d",
                    txn.transactional_id,
                    txn.state.display,
                    TXN_STATE_TOPIC,
                    partition,
                )
                self._send_markers(txn, coordinator_epoch, txn.state == S.PREPARE_COMMIT, now)

    def unload(self, partition: int) -> None:
        cache = self.partitions.pop(partition, None)
        if cache is None:
            return
        for txn_id in list(cache.txns):
            work = self._marker_work.pop(txn_id, None)
            if work is not None and work.timer is not None:
                work.timer.cancel()
        log.info(
            "Unloaded %d transactional id(s) of %s-%d", len(cache.txns), TXN_STATE_TOPIC, partition
        )

    def shutdown(self) -> None:
        self.active = False
        for t in self._timers.values():
            t.cancel()
        self._timers.clear()
        for p in sorted(self.partitions):
            self.unload(p)
        close = getattr(self.markers, "close", None)
        if close is not None:
            close()

    def _lookup(self, txn_id: str) -> tuple[ErrorCode | None, _PartitionCache | None]:
        cache = self.partitions.get(self.partition_for(txn_id))
        if cache is None:
            return ErrorCode.not_coordinator, None
        return None, cache

    def get(self, txn_id: str) -> TransactionMetadata | None:
        _, cache = self._lookup(txn_id)
        return cache.txns.get(txn_id) if cache is not None else None

    def validate_timeout(self, timeout_ms: int) -> bool:
        return 0 < timeout_ms <= self.config.max_timeout_ms

    # =================================================================== log writes
    def _append(
        self, txn: TransactionMetadata, coordinator_epoch: int, transit: TxnTransit
    ) -> Outcome[ErrorCode]:
        """Write ``transit`` to ``__transaction_state``; once committed, complete it (or drop
        it on failure). Kafka's appendTransactionToLog and its callback."""
        partition = self.partition_for(txn.transactional_id)
        record = (encode_txn_key(txn.transactional_id), encode_txn_value(transit.to_log_value()))
        try:
            waiter = self.store.append(partition, [record])
        except KafkaError as e:
            return self._appended(txn, partition, coordinator_epoch, transit, e.code, str(e))
        if waiter is None:
            return self._appended(txn, partition, coordinator_epoch, transit, ErrorCode.none)
        return then(
            waiter,
            lambda code: self._appended(txn, partition, coordinator_epoch, transit, code),
        )

    def _appended(
        self,
        txn: TransactionMetadata,
        partition: int,
        coordinator_epoch: int,
        transit: TxnTransit,
        code: ErrorCode,
        why: str = "",
    ) -> ErrorCode:
        if code != ErrorCode.none:
            mapped = _log_append_error(code)
            log.info(
                "Appending %s's new metadata %s failed: %s%s (%s)",
                txn.transactional_id,
                transit,
                code.name,
                f" {why}" if why else "",
                mapped.name,
            )
            txn.abort_transition()
            return mapped
        cache = self.partitions.get(partition)
        if (
            cache is None
            or cache.coordinator_epoch != coordinator_epoch
            or cache.txns.get(txn.transactional_id) is not txn
        ):
            # The partition moved (or was reloaded) while the record was being committed.
            log.info(
                "%s's metadata %s was committed, but coordinator epoch %d is gone; "
                "answering NOT_COORDINATOR",
                txn.transactional_id,
                transit,
                coordinator_epoch,
            )
            txn.abort_transition()
            return ErrorCode.not_coordinator
        try:
            txn.complete_transition(transit)
        except IllegalTxnStateError as e:
            log.error("Cannot complete %s's transition: %s", txn.transactional_id, e)
            txn.abort_transition()
            return ErrorCode.unknown_server_error
        return ErrorCode.none

    # =================================================================== InitProducerId
    async def init_producer_id(
        self, txn_id: str, timeout_ms: int, expected: tuple[int, int] | None
    ) -> tuple[ErrorCode, int, int]:
        """Kafka's handleInitProducerId for a (non-null) transactional id."""
        fail = (NO_PRODUCER_ID, NO_PRODUCER_EPOCH)
        if txn_id == "":
            return (ErrorCode.invalid_request, *fail)
        if not self.validate_timeout(timeout_ms):
            return (ErrorCode.invalid_transaction_timeout, *fail)
        new_pid: int | None = None
        for _ in range(3):  # fetching a fresh producer id yields: look again after it
            error, cache = self._lookup(txn_id)
            if error is not None:
                return (error, *fail)
            assert cache is not None
            txn = cache.txns.get(txn_id)
            needs_pid = txn is None or (
                not txn.pending
                and txn.state in (S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT)
                and txn.epoch_exhausted
                and (expected is None or expected[1] == txn.producer_epoch)
            )
            if needs_pid and new_pid is None:
                try:
                    new_pid = await self.producer_ids()
                except KafkaError as e:
                    return (e.code, *fail)
                continue
            if txn is None:
                assert new_pid is not None
                txn = TransactionMetadata(
                    txn_id,
                    new_pid,
                    timeout_ms=timeout_ms,
                    state=S.EMPTY,
                    last_update_ms=self.clock(),
                )
                cache.txns[txn_id] = txn
                new_pid = None
            return await resolve(
                self._init_transit(txn, cache.coordinator_epoch, timeout_ms, expected, new_pid)
            )
        return (ErrorCode.concurrent_transactions, *fail)

    def _init_transit(
        self,
        txn: TransactionMetadata,
        coordinator_epoch: int,
        timeout_ms: int,
        expected: tuple[int, int] | None,
        new_pid: int | None,
    ) -> Outcome[tuple[ErrorCode, int, int]]:
        fail = (NO_PRODUCER_ID, NO_PRODUCER_EPOCH)
        if txn.pending:
            return (ErrorCode.concurrent_transactions, *fail)
        if expected is not None and not (
            txn.producer_epoch == NO_PRODUCER_EPOCH
            or expected[0] == txn.producer_id
            or (expected[0] == txn.previous_producer_id and expected[1] >= 0x7FFF - 1)
        ):
            return (ErrorCode.producer_fenced, *fail)
        now = self.clock()
        state = txn.state
        if state in (S.PREPARE_ABORT, S.PREPARE_COMMIT):
            return (ErrorCode.concurrent_transactions, *fail)
        if state == S.ONGOING:
            # Fence the current producer and abort its transaction; the client retries.
            fence = txn.prepare_fence_producer_epoch()
            ended = self._end_transaction(
                txn, fence.producer_id, fence.producer_epoch, False, False, 0
            )
            if txn.pending_state == S.PREPARE_EPOCH_FENCE:
                txn.pending_state = None
            # Answered once PrepareAbort is committed (Kafka's sendRetriableErrorCallback).
            return then(
                ended,
                lambda r: (
                    r[0] if r[0] != ErrorCode.none else ErrorCode.concurrent_transactions,
                    *fail,
                ),
            )
        if state not in (S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT):
            log.error("Found transactional id %s in state %s", txn.transactional_id, state)
            return (ErrorCode.unknown_server_error, *fail)
        if txn.epoch_exhausted and (expected is None or expected[1] == txn.producer_epoch):
            if new_pid is None:
                return (ErrorCode.concurrent_transactions, *fail)
            transit = txn.prepare_producer_id_rotation(
                new_pid, timeout_ms, now, expected is not None
            )
        else:
            found = txn.prepare_increment_producer_epoch(
                timeout_ms, expected[1] if expected is not None else None, now
            )
            if found is None:
                return (ErrorCode.producer_fenced, *fail)
            transit = found
        return then(self._append(txn, coordinator_epoch, transit), lambda e: self._inited(txn, e))

    def _inited(self, txn: TransactionMetadata, error: ErrorCode) -> tuple[ErrorCode, int, int]:
        if error != ErrorCode.none:
            return error, NO_PRODUCER_ID, NO_PRODUCER_EPOCH
        log.info(
            "Initialized transactional id %s with producer id %d and epoch %d on %s-%d",
            txn.transactional_id,
            txn.producer_id,
            txn.producer_epoch,
            TXN_STATE_TOPIC,
            self.partition_for(txn.transactional_id),
        )
        return ErrorCode.none, txn.producer_id, txn.producer_epoch

    # =================================================================== partitions
    def add_partitions(
        self,
        txn_id: str | None,
        producer_id: int,
        producer_epoch: int,
        partitions: Iterable[TopicPartition],
        client_version: int = 0,
    ) -> Outcome[ErrorCode]:
        """Kafka's handleAddPartitionsToTransaction (also AddOffsetsToTxn)."""
        if not txn_id:
            return ErrorCode.invalid_request
        error, cache = self._lookup(txn_id)
        if error is not None:
            return error
        assert cache is not None
        txn = cache.txns.get(txn_id)
        added = set(partitions)
        if txn is None or txn.producer_id != producer_id:
            return ErrorCode.invalid_producer_id_mapping
        if txn.producer_epoch != producer_epoch:
            return ErrorCode.producer_fenced
        if txn.pending or txn.state in (S.PREPARE_COMMIT, S.PREPARE_ABORT):
            return ErrorCode.concurrent_transactions
        if txn.state == S.ONGOING and added <= txn.partitions:
            return ErrorCode.none
        transit = txn.prepare_add_partitions(added, self.clock(), client_version)
        return self._append(txn, cache.coordinator_epoch, transit)

    def verify_partitions(
        self,
        txn_id: str | None,
        producer_id: int,
        producer_epoch: int,
        partitions: Iterable[TopicPartition],
    ) -> dict[TopicPartition, ErrorCode]:
        """Kafka's handleVerifyPartitionsInTransaction (KIP-890 part 1)."""
        wanted = list(partitions)
        if not txn_id:
            return dict.fromkeys(wanted, ErrorCode.invalid_request)
        error, cache = self._lookup(txn_id)
        if error is None:
            assert cache is not None
            txn = cache.txns.get(txn_id)
            if txn is None or txn.producer_id != producer_id:
                error = ErrorCode.invalid_producer_id_mapping
            elif txn.producer_epoch != producer_epoch:
                error = ErrorCode.producer_fenced
            elif txn.state in (S.PREPARE_COMMIT, S.PREPARE_ABORT):
                error = ErrorCode.concurrent_transactions
            else:
                return {
                    tp: ErrorCode.none if tp in txn.partitions else ErrorCode.transaction_abortable
                    for tp in wanted
                }
        return dict.fromkeys(wanted, error)

    # =================================================================== EndTxn
    async def end_transaction(
        self,
        txn_id: str | None,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        client_version: int = 0,
    ) -> tuple[ErrorCode, int, int]:
        """Kafka's handleEndTransaction: (error, producer id, epoch); the id and epoch are
        only meaningful for EndTxn v5 (``client_version`` 2)."""
        fail = (ErrorCode.invalid_request, NO_PRODUCER_ID, NO_PRODUCER_EPOCH)
        if not txn_id:
            return fail
        next_pid = NO_PRODUCER_ID
        if client_version >= 2:
            txn = self.get(txn_id)
            if txn is not None and txn.epoch_exhausted and txn.producer_id == producer_id:
                try:
                    next_pid = await self.producer_ids()
                except KafkaError as e:
                    return e.code, NO_PRODUCER_ID, NO_PRODUCER_EPOCH
        error, cache = self._lookup(txn_id)
        if error is not None:
            return error, NO_PRODUCER_ID, NO_PRODUCER_EPOCH
        assert cache is not None
        txn = cache.txns.get(txn_id)
        if txn is None:
            return ErrorCode.invalid_producer_id_mapping, NO_PRODUCER_ID, NO_PRODUCER_EPOCH
        return await resolve(
            self._end_transaction(
                txn, producer_id, producer_epoch, commit, True, client_version, next_pid
            )
        )

    def _end_transaction(
        self,
        txn: TransactionMetadata,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        from_client: bool,
        client_version: int,
        next_pid: int = NO_PRODUCER_ID,
    ) -> Outcome[tuple[ErrorCode, int, int]]:
        none = (NO_PRODUCER_ID, NO_PRODUCER_EPOCH)
        cache = self.partitions.get(self.partition_for(txn.transactional_id))
        if cache is None:
            return (ErrorCode.not_coordinator, *none)
        if client_version >= 2:
            return self._end_transaction_v2(
                txn,
                cache,
                producer_id,
                producer_epoch,
                commit,
                from_client,
                client_version,
                next_pid,
            )
        is_fence = False
        if txn.producer_id != producer_id:
            return (ErrorCode.invalid_producer_id_mapping, *none)
        if (from_client and producer_epoch != txn.producer_epoch) or (
            producer_epoch < txn.producer_epoch
        ):
            return (ErrorCode.producer_fenced, *none)
        if txn.pending and txn.pending_state != S.PREPARE_EPOCH_FENCE:
            return (ErrorCode.concurrent_transactions, *none)
        state = txn.state
        if state == S.ONGOING:
            target = S.PREPARE_COMMIT if commit else S.PREPARE_ABORT
            if target == S.PREPARE_ABORT and txn.pending_state == S.PREPARE_EPOCH_FENCE:
                is_fence = True
                txn.pending_state = None
                txn.producer_epoch = producer_epoch
                txn.last_producer_epoch = NO_PRODUCER_EPOCH
            transit = txn.prepare_abort_or_commit(target, 0, NO_PRODUCER_ID, self.clock(), False)
        elif state == S.COMPLETE_COMMIT:
            return (ErrorCode.none if commit else self._invalid(txn, commit), *none)
        elif state == S.COMPLETE_ABORT:
            return (ErrorCode.none if not commit else self._invalid(txn, commit), *none)
        elif state == S.PREPARE_COMMIT:
            code = ErrorCode.concurrent_transactions if commit else self._invalid(txn, commit)
            return (code, *none)
        elif state == S.PREPARE_ABORT:
            code = ErrorCode.concurrent_transactions if not commit else self._invalid(txn, commit)
            return (code, *none)
        elif state == S.EMPTY:
            return (self._invalid(txn, commit), *none)
        else:
            log.error("Found transactional id %s in state %s", txn.transactional_id, state)
            return (ErrorCode.unknown_server_error, *none)
        epoch = cache.coordinator_epoch

        def prepared(error: ErrorCode) -> tuple[ErrorCode, int, int]:
            if error != ErrorCode.none:
                if is_fence:
                    txn.has_failed_epoch_fence = True
                    log.warning(
                        "Failed to write the epoch fence of %s (%s); its epoch was bumped to "
                        "%d without telling the client",
                        txn.transactional_id,
                        error.name,
                        transit.producer_epoch,
                    )
                return (error, *none)
            # Prepare is committed: answer, and write the markers.
            self._send_markers(txn, epoch, commit, self.clock())
            return (ErrorCode.none, *none)

        return then(self._append(txn, epoch, transit), prepared)

    def _end_transaction_v2(
        self,
        txn: TransactionMetadata,
        cache: _PartitionCache,
        producer_id: int,
        producer_epoch: int,
        commit: bool,
        from_client: bool,
        client_version: int,
        next_pid: int,
    ) -> Outcome[tuple[ErrorCode, int, int]]:
        """KIP-890 part 2: every completion bumps the epoch (Kafka's endTransaction)."""
        none = (NO_PRODUCER_ID, NO_PRODUCER_EPOCH)
        current = (txn.producer_id, txn.producer_epoch)
        is_fence = txn.pending_state == S.PREPARE_EPOCH_FENCE
        retry_on_overflow = (
            not is_fence
            and txn.previous_producer_id == producer_id
            and producer_epoch == 0x7FFF - 1
            and txn.producer_epoch == 0
        )
        retry_on_bump = not is_fence and txn.producer_epoch == producer_epoch + 1
        if not is_fence:
            if txn.state in (S.ONGOING, S.EMPTY, S.DEAD, S.PREPARE_EPOCH_FENCE):
                valid_epoch = producer_epoch == txn.producer_epoch
            elif txn.state in (S.PREPARE_COMMIT, S.PREPARE_ABORT):
                valid_epoch = retry_on_bump
            else:
                valid_epoch = (
                    retry_on_bump or retry_on_overflow or producer_epoch == txn.producer_epoch
                )
        else:
            valid_epoch = (
                not from_client or producer_epoch == txn.producer_epoch
            ) and producer_epoch >= txn.producer_epoch
        is_retry = retry_on_bump or retry_on_overflow
        if txn.producer_id != producer_id and not retry_on_overflow:
            return (ErrorCode.invalid_producer_id_mapping, *none)
        if not valid_epoch:
            return (ErrorCode.producer_fenced, *none)
        if txn.pending and txn.pending_state != S.PREPARE_EPOCH_FENCE:
            return (ErrorCode.concurrent_transactions, *none)

        def completion(target: TxnState, no_partition_added: bool) -> TxnTransit:
            nxt = next_pid if (not is_fence and txn.epoch_exhausted) else NO_PRODUCER_ID
            if target == S.PREPARE_ABORT and is_fence:
                txn.pending_state = None
                txn.producer_epoch = producer_epoch
                txn.last_producer_epoch = NO_PRODUCER_EPOCH
            return txn.prepare_abort_or_commit(
                target, client_version, nxt, self.clock(), no_partition_added
            )

        state = txn.state
        if state == S.ONGOING:
            transit = completion(S.PREPARE_COMMIT if commit else S.PREPARE_ABORT, False)
        elif state == S.COMPLETE_COMMIT:
            if commit:
                return (
                    (ErrorCode.none, *current) if is_retry else (self._invalid(txn, commit), *none)
                )
            if is_retry:
                return (self._invalid(txn, commit), *none)
            transit = completion(S.PREPARE_ABORT, True)
        elif state == S.COMPLETE_ABORT:
            if not commit:
                if is_retry:
                    return (ErrorCode.none, *current)
                transit = completion(S.PREPARE_ABORT, True)
            else:
                return (self._invalid(txn, commit), *none)
        elif state == S.PREPARE_COMMIT:
            code = ErrorCode.concurrent_transactions if commit else self._invalid(txn, commit)
            return (code, *none)
        elif state == S.PREPARE_ABORT:
            code = ErrorCode.concurrent_transactions if not commit else self._invalid(txn, commit)
            return (code, *none)
        elif state == S.EMPTY:
            if commit:
                return (self._invalid(txn, commit), *none)
            transit = completion(S.PREPARE_ABORT, True)
        else:
            log.error("Found transactional id %s in state %s", txn.transactional_id, state)
            return (ErrorCode.unknown_server_error, *none)
        if transit.next_producer_id == NO_PRODUCER_ID and txn.epoch_exhausted and not is_fence:
            txn.abort_transition()  # the caller must fetch a new producer id first
            return (ErrorCode.concurrent_transactions, *none)
        epoch = cache.coordinator_epoch

        def prepared(error: ErrorCode) -> tuple[ErrorCode, int, int]:
            if error != ErrorCode.none:
                if is_fence:
                    txn.has_failed_epoch_fence = True
                return (error, *none)
            complete = self._send_markers(txn, epoch, commit, self.clock())
            # Kafka answers with the producer id and epoch of the completion (after the
            # bump; the rotated producer id when the epoch overflowed).
            return ErrorCode.none, complete.producer_id, complete.producer_epoch

        return then(self._append(txn, epoch, transit), prepared)

    @staticmethod
    def _invalid(txn: TransactionMetadata, commit: bool) -> ErrorCode:
        log.warning(
            "TransactionalId %s's state is %s, but received transaction marker result to send: %s",
            txn.transactional_id,
            txn.state.display,
            "COMMIT" if commit else "ABORT",
        )
        return ErrorCode.invalid_txn_state

    # =================================================================== markers
    def _send_markers(
        self, txn: TransactionMetadata, coordinator_epoch: int, commit: bool, now: int
    ) -> TxnTransit:
        """PrepareCommit/PrepareAbort is committed: write the markers, then Complete.
        Returns the completion to be written (the id is pending it meanwhile)."""
        complete = txn.prepare_complete(now)
        work = _MarkerWork(txn, coordinator_epoch, commit, complete, set(txn.partitions))
        self._marker_work[txn.transactional_id] = work
        self._write_markers(work)
        return complete

    def _current(self, work: _MarkerWork) -> bool:
        """Whether ``work`` is still this coordinator's to do (same id, same epoch)."""
        txn = work.txn
        if self._marker_work.get(txn.transactional_id) is not work:
            return False
        cache = self.partitions.get(self.partition_for(txn.transactional_id))
        if cache is None or cache.coordinator_epoch != work.coordinator_epoch:
            self._marker_work.pop(txn.transactional_id, None)
            return False
        return True

    def _write_markers(self, work: _MarkerWork) -> None:
        work.timer = None
        if not self._current(work):
            return
        txn = work.txn
        if not work.remaining:
            self._write_completion(work)
            return
        gone = {tp for tp in work.remaining if not self.markers.partition_exists(tp)}
        if gone:
            log.info(
                "Skipping the markers of %s for %s: the partitions are deleted",
                txn.transactional_id,
                sorted(gone),
            )
            work.remaining -= gone
            if not work.remaining:
                self._write_completion(work)
                return
        try:
            written = self.markers.write_markers(
                txn.producer_id,
                txn.producer_epoch,
                work.commit,
                work.coordinator_epoch,
                sorted(work.remaining),
            )
        except Exception:
            log.exception("Writing the markers of %s failed; retrying", txn.transactional_id)
            written = {}
        then(written, lambda errors: self._markers_written(work, errors))

    def _markers_written(self, work: _MarkerWork, errors: dict[TopicPartition, ErrorCode]) -> None:
        """Kafka's TransactionMarkerRequestCompletionHandler."""
        if not self._current(work):
            return
        txn = work.txn
        for tp, code in errors.items():
            if code == ErrorCode.none:
                work.remaining.discard(tp)
            elif code in (
                ErrorCode.invalid_producer_epoch,
                ErrorCode.transaction_coordinator_fenced,
            ):
                # Kafka: "producer or coordinator epoch has changed, this txn can now be
                # ignored" (a newer epoch already ended it on that partition).
                log.warning(
                    "Marker of %s for %s refused with %s; not retried",
                    txn.transactional_id,
                    tp,
                    code.name,
                )
                work.remaining.discard(tp)
            elif code in (ErrorCode.unsupported_for_message_format, ErrorCode.unsupported_version):
                # Kafka: the producer could not have written there; drop the partition.
                work.remaining.discard(tp)
            else:
                # NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION, NOT_ENOUGH_REPLICAS(_AFTER
                # _APPEND), REQUEST_TIMED_OUT, a lost connection...: the writer looks the
                # leader up again on the retry.
                log.info(
                    "Marker of %s for %s failed with %s; retrying",
                    txn.transactional_id,
                    tp,
                    code.name,
                )
        if work.remaining:
            work.timer = self._later(MARKER_RETRY_BACKOFF_MS, self._write_markers, work)
            return
        self._write_completion(work)

    def _write_completion(self, work: _MarkerWork) -> None:
        """Every marker is written: CompleteCommit/CompleteAbort (Kafka's
        maybeWriteTxnCompletion, retried while the log is unavailable)."""
        txn = work.txn
        then(
            self._append(txn, work.coordinator_epoch, work.complete),
            lambda error: self._completed(work, error),
        )

    def _completed(self, work: _MarkerWork, error: ErrorCode) -> None:
        txn = work.txn
        if error == ErrorCode.none:
            if self._marker_work.get(txn.transactional_id) is work:
                self._marker_work.pop(txn.transactional_id, None)
            log.debug("Completed transaction %s: %s", txn.transactional_id, txn.state.display)
            return
        if error == ErrorCode.coordinator_not_available and self._current(work):
            # Kafka retries the completion while the log is unavailable; the pending
            # state must be set again for the retry.
            work.complete = txn.prepare_complete(self.clock())
            work.timer = self._later(MARKER_RETRY_BACKOFF_MS, self._write_markers, work)
            return
        log.warning(
            "Cannot complete transaction %s: %s; a new coordinator will",
            txn.transactional_id,
            error.name,
        )
        if self._marker_work.get(txn.transactional_id) is work:
            self._marker_work.pop(txn.transactional_id, None)

    # =================================================================== background
    def abort_timed_out_transactions(self) -> int:
        """Abort, with a bumped epoch, transactions open longer than their timeout."""
        now = self.clock()
        aborted = 0
        for cache in list(self.partitions.values()):
            for txn in list(cache.txns.values()):
                if txn.pending or txn.state != S.ONGOING:
                    continue
                if txn.start_ms + txn.timeout_ms >= now:
                    continue
                log.info(
                    "Aborting transaction %s (producer id %d, epoch %d): open for more than "
                    "its timeout of %d ms",
                    txn.transactional_id,
                    txn.producer_id,
                    txn.producer_epoch,
                    txn.timeout_ms,
                )
                fence = txn.prepare_fence_producer_epoch()
                ended = self._end_transaction(
                    txn, fence.producer_id, fence.producer_epoch, False, False, 0
                )
                if txn.pending_state == S.PREPARE_EPOCH_FENCE:
                    # Refused before anything was written.
                    txn.pending_state = None
                # Counted when started (a replicated write completes later).
                if then(ended, lambda r, t=txn: self._timed_out_aborted(t, r[0])):
                    aborted += 1
        return aborted

    @staticmethod
    def _timed_out_aborted(txn: TransactionMetadata, error: ErrorCode) -> bool:
        if error != ErrorCode.none:
            log.warning(
                "Rollback of timed-out transaction %s failed: %s",
                txn.transactional_id,
                error.name,
            )
            if txn.pending_state == S.PREPARE_EPOCH_FENCE:
                txn.pending_state = None
        return error == ErrorCode.none

    def remove_expired_transactional_ids(self) -> int:
        """Tombstone ids idle in a final state for transactional.id.expiration.ms."""
        now = self.clock()
        limit = now - self.config.transactional_id_expiration_ms
        removed = 0
        for partition, cache in list(self.partitions.items()):
            expired = [
                txn
                for txn in cache.txns.values()
                if not txn.pending and txn.state.expiration_allowed and txn.last_update_ms <= limit
            ]
            if not expired:
                continue
            for txn in expired:
                txn.prepare_dead()
            try:
                waiter = self.store.append(
                    partition, [(encode_txn_key(t.transactional_id), None) for t in expired]
                )
            except KafkaError as e:
                self._expired(partition, cache, expired, e.code)
                continue
            then(
                ErrorCode.none if waiter is None else waiter,
                lambda code, p=partition, c=cache, ex=expired: self._expired(p, c, ex, code),
            )
            removed += len(expired)
        return removed

    def _expired(
        self,
        partition: int,
        cache: _PartitionCache,
        expired: list[TransactionMetadata],
        code: ErrorCode,
    ) -> None:
        """The tombstones of expired ids are committed (or not): Kafka's
        removeFromCacheCallback."""
        if code != ErrorCode.none:
            log.warning(
                "Cannot expire transactional ids in %s-%d: %s",
                TXN_STATE_TOPIC,
                partition,
                code.name,
            )
            for txn in expired:
                txn.abort_transition()
            return
        owned = self.partitions.get(partition) is cache
        for txn in expired:
            mine = owned and cache.txns.get(txn.transactional_id) is txn
            if mine and txn.pending_state == S.DEAD:
                cache.txns.pop(txn.transactional_id, None)
                log.info("Expired transactional id %s", txn.transactional_id)
            txn.abort_transition()

    # =================================================================== admin
    def describe(self, txn_id: str) -> tuple[ErrorCode, TransactionMetadata | None]:
        if not self.active:
            return ErrorCode.coordinator_not_available, None
        if txn_id == "":
            return ErrorCode.invalid_request, None
        error, cache = self._lookup(txn_id)
        if error is not None:
            return error, None
        assert cache is not None
        txn = cache.txns.get(txn_id)
        if txn is None or txn.state == S.DEAD:
            return ErrorCode.transactional_id_not_found, None
        return ErrorCode.none, txn

    def list_transactions(
        self, states: Sequence[str], producer_ids: Sequence[int], duration_ms: int = -1
    ) -> tuple[ErrorCode, list[ListedTxn], list[str]]:
        """(error, transactions, unknown state filters): Kafka's listTransactionStates."""
        if not self.active:
            return ErrorCode.coordinator_not_available, [], []
        wanted: set[TxnState] = set()
        unknown: list[str] = []
        for name in states:
            state = TxnState.from_name(name)
            if state is None:
                unknown.append(name)
            else:
                wanted.add(state)
        pids = set(producer_ids)
        now = self.clock()
        out = []
        for cache in self.partitions.values():
            for txn in cache.txns.values():
                if txn.state == S.DEAD:
                    continue
                if pids and txn.producer_id not in pids:
                    continue
                if states and txn.state not in wanted:
                    continue
                if duration_ms >= 0 and now - txn.start_ms <= duration_ms:
                    continue
                out.append(ListedTxn(txn.transactional_id, txn.producer_id, txn.state.display))
        out.sort(key=lambda t: t.transactional_id)
        return ErrorCode.none, out, unknown


__all__ = [
    "ListedTxn",
    "MarkerWriter",
    "TXN_STATE_TOPIC",
    "TransactionCoordinator",
    "TxnConfig",
    "TxnStore",
]
