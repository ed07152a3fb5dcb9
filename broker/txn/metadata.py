"""Transaction metadata and its state machine: Kafka 4's ``TransactionMetadata``.

One ``TransactionMetadata`` per transactional id. A change goes in two steps, exactly as
in Kafka: ``prepare_*`` checks the transition is legal, sets ``pending_state`` and
returns the target as a ``TxnTransit``; once that target is in ``__transaction_state``,
``complete_transition`` applies it (or ``abort_transition`` drops it when the write
failed). A pending state makes every other request for the id wait
(CONCURRENT_TRANSACTIONS). States and their ids are Kafka's (the ids are persisted):

    Empty(0) -> Ongoing(1) -> PrepareCommit(2) / PrepareAbort(3)
             -> CompleteCommit(4) / CompleteAbort(5) -> Ongoing ... ; Dead(6) on expiry;
    PrepareEpochFence(7): a pending state only, fencing the producer before an abort.

``client_version`` >= 2 is KIP-890 part 2 (EndTxn v5): every completion bumps the
epoch, the new epoch is returned to the client, and an exhausted epoch rotates the
producer id through ``next_producer_id``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from pybroker.broker.txn.records import TxnLogValue

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
SHORT_MAX = 0x7FFF

TopicPartition = tuple[str, int]


class IllegalTxnStateError(Exception):
    """A transition the state machine forbids: a bug, never a client error."""


class TxnState(enum.Enum):
    EMPTY = (0, "Empty")
    ONGOING = (1, "Ongoing")
    PREPARE_COMMIT = (2, "PrepareCommit")
    PREPARE_ABORT = (3, "PrepareAbort")
    COMPLETE_COMMIT = (4, "CompleteCommit")
    COMPLETE_ABORT = (5, "CompleteAbort")
    DEAD = (6, "Dead")
    PREPARE_EPOCH_FENCE = (7, "PrepareEpochFence")

    @property
    def id(self) -> int:
        return self.value[0]

    @property
    def display(self) -> str:
        """The name DescribeTransactions / ListTransactions report."""
        return self.value[1]

    @classmethod
    def from_id(cls, state_id: int) -> TxnState:
        for s in cls:
            if s.id == state_id:
                return s
        raise IllegalTxnStateError(f"Unknown transaction state id {state_id}")

    @classmethod
    def from_name(cls, name: str) -> TxnState | None:
        for s in cls:
            if s.display == name:
                return s
        return None

    @property
    def expiration_allowed(self) -> bool:
        return self in (TxnState.EMPTY, TxnState.COMPLETE_COMMIT, TxnState.COMPLETE_ABORT)


S = TxnState
VALID_PREVIOUS: dict[TxnState, frozenset[TxnState]] = {
    S.EMPTY: frozenset({S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT}),
    S.ONGOING: frozenset({S.ONGOING, S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT}),
    S.PREPARE_COMMIT: frozenset({S.ONGOING}),
    S.PREPARE_ABORT: frozenset(
        {S.ONGOING, S.PREPARE_EPOCH_FENCE, S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT}
    ),
    S.COMPLETE_COMMIT: frozenset({S.PREPARE_COMMIT}),
    S.COMPLETE_ABORT: frozenset({S.PREPARE_ABORT}),
    S.DEAD: frozenset({S.EMPTY, S.COMPLETE_ABORT, S.COMPLETE_COMMIT}),
    S.PREPARE_EPOCH_FENCE: frozenset({S.ONGOING}),
}


def is_epoch_exhausted(epoch: int) -> bool:
    """Kafka never hands out Short.MAX_VALUE so it can always fence with one more."""
    return epoch >= SHORT_MAX - 1


@dataclass(frozen=True, slots=True)
class TxnTransit:
    """Kafka's TxnTransitMetadata: the state a transactional id is about to have."""

    producer_id: int
    prev_producer_id: int
    next_producer_id: int
    producer_epoch: int
    last_producer_epoch: int
    timeout_ms: int
    state: TxnState
    partitions: frozenset[TopicPartition]
    start_ms: int
    last_update_ms: int
    client_version: int

    def to_log_value(self) -> TxnLogValue:
        return TxnLogValue(
            producer_id=self.producer_id,
            producer_epoch=self.producer_epoch,
            timeout_ms=self.timeout_ms,
            status=self.state.id,
            partitions=tuple(sorted(self.partitions)),
            last_update_ms=self.last_update_ms,
            start_ms=self.start_ms,
            previous_producer_id=self.prev_producer_id if self.client_version >= 2 else -1,
            next_producer_id=self.next_producer_id,
            client_transaction_version=self.client_version,
        )


