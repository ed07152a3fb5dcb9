"""One partition replica on this broker: Kafka's ``Partition`` (kafka.cluster.Partition).

A Partition owns its local Log and, while this broker leads it, the leader's view of
every follower (log end offset, when it was last caught up), the ISR and the high
watermark. It is a state machine without I/O: the ReplicaManager feeds it follower
fetches and clock ticks, and carries out the ISR changes it proposes (a conditional
write of the partition's state in the metadata store, Kafka's ZooKeeper-mode
``Partition.shrinkIsr``/``expandIsr``). While such a change is in flight the partition
counts the larger of the old and new ISR for the high watermark (Kafka's ``maximalIsr``),
so a shrink that is not yet committed can never let the high watermark overtake a
replica that might still be elected.

Rules copied from Kafka 3.x:
- a follower is caught up when its fetch offset reaches the leader's log end offset as
  of that fetch, or the leader's end offset as of its previous fetch
  (``ReplicaState.updateFetchState``); it leaves the ISR after ``replica.lag.time.max.ms``
  without catching up (``maybeShrinkIsr``);
- a follower joins the ISR when its end offset reaches the high watermark and the start
  of the leader's current epoch (``isFollowerInSync``);
- the high watermark is the smallest end offset over the leader and the maximal ISR
  (plus caught-up replicas about to join), and never moves backwards
  (``maybeIncrementLeaderHW``);
- acks=all is done when the high watermark passes the append, and fails with
  NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR shrank below min.insync.replicas meanwhile
  (``checkEnoughReplicasReachOffset``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from pybroker.protocol.errors import ErrorCode, KafkaError
from pybroker.storage.log import Log

log = logging.getLogger(__name__)

UNKNOWN_OFFSET = -1


@dataclass(slots=True)
class FollowerState:
    """The leader's view of one follower (Kafka's ``ReplicaState``)."""

    broker_id: int
    log_end_offset: int = UNKNOWN_OFFSET
    log_start_offset: int = UNKNOWN_OFFSET
    last_caught_up_ms: int = 0
    last_fetch_leader_leo: int = UNKNOWN_OFFSET
    last_fetch_ms: int = 0

    def update_fetch(self, fetch_offset: int, start_offset: int, now: int, leader_leo: int) -> None:
        if fetch_offset >= leader_leo:
            self.last_caught_up_ms = max(self.last_caught_up_ms, now)
        elif fetch_offset >= self.last_fetch_leader_leo:
            self.last_caught_up_ms = max(self.last_caught_up_ms, self.last_fetch_ms)
        self.log_end_offset = fetch_offset
        self.log_start_offset = start_offset
        self.last_fetch_leader_leo = leader_leo
        self.last_fetch_ms = now

    def is_caught_up(self, leader_leo: int, now: int, max_lag_ms: int) -> bool:
        return leader_leo == self.log_end_offset or now - self.last_caught_up_ms <= max_lag_ms

    def reset(self, in_isr: bool, now: int) -> None:
        self.log_end_offset = UNKNOWN_OFFSET
        self.log_start_offset = UNKNOWN_OFFSET
        self.last_caught_up_ms = now if in_isr else 0
        self.last_fetch_leader_leo = UNKNOWN_OFFSET
        self.last_fetch_ms = 0


@dataclass(frozen=True, slots=True)
class LeaderAndIsr:
    """A partition's replicated state as the metadata store holds it."""

    leader: int
    leader_epoch: int
    isr: tuple[int, ...]
    replicas: tuple[int, ...]
    version: int = 0  # the store's version of this state (the znode's zkVersion)


@dataclass(slots=True)
class _Waiter:
    required_offset: int
    future: asyncio.Future[ErrorCode]


@dataclass(slots=True)
class _Pending:
    """An ISR change proposed to the store and not yet confirmed."""

    isr: tuple[int, ...]


