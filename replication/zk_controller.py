"""The cluster controller in ZooKeeper mode: Kafka's KafkaController, as far as pybroker
needs it.

Every broker runs one. The one that creates the ephemeral ``/controller`` (bumping
``/controller_epoch``) acts; the others wait for the znode to vanish and try again.
The active controller makes every partition decision, and writes each one as a
ZooKeeper multi-op that first checks the controller epoch's zk version and then sets the
partition state conditionally on the version it read: a deposed controller cannot
overwrite anything, and a decision based on a stale read is refused and retried from
the fresh state. Brokers learn decisions by watching the state znodes
(``zk_metadata``).

What it decides, from the live brokers (``/brokers/ids``) and the topics' assignments:
- a new partition (assignment without state): leader = first live replica, ISR = the live
  replicas (Kafka's NewPartition -> OnlinePartition);
- a partition whose leader died or is shutting down: a new leader from the live ISR in
  assignment order, leader epoch + 1 (``election``); with
  ``unclean.leader.election.enable`` an out-of-sync replica if no ISR member lives, logged
  as possible data loss; otherwise leader -1 and the last ISR member kept, so the
  partition stays offline until an in-sync replica returns;
- a dead or stopping follower leaves the ISR (the leader epoch stays: only leader
  changes bump it, as in KRaft; Kafka's ZooKeeper mode also bumped it here, which fences
  clients for no benefit);
- topics queued in ``/admin/delete_topics`` are deleted;
- controlled shutdown: a broker asks by creating ``/admin/controlled_shutdown/<id>``; its
  leaderships move to other ISR members and it leaves every ISR;
- partition reassignments (KIP-455, ``reassignment``): any broker writes the topic znode
  with RS = TRS + ORS and adding/removing replicas; once every target replica is in the
  ISR the controller completes it (leader from the in-sync targets if it must move, the
  removing replicas out of the ISR and the assignment) in one multi-op. An ISR member or
  leader no longer in the assignment (a cancelled reassignment) leaves, as Kafka's
  stopRemovedReplicasOfReassignedPartition does;
- ElectLeaders (KIP-460): requests queued as ``/admin/elect_leaders/request_<seq>`` are
  run (``election.requested_election``) and answered in the same znode;
- auto leader rebalance: every ``leader.imbalance.check.interval.seconds`` (first after
  5 s, as Kafka), preferred elections for brokers whose share of partitions led by
  another broker exceeds ``leader.imbalance.per.broker.percentage``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import replace

from pybroker.protocol.errors import ErrorCode
from pybroker.replication.election import (
    ELECTION_NOT_NEEDED,
    ELIGIBLE_LEADERS_NOT_AVAILABLE,
    PREFERRED,
    PREFERRED_LEADER_NOT_AVAILABLE,
    controlled_shutdown_election,
    imbalanced_partitions,
    offline_election,
    requested_election,
)
from pybroker.replication.reassignment import (
    ReplicaAssignment,
    completed_state,
    replica_assignment,
    with_reassignment,
)
from pybroker.replication.zk_client import (
    CreateOp,
    Subscription,
    ZkMultiError,
    ZkNodeExistsError,
    ZkNoNodeError,
)
from pybroker.replication.zk_data import (
    PartitionStateZnode,
    TopicAssignment,
    encode_partition_state,
    partition_state_path,
    topic_partition_path,
    topic_partitions_path,
)
from pybroker.replication.zk_metadata import CONTROLLED_SHUTDOWN_PATH, ZkMetadataCache
from pybroker.replication.zk_store import (
    ControllerEpoch,
    ControllerMovedError,
    ElectionResult,
    KafkaZkStore,
)

log = logging.getLogger(__name__)

NO_LEADER = -1
RETRY_S = 0.5
FIRST_REBALANCE_CHECK_S = 5.0  # KafkaController.onControllerFailover's first delay
TopicPartition = tuple[str, int]
StateUpdates = dict[TopicPartition, PartitionStateZnode]


def controlled_shutdown_path(broker_id: int) -> str:
    return f"{CONTROLLED_SHUTDOWN_PATH}/{broker_id}"


class ZkController:
    def __init__(
        self,
        broker_id: int,
        store: KafkaZkStore,
        cache: ZkMetadataCache,
        unclean_allowed: Callable[[str], bool],
        *,
        auto_leader_rebalance: bool = False,
        leader_imbalance_percent: int = 10,
        leader_imbalance_check_interval_s: float = 300.0,
    ) -> None:
        self.broker_id = broker_id
        self.auto_leader_rebalance = auto_leader_rebalance
        self.leader_imbalance_percent = leader_imbalance_percent
        self.leader_imbalance_check_interval_s = leader_imbalance_check_interval_s
        self.store = store
        self.cache = cache
        self.unclean_allowed = unclean_allowed
        self.epoch: ControllerEpoch | None = None
        self._wake = asyncio.Event()
        self._want_election = True
        self._task: asyncio.Task[None] | None = None
        self._subs: list[Subscription] = []
        self._active_subs: list[Subscription] = []
        self._deletions: list[str] = []
        self._election_requests: list[str] = []
        self._legacy_moves: tuple[dict[TopicPartition, tuple[int, ...]], int] | None = None
        self._answered: dict[str, dict[TopicPartition, ElectionResult]] = {}
        self._rebalance_due = False
        self._rebalance_timer: asyncio.TimerHandle | None = None
        self._closed = False
        # Replicas on failed log dirs, as brokers publish them (replication.log_dir_events):
        # neither leader nor ISR member of that partition until their broker restarts.
        self.offline_replicas: dict[TopicPartition, frozenset[int]] = {}

    @property
    def is_active(self) -> bool:
        return self.epoch is not None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._subs.append(self.store.watch_controller(self._on_controller_znode))
        self._task = asyncio.get_running_loop().create_task(self._run(), name="zk-controller")

    async def stop(self) -> None:
        """Stop acting; resign (delete /controller) if active so another broker takes over
        at once instead of after our session times out."""
        self._closed = True
        for sub in self._subs + self._active_subs:
            sub.cancel()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        epoch, self.epoch = self.epoch, None
        if epoch is not None:
            with contextlib.suppress(Exception):
                await self.store.resign_controller(epoch)
                log.info("Broker %d resigned as controller", self.broker_id)

    def poke(self) -> None:
        """Something changed (metadata, membership): reconcile soon."""
        self._wake.set()

    def _on_controller_znode(self, znode: object) -> None:
        if znode is None:
            self._want_election = True
            self._wake.set()
        elif getattr(znode, "broker_id", None) != self.broker_id and self.epoch is not None:
            log.info("Controller moved to broker %s", getattr(znode, "broker_id", "?"))
            self._resign_locally()

    def expire(self) -> None:
        """Our ZooKeeper session expired: whatever we were, run for election again."""
        self._resign_locally()
        self._want_election = True
        self._wake.set()

    def _resign_locally(self) -> None:
        self.epoch = None
        for sub in self._active_subs:
            sub.cancel()
        self._active_subs.clear()
        if self._rebalance_timer is not None:
            self._rebalance_timer.cancel()
            self._rebalance_timer = None
        self._answered.clear()

    # ------------------------------------------------------------------ event loop
    async def _run(self) -> None:
        while not self._closed:
            await self._wake.wait()
            self._wake.clear()
            try:
                if self.epoch is None and self._want_election:
                    await self._elect()
                if self.epoch is not None:
                    await self._act()
            except ControllerMovedError as exc:
                log.info("Broker %d is no longer the controller: %s", self.broker_id, exc)
                self._resign_locally()
                self._want_election = True
                self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("Controller work failed (retrying): %r", exc)
                await asyncio.sleep(RETRY_S)
                self._wake.set()

    async def _elect(self) -> None:
        self._want_election = False
        epoch = await self.store.try_elect_controller(self.broker_id)
        if epoch is None:
            return
        self.epoch = epoch
        log.info("Broker %d became the controller at epoch %d", self.broker_id, epoch.epoch)
        store = self.store
        self._active_subs = [
            store.watch_topic_deletions(self._on_deletions),
            store.watch_isr_changes(self._on_isr_changes),
            store.watch_election_requests(self._on_election_requests),
            store.watch_legacy_reassignments(self._on_legacy_reassignments),
        ]
        if self.auto_leader_rebalance:
            self._schedule_rebalance(FIRST_REBALANCE_CHECK_S)

    def _schedule_rebalance(self, delay_s: float) -> None:
        def due() -> None:
            self._rebalance_due = True
            self._wake.set()

        self._rebalance_timer = asyncio.get_running_loop().call_later(delay_s, due)

    def _on_legacy_reassignments(
        self, moves: dict[TopicPartition, tuple[int, ...]] | None, version: int
    ) -> None:
        self._legacy_moves = (moves, version) if moves is not None else None
        self._wake.set()

    def _on_election_requests(self, names: list[str]) -> None:
        self._election_requests = list(names)
        self._wake.set()

    def _on_deletions(self, topics: list[str]) -> None:
        self._deletions = list(topics)
        self._wake.set()

    def _on_isr_changes(self, sequence_numbers: list[str]) -> None:
        if sequence_numbers and self.epoch is not None:
            epoch = self.epoch
            # Brokers watch the state znodes themselves: the notifications are only
            # acknowledged (deleted), as Kafka's controller does after propagating them.
            asyncio.get_running_loop().create_task(self._ack_isr_changes(sequence_numbers, epoch))

    async def _ack_isr_changes(self, seqs: list[str], epoch: ControllerEpoch) -> None:
        with contextlib.suppress(Exception):
            await self.store.delete_isr_change_notifications(seqs, epoch)

    # ------------------------------------------------------------------ decisions
    async def _act(self) -> None:
        assert self.epoch is not None
        epoch = self.epoch
        for topic in list(self._deletions):
            log.info("Deleting topic %s", topic)
            await self.store.delete_topic(topic, epoch)
        self._deletions = []
        await self._forget_finished_shutdowns(epoch)
        if await self._complete_reassignments(epoch):
            return  # the watches bring the new state and wake us again
        creates, updates = self.decide()
        for tp, state in creates.items():
            await self._create_state(tp, state, epoch)
        if updates:
            result = await self.store.update_partition_states(updates, epoch)
            if result.stale or result.missing:
                log.debug("Stale partition states %s: waiting for fresh ones", result.stale)
                asyncio.get_running_loop().call_later(RETRY_S, self._wake.set)
            return  # elections below decide from the state these writes produce
        if self._legacy_moves is not None:
            await self._run_legacy_reassignments(epoch)
        for name in list(self._election_requests):
            await self._run_election_request(name, epoch)
        if self._rebalance_due:
            await self._rebalance(epoch)

    def decide(self) -> tuple[dict[TopicPartition, PartitionStateZnode], dict]:
        """(states to create, states to update) from the cached view: pure given the
        cache, so it is unit-testable and safe to re-run (writes are conditional)."""
        cache = self.cache
        live = set(cache.registrations)
        stopping = set(cache.shutting_down) & live
        eligible = live - stopping
        creates: dict[TopicPartition, PartitionStateZnode] = {}
        updates: dict[TopicPartition, PartitionStateZnode] = {}
        for topic, a in cache.assignments.items():
            for p, replicas in a.partitions.items():
                tp = (topic, p)
                s = cache.states.get(tp)
                if s is None:
                    alive = tuple(r for r in replicas if r in eligible)
                    if alive:
                        creates[tp] = PartitionStateZnode(alive[0], 0, alive, -1)
                    continue
                ok = eligible - self.offline_replicas.get(tp, frozenset())
                new = self._decide_replicas_left(tp, tuple(replicas), s, ok)
                base = new or s
                decided = self._decide_one(tp, tuple(replicas), base, live, ok, stopping)
                new = decided or new
                if new is not None and new != s:
                    updates[tp] = new
        return creates, updates

    @staticmethod
    def _decide_replicas_left(
        tp: TopicPartition,
        replicas: tuple[int, ...],
        s: PartitionStateZnode,
        eligible: set[int],
    ) -> PartitionStateZnode | None:
        """Replicas that left the assignment (a cancelled or replaced reassignment) leave
        the ISR; a leader that left is replaced by a live in-sync replica (clean only:
        the ISR member that is left keeps the partition's data)."""
        isr = tuple(s.isr)
        kept = tuple(r for r in isr if r in replicas)
        if kept == isr or not kept:
            return None
        if s.leader < 0 or s.leader in replicas:
            return replace(s, isr=kept)
        elected = offline_election(replicas, kept, eligible, unclean_allowed=False)
        if elected is None:
            return None  # nobody in sync can lead yet: wait
        leader, new_isr, _ = elected
        log.info(
            "Leader %d of %s-%d is no longer a replica: moving leadership to %d",
            s.leader,
            tp[0],
            tp[1],
            leader,
        )
        return replace(s, leader=leader, leader_epoch=s.leader_epoch + 1, isr=new_isr)

    # ------------------------------------------------------------------ reassignments
    def decide_reassignments(
        self,
    ) -> dict[str, tuple[TopicAssignment, dict[int, PartitionStateZnode]]]:
        """Reassignments ready to complete, per topic: (the new topic znode, the new
        partition states). Pure given the cache."""
        cache = self.cache
        eligible = set(cache.registrations) - set(cache.shutting_down)
        out: dict[str, tuple[TopicAssignment, dict[int, PartitionStateZnode]]] = {}
        for topic, a in cache.assignments.items():
            states: dict[int, PartitionStateZnode] = {}
            for p in sorted(set(a.adding) | set(a.removing)):
                ra = ReplicaAssignment(
                    tuple(a.partitions.get(p, ())),
                    tuple(a.adding.get(p, ())),
                    tuple(a.removing.get(p, ())),
                )
                s = cache.states.get((topic, p))
                if not ra.in_progress or s is None:
                    continue
                ok = eligible - self.offline_replicas.get((topic, p), frozenset())
                done = completed_state(ra, s, ok)
                if done is not None:
                    states[p] = done
            if states:
                new = replace(
                    a,
                    partitions={
                        **a.partitions,
                        **{p: _target(a, p) for p in states},
                    },
                    adding={p: r for p, r in a.adding.items() if p not in states},
                    removing={p: r for p, r in a.removing.items() if p not in states},
                )
                out[topic] = (new, states)
        return out

    async def _complete_reassignments(self, epoch: ControllerEpoch) -> bool:
        """Write every reassignment ready to complete; True if any was written."""
        wrote = False
        for topic, (assignment, states) in self.decide_reassignments().items():
            old = self.cache.assignments[topic]
            if await self.store.complete_reassignment(assignment, states, epoch):
                wrote = True
                for p, s in states.items():
                    log.info(
                        "Reassignment of %s-%d done: replicas %s -> %s, leader %d, ISR %s",
                        topic,
                        p,
                        list(old.partitions.get(p, ())),
                        list(assignment.partitions[p]),
                        s.leader,
                        list(s.isr),
                    )
            else:
                asyncio.get_running_loop().call_later(RETRY_S, self._wake.set)
        return wrote

    def decide_legacy_reassignments(
        self, moves: dict[TopicPartition, tuple[int, ...]]
    ) -> tuple[dict[str, TopicAssignment], dict[TopicPartition, tuple[int, ...]]]:
        """The ``/admin/reassign_partitions`` moves (Kafka's ZooKeeper way, written by
        older tools): (topic znodes that start them, the moves still to keep in the
        znode). A move that is invalid (unknown partition, empty, duplicate or
        unregistered replicas) is dropped with a log line; a finished one leaves the
        znode. Pure given the cache."""
        cache = self.cache
        starts: dict[str, TopicAssignment] = {}
        keep: dict[TopicPartition, tuple[int, ...]] = {}
        for (topic, p), target in sorted(moves.items()):
            a = starts.get(topic) or cache.assignments.get(topic)
            if a is None or p not in a.partitions:
                log.warning("Ignoring reassignment of unknown partition %s-%d", topic, p)
                continue
            if not target or len(set(target)) != len(target):
                log.warning("Ignoring reassignment of %s-%d to %s", topic, p, list(target))
                continue
            unknown = sorted(set(target) - set(cache.registrations))
            if unknown:
                log.warning(
                    "Ignoring reassignment of %s-%d to %s: brokers %s are not registered",
                    topic,
                    p,
                    list(target),
                    unknown,
                )
                continue
            current = replica_assignment(a, p)
            if not current.in_progress and current.replicas == tuple(target):
                continue  # done
            keep[(topic, p)] = tuple(target)
            if current.in_progress and current.target == tuple(target):
                continue  # under way
            starts[topic] = with_reassignment(a, p, current.reassign_to(target))
        return starts, keep

    async def _run_legacy_reassignments(self, epoch: ControllerEpoch) -> None:
        assert self._legacy_moves is not None
        moves, version = self._legacy_moves
        starts, keep = self.decide_legacy_reassignments(moves)
        for topic, assignment in starts.items():
            if await self.store.start_reassignment(assignment, epoch):
                log.info("Started reassignments of %s from %s", topic, "/admin/reassign_partitions")
            else:
                asyncio.get_running_loop().call_later(RETRY_S, self._wake.set)
        if keep != moves:
            await self.store.update_legacy_reassignments(keep, version)

    # ------------------------------------------------------------------ elections
    def decide_elections(
        self, election_type: int, partitions: list[TopicPartition] | None
    ) -> tuple[StateUpdates, dict[TopicPartition, ElectionResult]]:
        """ElectLeaders for ``partitions`` (None: every partition, reporting only those
        that needed an election, as Kafka does). Pure given the cache."""
        cache = self.cache
        eligible = set(cache.registrations) - set(cache.shutting_down)
        every = partitions is None
        if partitions is None:
            partitions = sorted((t, p) for t, a in cache.assignments.items() for p in a.partitions)
        updates: StateUpdates = {}
        results: dict[TopicPartition, ElectionResult] = {}
        for tp in partitions:
            topic, p = tp
            a = cache.assignments.get(topic)
            s = cache.states.get(tp)
            if a is None or p not in a.partitions or s is None:
                msg = (
                    f"No such topic as {topic}"
                    if a is None
                    else f"No such partition as {topic}-{p}"
                )
                results[tp] = ElectionResult(topic, p, ErrorCode.unknown_topic_or_partition, msg)
                continue
            ok = eligible - self.offline_replicas.get(tp, frozenset())
            outcome, leader, isr = requested_election(
                election_type, tuple(a.partitions[p]), s.leader, s.isr, ok
            )
            if outcome == "not_needed":
                if not every:
                    results[tp] = ElectionResult(
                        topic, p, ErrorCode.election_not_needed, ELECTION_NOT_NEEDED
                    )
                continue
            if outcome == "unavailable":
                if election_type == PREFERRED:
                    results[tp] = ElectionResult(
                        topic,
                        p,
                        ErrorCode.preferred_leader_not_available,
                        PREFERRED_LEADER_NOT_AVAILABLE,
                    )
                else:
                    results[tp] = ElectionResult(
                        topic,
                        p,
                        ErrorCode.eligible_leaders_not_available,
                        ELIGIBLE_LEADERS_NOT_AVAILABLE,
                    )
                continue
            if leader not in s.isr:
                log.warning(
                    "Unclean leader election for %s-%d (requested): broker %d was not in the "
                    "ISR %s; records acknowledged only by the ISR may be lost",
                    topic,
                    p,
                    leader,
                    list(s.isr),
                )
            updates[tp] = replace(s, leader=leader, leader_epoch=s.leader_epoch + 1, isr=isr)
            results[tp] = ElectionResult(topic, p, ErrorCode.none)
        return updates, results

    async def _run_election_request(self, name: str, epoch: ControllerEpoch) -> None:
        got = await self.store.get_election_request(name)
        if got is None:
            self._answered.pop(name, None)
            return
        request, version = got
        if request.results is not None:
            return
        done = self._answered.setdefault(name, {})
        wanted = None if request.partitions is None else list(request.partitions)
        if wanted is not None:
            wanted = [tp for tp in wanted if tp not in done]
        updates, results = self.decide_elections(request.election_type, wanted)
        if request.partitions is None and done:
            results = {tp: r for tp, r in results.items() if tp not in done}
            updates = {tp: u for tp, u in updates.items() if tp not in done}
        written = await self.store.update_partition_states(updates, epoch) if updates else None
        retry = set(written.stale) | set(written.missing) if written else set()
        for tp, r in results.items():
            if tp not in retry:
                done[tp] = r
        if retry:
            asyncio.get_running_loop().call_later(RETRY_S, self._wake.set)
            return
        for tp in updates:
            log.info("Elected leader %d for %s-%d (ElectLeaders)", updates[tp].leader, *tp)
        order = request.partitions if request.partitions is not None else sorted(done)
        answer = tuple(done[tp] for tp in order if tp in done)
        await self.store.answer_election_request(
            name, replace(request, results=answer), version, epoch
        )
        self._answered.pop(name, None)

    async def _rebalance(self, epoch: ControllerEpoch) -> None:
        """checkAndTriggerAutoLeaderRebalance, then schedule the next check."""
        self._rebalance_due = False
        try:
            updates = self.decide_rebalance()
            if updates:
                log.info("Auto leader rebalance: preferred elections for %s", sorted(updates))
                await self.store.update_partition_states(updates, epoch)
        finally:
            if self.epoch is not None and self.auto_leader_rebalance:
                self._schedule_rebalance(self.leader_imbalance_check_interval_s)

    def decide_rebalance(self) -> StateUpdates:
        """Preferred elections for the imbalanced brokers' partitions (pure given the
        cache; topics queued for deletion and partitions being reassigned are skipped)."""
        cache = self.cache
        eligible = set(cache.registrations) - set(cache.shutting_down)
        deleting = set(self._deletions)
        assignments = {
            (t, p): tuple(r)
            for t, a in cache.assignments.items()
            if t not in deleting
            for p, r in a.partitions.items()
            if not a.adding.get(p) and not a.removing.get(p)
        }
        leaders = {
            tp: (s.leader, tuple(s.isr)) for tp, s in cache.states.items() if tp in assignments
        }
        chosen = imbalanced_partitions(
            assignments, leaders, eligible, self.leader_imbalance_percent
        )
        updates: StateUpdates = {}
        for tp in chosen:
            s = cache.states[tp]
            updates[tp] = replace(s, leader=assignments[tp][0], leader_epoch=s.leader_epoch + 1)
        return updates

    def _decide_one(
        self,
        tp: TopicPartition,
        replicas: tuple[int, ...],
        s: PartitionStateZnode,
        live: set[int],
        eligible: set[int],
        stopping: set[int],
    ) -> PartitionStateZnode | None:
        topic, index = tp
        isr = tuple(s.isr)
        if s.leader >= 0 and s.leader in eligible:
            keep = tuple(r for r in isr if r == s.leader or r in eligible)
            if keep != isr:
                return replace(s, isr=keep)
            return None
        if s.leader >= 0 and s.leader in stopping:
            got = controlled_shutdown_election(replicas, isr, live, stopping)
            if got is None:
                return None  # no one else in sync: it stays leader until it stops
            leader, new_isr = got
            log.info(
                "Moving leadership of %s-%d from stopping broker %d to %d",
                topic,
                index,
                s.leader,
                leader,
            )
            return replace(s, leader=leader, leader_epoch=s.leader_epoch + 1, isr=new_isr)
        elected = offline_election(replicas, isr, eligible, self.unclean_allowed(topic))
        if elected is not None:
            leader, new_isr, unclean = elected
            if unclean:
                log.warning(
                    "Unclean leader election for %s-%d: broker %d was not in the ISR %s; "
                    "records acknowledged only by the ISR may be lost",
                    topic,
                    index,
                    leader,
                    list(isr),
                )
            return replace(s, leader=leader, leader_epoch=s.leader_epoch + 1, isr=new_isr)
        if s.leader == NO_LEADER:
            return None
        # No eligible leader: offline. Keep the last ISR member, so that it alone can come
        # back as a clean leader (Kafka's removeReplicasFromIsr keeps a sole member).
        kept = isr if len(isr) <= 1 else tuple(r for r in isr if r in eligible) or isr[-1:]
        log.warning(
            "No in-sync replica of %s-%d is alive (ISR %s): it is offline",
            topic,
            index,
            list(isr),
        )
        return replace(s, leader=NO_LEADER, leader_epoch=s.leader_epoch + 1, isr=kept)

    async def _create_state(
        self, tp: TopicPartition, state: PartitionStateZnode, epoch: ControllerEpoch
    ) -> None:
        s = replace(state, controller_epoch=epoch.epoch)
        topic, p = tp
        client = self.store.client
        with contextlib.suppress(ZkNodeExistsError):
            await client.create(topic_partitions_path(topic))
        ops = []
        if await client.exists(topic_partition_path(topic, p)) is None:
            ops.append(CreateOp(topic_partition_path(topic, p)))
        ops.append(CreateOp(partition_state_path(topic, p), encode_partition_state(s)))
        try:
            await self.store.controller_multi(ops, epoch)
            log.info("Partition %s-%d online: leader %d, ISR %s", topic, p, s.leader, list(s.isr))
        except ZkMultiError as e:
            if not isinstance(e.cause, ZkNodeExistsError | ZkNoNodeError):
                raise

    async def _forget_finished_shutdowns(self, epoch: ControllerEpoch) -> None:
        """A stopped broker's request is done once it is no longer registered."""
        live = set(self.cache.registrations)
        for broker_id in sorted(set(self.cache.shutting_down) - live):
            with contextlib.suppress(ZkNoNodeError):
                await self.store.client.delete(controlled_shutdown_path(broker_id))


def _target(a: TopicAssignment, p: int) -> tuple[int, ...]:
    removing = set(a.removing.get(p, ()))
    return tuple(r for r in a.partitions.get(p, ()) if r not in removing)