@dataclass(slots=True, eq=False)
class TransactionMetadata:
    transactional_id: str
    producer_id: int
    previous_producer_id: int = NO_PRODUCER_ID
    next_producer_id: int = NO_PRODUCER_ID
    producer_epoch: int = NO_PRODUCER_EPOCH
    last_producer_epoch: int = NO_PRODUCER_EPOCH
    timeout_ms: int = 60_000
    state: TxnState = TxnState.EMPTY
    partitions: set[TopicPartition] = field(default_factory=set)
    start_ms: int = -1
    last_update_ms: int = -1
    client_version: int = 0
    pending_state: TxnState | None = None
    # A fence whose log write failed: the next fence reuses the bumped epoch.
    has_failed_epoch_fence: bool = False

    @classmethod
    def from_log_value(cls, transactional_id: str, v: TxnLogValue) -> TransactionMetadata:
        state = TxnState.from_id(v.status)
        return cls(
            transactional_id=transactional_id,
            producer_id=v.producer_id,
            previous_producer_id=v.previous_producer_id,
            next_producer_id=v.next_producer_id,
            producer_epoch=v.producer_epoch,
            last_producer_epoch=NO_PRODUCER_EPOCH,
            timeout_ms=v.timeout_ms,
            state=state,
            partitions=set(v.partitions),
            start_ms=v.start_ms,
            last_update_ms=v.last_update_ms,
            client_version=v.client_transaction_version,
        )

    # -- queries -----------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        return self.pending_state is not None

    @property
    def epoch_exhausted(self) -> bool:
        return is_epoch_exhausted(self.producer_epoch)

    @property
    def has_pending_transaction(self) -> bool:
        return self.state in (S.ONGOING, S.PREPARE_ABORT, S.PREPARE_COMMIT)

    # -- prepared transitions (Kafka's prepare*) ---------------------------------------

    def _transit(
        self,
        state: TxnState,
        producer_id: int,
        epoch: int,
        last_epoch: int,
        timeout_ms: int,
        partitions: frozenset[TopicPartition],
        start_ms: int,
        update_ms: int,
        client_version: int,
        next_producer_id: int = NO_PRODUCER_ID,
    ) -> TxnTransit:
        if self.pending_state is not None:
            raise IllegalTxnStateError(
                f"Preparing transaction state transition to {state.display} while it already "
                f"has a pending state {self.pending_state.display}"
            )
        if producer_id < 0:
            raise IllegalTxnStateError(f"Illegal new producer id {producer_id}")
        if state != S.DEAD and epoch < 0:
            raise IllegalTxnStateError(f"Illegal new producer epoch {epoch}")
        if self.state not in VALID_PREVIOUS[state]:
            raise IllegalTxnStateError(
                f"Preparing transaction state transition to {state.display} failed since the "
                f"target state {state.display} is not a valid previous state of the current "
                f"state {self.state.display}"
            )
        self.pending_state = state
        return TxnTransit(
            producer_id,
            self.producer_id,
            next_producer_id,
            epoch,
            last_epoch,
            timeout_ms,
            state,
            partitions,
            start_ms,
            update_ms,
            client_version,
        )

    def prepare_fence_producer_epoch(self) -> TxnTransit:
        if self.producer_epoch == SHORT_MAX:
            raise IllegalTxnStateError(
                "Cannot fence producer with epoch equal to Short.MaxValue since this would overflow"
            )
        bumped = self.producer_epoch if self.has_failed_epoch_fence else self.producer_epoch + 1
        return self._transit(
            S.PREPARE_EPOCH_FENCE,
            self.producer_id,
            bumped,
            NO_PRODUCER_EPOCH,
            self.timeout_ms,
            frozenset(self.partitions),
            self.start_ms,
            self.last_update_ms,
            self.client_version,
        )

    def prepare_increment_producer_epoch(
        self, timeout_ms: int, expected_epoch: int | None, now: int
    ) -> TxnTransit | None:
        """None: the expected epoch is neither current nor last (PRODUCER_FENCED)."""
        if self.epoch_exhausted:
            raise IllegalTxnStateError(
                f"Cannot allocate any more producer epochs for producerId {self.producer_id}"
            )
        bumped = self.producer_epoch + 1
        if expected_epoch is None:
            epoch, last = bumped, NO_PRODUCER_EPOCH
        elif self.producer_epoch == NO_PRODUCER_EPOCH or expected_epoch == self.producer_epoch:
            epoch, last = bumped, self.producer_epoch
        elif expected_epoch == self.last_producer_epoch:
            # a retry of a bump whose answer the producer lost
            epoch, last = self.producer_epoch, self.last_producer_epoch
        else:
            return None
        return self._transit(
            S.EMPTY,
            self.producer_id,
            epoch,
            last,
            timeout_ms,
            frozenset(),
            -1,
            now,
            self.client_version,
        )

    def prepare_producer_id_rotation(
        self, new_producer_id: int, timeout_ms: int, now: int, record_last_epoch: bool
    ) -> TxnTransit:
        if self.has_pending_transaction:
            raise IllegalTxnStateError(
                "Cannot rotate producer ids while a transaction is still pending"
            )
        return self._transit(
            S.EMPTY,
            new_producer_id,
            0,
            self.producer_epoch if record_last_epoch else NO_PRODUCER_EPOCH,
            timeout_ms,
            frozenset(),
            -1,
            now,
            self.client_version,
        )

    def prepare_add_partitions(
        self, added: set[TopicPartition], now: int, client_version: int
    ) -> TxnTransit:
        start = (
            now if self.state in (S.EMPTY, S.COMPLETE_ABORT, S.COMPLETE_COMMIT) else self.start_ms
        )
        return self._transit(
            S.ONGOING,
            self.producer_id,
            self.producer_epoch,
            self.last_producer_epoch,
            self.timeout_ms,
            frozenset(self.partitions | added),
            start,
            now,
            client_version,
        )

    def prepare_abort_or_commit(
        self,
        state: TxnState,
        client_version: int,
        next_producer_id: int,
        now: int,
        no_partition_added: bool,
    ) -> TxnTransit:
        if client_version >= 2:
            epoch, last = self.producer_epoch + 1, self.producer_epoch
        else:
            epoch, last = self.producer_epoch, self.last_producer_epoch
        start = now if no_partition_added else self.start_ms
        return self._transit(
            state,
            self.producer_id,
            epoch,
            last,
            self.timeout_ms,
            frozenset(self.partitions),
            start,
            now,
            client_version,
            next_producer_id,
        )

    def prepare_complete(self, now: int) -> TxnTransit:
        state = S.COMPLETE_COMMIT if self.state == S.PREPARE_COMMIT else S.COMPLETE_ABORT
        self.has_failed_epoch_fence = False
        if self.client_version >= 2 and self.next_producer_id != NO_PRODUCER_ID:
            producer_id, epoch = self.next_producer_id, 0
        else:
            producer_id, epoch = self.producer_id, self.producer_epoch
        return self._transit(
            state,
            producer_id,
            epoch,
            self.last_producer_epoch,
            self.timeout_ms,
            frozenset(),
            self.start_ms,
            now,
            self.client_version,
        )

    def prepare_dead(self) -> TxnTransit:
        return self._transit(
            S.DEAD,
            self.producer_id,
            self.producer_epoch,
            self.last_producer_epoch,
            self.timeout_ms,
            frozenset(),
            self.start_ms,
            self.last_update_ms,
            self.client_version,
        )

    # -- completing or dropping a prepared transition ----------------------------------

    def abort_transition(self) -> None:
        """The write of the pending transition failed: nothing changes."""
        self.pending_state = None

    def complete_transition(self, t: TxnTransit) -> None:
        """Kafka's completeTransitionTo, with its consistency checks."""
        to = self.pending_state
        if to is None or to != t.state:
            raise IllegalTxnStateError(
                f"TransactionalId {self.transactional_id} completing a transition to "
                f"{t.state.display} while its pending state is {to}"
            )
        if to == S.EMPTY:
            bump_ok = t.producer_epoch == self.producer_epoch + 1 or (
                t.producer_epoch == 0 and t.producer_id != self.producer_id
            )
            if (
                (self.producer_epoch != t.producer_epoch and not bump_ok)
                or t.partitions
                or t.start_ms != -1
            ):
                self._fail(t)
            self.timeout_ms = t.timeout_ms
            # Kafka 4.1's completeTransitionTo takes every field of the transit: an epoch
            # bump (InitProducerId, also after a fence) leaves no transaction start time.
            self.start_ms = t.start_ms
            self.producer_epoch = t.producer_epoch
            self.last_producer_epoch = t.last_producer_epoch
            self.producer_id = t.producer_id
            self.previous_producer_id = t.prev_producer_id
        elif to == S.ONGOING:
            if (
                not self._valid_epoch(t)
                or not self.partitions <= t.partitions
                or self.timeout_ms != t.timeout_ms
            ):
                self._fail(t)
            self.start_ms = t.start_ms
            self.partitions |= t.partitions
        elif to in (S.PREPARE_ABORT, S.PREPARE_COMMIT):
            empty_abort = (
                to == S.PREPARE_ABORT
                and t.client_version >= 2
                and self.state in (S.EMPTY, S.COMPLETE_COMMIT, S.COMPLETE_ABORT)
            )
            if (
                not self._valid_epoch(t)
                or set(self.partitions) != set(t.partitions)
                or self.timeout_ms != t.timeout_ms
                or not (self.start_ms == t.start_ms or empty_abort)
            ):
                self._fail(t)
            if t.client_version >= 2:
                self.producer_epoch = t.producer_epoch
                self.last_producer_epoch = t.last_producer_epoch
                self.next_producer_id = t.next_producer_id
                self.start_ms = t.start_ms
        elif to in (S.COMPLETE_ABORT, S.COMPLETE_COMMIT):
            if not self._valid_epoch(t) or self.timeout_ms != t.timeout_ms or t.start_ms == -1:
                self._fail(t)
            self.start_ms = t.start_ms
            self.partitions.clear()
            if t.client_version >= 2:
                self.producer_epoch = t.producer_epoch
                self.last_producer_epoch = t.last_producer_epoch
                self.previous_producer_id = t.prev_producer_id
                self.producer_id = t.producer_id
                self.next_producer_id = t.next_producer_id
        else:  # PrepareEpochFence and Dead are never completed
            self._fail(t)
        self.client_version = t.client_version
        self.last_update_ms = t.last_update_ms
        self.pending_state = None
        self.state = to

    def _valid_epoch(self, t: TxnTransit) -> bool:
        if t.client_version >= 2:
            if t.state in (S.COMPLETE_COMMIT, S.COMPLETE_ABORT) and t.producer_epoch == 0:
                return (
                    t.last_producer_epoch == self.last_producer_epoch
                    and t.prev_producer_id == self.producer_id
                )
            if t.state in (S.PREPARE_COMMIT, S.PREPARE_ABORT):
                return (
                    t.last_producer_epoch == self.producer_epoch
                    and t.producer_id == self.producer_id
                )
        return t.producer_epoch == self.producer_epoch and t.producer_id == self.producer_id

    def _fail(self, t: TxnTransit) -> None:
        raise IllegalTxnStateError(
            f"TransactionalId {self.transactional_id} failed transition to state {t} due to "
            f"unexpected metadata {self}"
        )


__all__ = [
    "IllegalTxnStateError",
    "NO_PRODUCER_EPOCH",
    "NO_PRODUCER_ID",
    "TopicPartition",
    "TransactionMetadata",
    "TxnState",
    "TxnTransit",
    "is_epoch_exhausted",
]