@dataclass
class Partition:
    topic: str
    index: int
    local_id: int
    log: Log
    state: LeaderAndIsr | None = None
    followers: dict[int, FollowerState] = field(default_factory=dict)
    leader_epoch_start_offset: int = UNKNOWN_OFFSET
    pending_isr: _Pending | None = None
    _waiters: list[_Waiter] = field(default_factory=list)

    # ------------------------------------------------------------------ roles
    @property
    def is_leader(self) -> bool:
        return self.state is not None and self.state.leader == self.local_id

    @property
    def leader_epoch(self) -> int:
        return self.state.leader_epoch if self.state else -1

    @property
    def isr(self) -> tuple[int, ...]:
        return self.state.isr if self.state else ()

    @property
    def maximal_isr(self) -> frozenset[int]:
        """The committed ISR together with any pending change (Kafka's maximalIsr)."""
        isr = frozenset(self.isr)
        return isr | frozenset(self.pending_isr.isr) if self.pending_isr else isr

    def make_leader(self, state: LeaderAndIsr, now: int) -> bool:
        """Become (or stay) leader for ``state``; True if this starts a new leadership."""
        old = self.state
        new_epoch = old is None or state.leader_epoch > old.leader_epoch
        was_leader = self.is_leader
        self.state = state
        lg = self.log
        if new_epoch or not was_leader:
            self.pending_isr = None
            lg.assign_epoch_start_offset(state.leader_epoch)
            self.leader_epoch_start_offset = lg.log_end_offset
            self.followers = {r: FollowerState(r) for r in state.replicas if r != self.local_id}
            for r, f in self.followers.items():
                f.reset(r in state.isr, now)
        else:
            # Same leadership, a newer stored state (an ISR or replica change). A proposal
            # in flight either landed or lost to this write: either way it is settled.
            if old is not None and state.version != old.version:
                self.pending_isr = None
            for r in state.replicas:
                if r != self.local_id and r not in self.followers:
                    self.followers[r] = FollowerState(r)
            for r in list(self.followers):
                if r not in state.replicas:
                    del self.followers[r]
        self.maybe_increment_hw(now)
        return new_epoch or not was_leader

    def make_follower(self, state: LeaderAndIsr) -> bool:
        """Follow ``state.leader``; True if the leader or epoch changed (refetch, truncate)."""
        old = self.state
        self.state = state
        self.pending_isr = None
        self.followers = {}
        self.fail_waiters(ErrorCode.not_leader_or_follower)
        return old is None or old.leader != state.leader or old.leader_epoch != state.leader_epoch

    def update_state(self, state: LeaderAndIsr) -> None:
        """Same leader and epoch, new ISR or version (e.g. our own ISR write confirmed)."""
        self.state = state
        if self.pending_isr is not None and tuple(sorted(self.pending_isr.isr)) == tuple(
            sorted(state.isr)
        ):
            self.pending_isr = None

    # ------------------------------------------------------------------ leader side
    def check_leader(self, current_leader_epoch: int = -1) -> None:
        """NOT_LEADER_OR_FOLLOWER / FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH as Kafka."""
        check_epoch(current_leader_epoch, self.leader_epoch)
        if not self.is_leader:
            raise KafkaError(
                f"Leader not local for partition {self.topic}-{self.index}",
                ErrorCode.not_leader_or_follower,
            )

    def check_min_isr_for_append(self, acks: int, min_isr: int) -> None:
        """acks=all refuses to append below min.insync.replicas (committed ISR)."""
        if acks == -1 and len(self.isr) < min_isr:
            raise KafkaError(
                f"The size of the current ISR {set(self.isr)} is insufficient to satisfy the "
                f"min.isr requirement of {min_isr} for partition {self.topic}-{self.index}",
                ErrorCode.not_enough_replicas,
            )

    def update_follower_fetch(
        self, replica_id: int, fetch_offset: int, start_offset: int, now: int
    ) -> bool:
        """A follower fetched at ``fetch_offset``: record it; True if the HW moved."""
        follower = self.followers.get(replica_id)
        if follower is None:
            raise KafkaError(
                f"Replica {replica_id} is not a replica of {self.topic}-{self.index}",
                ErrorCode.not_leader_or_follower,
            )
        follower.update_fetch(fetch_offset, start_offset, now, self.log.log_end_offset)
        return self.maybe_increment_hw(now)

    def maybe_increment_hw(self, now: int, max_lag_ms: int | None = None) -> bool:
        """Raise the HW to the smallest LEO among the leader and the (maximal) ISR."""
        if not self.is_leader:
            return False
        lg = self.log
        leo = lg.log_end_offset
        new_hw = leo
        maximal = self.maximal_isr
        for r, f in self.followers.items():
            joining = (
                max_lag_ms is not None
                and f.is_caught_up(leo, now, max_lag_ms)
                and f.log_end_offset >= self.leader_epoch_start_offset
            )
            if r in maximal or joining:
                # An unknown end offset (no fetch yet this epoch) holds the HW where it is.
                f_leo = f.log_end_offset if f.log_end_offset >= 0 else lg.high_watermark
                new_hw = min(new_hw, f_leo)
        old = lg.high_watermark
        if new_hw > old:
            lg.high_watermark = new_hw
            self._complete_waiters()
            return True
        return False

    def isr_to_expand(self, eligible: Callable[[int], bool]) -> tuple[int, ...] | None:
        """A new ISR with every eligible follower that caught up to the HW, or None."""
        if not self.is_leader or self.pending_isr is not None:
            return None
        hw = self.log.high_watermark
        joining = [
            r
            for r, f in self.followers.items()
            if r not in self.isr
            and eligible(r)
            and f.log_end_offset >= hw
            and f.log_end_offset >= self.leader_epoch_start_offset
        ]
        if not joining:
            return None
        return tuple(self.isr) + tuple(sorted(joining))

    def isr_to_shrink(self, now: int, max_lag_ms: int) -> tuple[int, ...] | None:
        """A new ISR without the followers lagging over ``max_lag_ms``, or None."""
        if not self.is_leader or self.pending_isr is not None:
            return None
        leo = self.log.log_end_offset
        out = {
            r
            for r in self.isr
            if r != self.local_id
            and (f := self.followers.get(r)) is not None
            and not f.is_caught_up(leo, now, max_lag_ms)
        }
        if not out:
            return None
        return tuple(r for r in self.isr if r not in out)

    def propose_isr(self, isr: tuple[int, ...]) -> None:
        """An ISR change is being written to the store: count both until it is confirmed."""
        self.pending_isr = _Pending(isr)

    def isr_write_failed(self) -> None:
        self.pending_isr = None

    # ------------------------------------------------------------------ commit waiters
    def wait_for_commit(self, required_offset: int) -> asyncio.Future[ErrorCode]:
        """A future resolved with NONE once the HW passes ``required_offset`` (exclusive),
        NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR fell below min ISR meanwhile (decided
        by the caller), or NOT_LEADER_OR_FOLLOWER if leadership is lost first."""
        fut: asyncio.Future[ErrorCode] = asyncio.get_running_loop().create_future()
        if not self.is_leader:
            fut.set_result(ErrorCode.not_leader_or_follower)
        elif self.log.high_watermark >= required_offset:
            fut.set_result(ErrorCode.none)
        else:
            self._waiters.append(_Waiter(required_offset, fut))
        return fut

    def _complete_waiters(self) -> None:
        if not self._waiters:
            return
        hw = self.log.high_watermark
        keep = []
        for w in self._waiters:
            if w.future.done():
                continue
            if hw >= w.required_offset:
                w.future.set_result(ErrorCode.none)
            else:
                keep.append(w)
        self._waiters = keep

    def fail_waiters(self, code: ErrorCode) -> None:
        for w in self._waiters:
            if not w.future.done():
                w.future.set_result(code)
        self._waiters = []

    @property
    def pending_commits(self) -> int:
        return sum(1 for w in self._waiters if not w.future.done())

    # ------------------------------------------------------------------ follower side
    def follower_update_hw(self, leader_hw: int) -> None:
        """A follower's HW is the leader's, capped at what it holds."""
        lg = self.log
        lg.high_watermark = max(lg.high_watermark, min(leader_hw, lg.log_end_offset))


def check_epoch(requested: int, ours: int) -> None:
    """Kafka's leader-epoch check for client and replica requests (KIP-320); only -1 means
    "no epoch" (Partition.checkCurrentLeaderEpoch), any other value is compared."""
    if requested == -1 or requested == ours:
        return
    if requested > ours:
        raise KafkaError(
            f"Requested leader epoch {requested} is newer than the current {ours}",
            ErrorCode.unknown_leader_epoch,
        )
    raise KafkaError(
        f"Requested leader epoch {requested} is older than the current {ours}",
        ErrorCode.fenced_leader_epoch,
    )
