"""Followers copy their leaders' logs: Kafka's ReplicaFetcherManager and ReplicaFetcherThread.

One ``ReplicaFetcher`` task per leader broker fetches every partition this broker follows
from that leader with the real Fetch protocol (replica id = our broker id), appends
exactly the leader's batches (``Log.append_as_follower``), and takes the leader's high
watermark (capped at what it holds) and log start offset.

A partition joins a fetcher *truncating* (after every leader or epoch change): before it
fetches, it asks the leader with OffsetForLeaderEpoch where its latest epoch ends and
truncates its log there (KIP-101/279), repeating for older epochs until both logs agree.
An out-of-range fetch offset is resolved as Kafka does: truncate to the leader's end when
ours is beyond it, or restart empty at the leader's log start when ours is below it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pybroker.protocol.codec import build, request_type
from pybroker.protocol.errors import ErrorCode, KafkaError
from pybroker.replication.broker_client import BrokerClient, BrokerUnavailable
from pybroker.replication.partition import Partition
from pybroker.storage.errors import UnexpectedAppendOffsetError

log = logging.getLogger(__name__)

FETCH_VERSION = 12  # replica_id in the body, topic names, flexible
EPOCH_VERSION = 4
LIST_OFFSETS_VERSION = 7
UNDEFINED_EPOCH = -1

TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class FetcherConfig:
    """Kafka's replica.* fetch settings."""

    max_wait_ms: int = 500  # replica.fetch.wait.max.ms
    min_bytes: int = 1  # replica.fetch.min.bytes
    max_bytes: int = 10 * 1024 * 1024  # replica.fetch.response.max.bytes
    partition_max_bytes: int = 1024 * 1024  # replica.fetch.max.bytes
    backoff_ms: int = 1000  # replica.fetch.backoff.ms
    request_timeout_ms: int = 30_000  # replica.socket.timeout.ms
    ssl: Any = None  # ssl.SSLContext when the inter-broker listener is SSL or SASL_SSL
    sasl: Any = None  # config.jaas.SaslClientCredentials when it is SASL_*

    @classmethod
    def from_broker(cls, config: Any) -> FetcherConfig:
        get = getattr
        return cls(
            max_wait_ms=int(get(config, "replica_fetch_wait_max_ms", 500)),
            min_bytes=int(get(config, "replica_fetch_min_bytes", 1)),
            max_bytes=int(get(config, "replica_fetch_response_max_bytes", 10 * 1024 * 1024)),
            partition_max_bytes=int(get(config, "replica_fetch_max_bytes", 1024 * 1024)),
            backoff_ms=int(get(config, "replica_fetch_backoff_ms", 1000)),
            request_timeout_ms=int(get(config, "replica_socket_timeout_ms", 30_000)),
        )


@dataclass(slots=True)
class _FetchState:
    partition: Partition
    epoch: int  # the leader epoch this follower state was added for
    truncating: bool = True
    delayed_until: float = 0.0


@dataclass
class ReplicaFetcher:
    """Fetches all partitions this broker follows from one leader."""

    local_id: int
    leader_id: int
    client: BrokerClient
    config: FetcherConfig
    on_appended: Callable[[str, int], None] = lambda t, p: None
    states: dict[TopicPartition, _FetchState] = field(default_factory=dict)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _stopped: bool = False

    # ------------------------------------------------------------------ membership
    def add(self, partition: Partition) -> None:
        tp = (partition.topic, partition.index)
        self.states[tp] = _FetchState(partition, partition.leader_epoch)
        self._wake.set()

    def remove(self, tp: TopicPartition) -> None:
        self.states.pop(tp, None)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"replica-fetcher-{self.leader_id}"
            )

    async def stop(self) -> None:
        self._stopped = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        await self.client.close()

    # ------------------------------------------------------------------ loop
    async def _run(self) -> None:
        backoff = self.config.backoff_ms / 1000
        while not self._stopped:
            if not self.states:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                if any(s.truncating for s in self.states.values()):
                    await self._truncate()
                if not await self._fetch():
                    await asyncio.sleep(min(backoff, 0.1))
            except BrokerUnavailable as exc:
                log.info("Fetcher for leader %d: %s; retrying", self.leader_id, exc)
                await asyncio.sleep(backoff)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("Fetcher for leader %d failed; retrying", self.leader_id)
                await asyncio.sleep(backoff)

    def _ready(self) -> list[_FetchState]:
        now = time.monotonic()
        return [
            s
            for s in self.states.values()
            if not s.truncating
            and s.delayed_until <= now
            and s.partition.leader_epoch == s.epoch
            and not s.partition.is_leader
        ]

    def _delay(self, state: _FetchState) -> None:
        state.delayed_until = time.monotonic() + self.config.backoff_ms / 1000

    # ------------------------------------------------------------------ truncation
    async def _truncate(self) -> None:
        pending = [s for s in self.states.values() if s.truncating]
        by_topic: dict[str, list[dict[str, int]]] = {}
        for s in pending:
            p = s.partition
            by_topic.setdefault(p.topic, []).append(
                dict(
                    partition=p.index,
                    current_leader_epoch=s.epoch,
                    leader_epoch=p.log.latest_epoch,
                )
            )
        body = build(
            request_type(23, EPOCH_VERSION),
            replica_id=self.local_id,
            topics=[dict(topic=t, partitions=ps) for t, ps in by_topic.items()],
        )
        resp = await self.client.request(23, EPOCH_VERSION, body, self._timeout())
        for t in resp.topics:
            for r in t.partitions:
                state = self.states.get((t.topic, int(r.partition)))
                if state is None or not state.truncating:
                    continue
                code = ErrorCode(r.error_code)
                if code != ErrorCode.none:
                    log.debug("OffsetForLeaderEpoch %s-%d: %s", t.topic, r.partition, code.name)
                    self._delay(state)
                    continue
                if self._apply_epoch_end(state, int(r.leader_epoch), int(r.end_offset)):
                    state.truncating = False

    def _apply_epoch_end(self, state: _FetchState, leader_epoch: int, leader_end: int) -> bool:
        """Truncate to where the leader's log and ours diverge; True when they agree."""
        lg = state.partition.log
        ours = lg.latest_epoch
        if ours == UNDEFINED_EPOCH or leader_end < 0:
            # Nothing of ours is tagged with an epoch (empty log): nothing can diverge,
            # except a tail beyond the leader's end, which the fetch will report.
            return True
        if leader_epoch == ours:
            target = min(leader_end, lg.log_end_offset)
            done = True
        else:
            # The leader does not know our latest epoch: keep only what we hold of the
            # largest epoch it does know, and look again from there.
            our_epoch, our_end = lg.end_offset_for_epoch(leader_epoch)
            target = min(leader_end, our_end if our_end >= 0 else lg.log_end_offset)
            done = our_epoch == leader_epoch
        if target < lg.log_end_offset:
            log.info(
                "Truncating %s-%d from %d to %d (leader %d's epoch %d ends at %d)",
                lg.topic,
                lg.partition,
                lg.log_end_offset,
                target,
                self.leader_id,
                leader_epoch,
                leader_end,
            )
            lg.truncate_to(target)
        if not done and lg.latest_epoch >= ours:
            # No progress possible by epochs: stop here rather than loop.
            done = True
        return done

    # ------------------------------------------------------------------ fetching
    async def _fetch(self) -> bool:
        ready = self._ready()
        if not ready:
            return False
        cfg = self.config
        by_topic: dict[str, list[dict[str, int]]] = {}
        for s in ready:
            lg = s.partition.log
            by_topic.setdefault(s.partition.topic, []).append(
                dict(
                    partition=s.partition.index,
                    current_leader_epoch=s.epoch,
                    fetch_offset=lg.log_end_offset,
                    last_fetched_epoch=-1,
                    log_start_offset=lg.log_start_offset,
                    partition_max_bytes=cfg.partition_max_bytes,
                )
            )
        body = build(
            request_type(1, FETCH_VERSION),
            replica_id=self.local_id,
            max_wait=cfg.max_wait_ms,
            min_bytes=cfg.min_bytes,
            max_bytes=cfg.max_bytes,
            isolation_level=0,
            session_id=0,
            session_epoch=-1,
            topics=[dict(topic=t, partitions=ps) for t, ps in by_topic.items()],
            forgotten_topics_data=[],
            rack_id="",
        )
        resp = await self.client.request(1, FETCH_VERSION, body, self._timeout())
        if resp.error_code != ErrorCode.none:
            raise BrokerUnavailable(f"fetch failed: {ErrorCode(resp.error_code).name}")
        for t in resp.responses:
            for pd in t.partitions:
                state = self.states.get((t.topic, int(pd.partition_index)))
                if state is None or state.truncating or state.partition.leader_epoch != state.epoch:
                    continue  # removed or changed while the fetch was in flight
                await self._handle_partition(state, pd)
        return True

    async def _handle_partition(self, state: _FetchState, pd: Any) -> None:
        p = state.partition
        lg = p.log
        code = ErrorCode(pd.error_code)
        if code == ErrorCode.none:
            records = pd.records
            try:
                if records:
                    lg.append_as_follower(bytearray(records))
            except UnexpectedAppendOffsetError:
                state.truncating = True  # a stale answer raced a truncation: start over
                return
            except KafkaError as exc:
                log.warning("Follower append to %s-%d failed: %s", p.topic, p.index, exc)
                self._delay(state)
                return
            p.follower_update_hw(int(pd.high_watermark))
            leader_start = int(pd.log_start_offset)
            if lg.log_start_offset < leader_start:
                start = min(leader_start, lg.high_watermark)
                if start > lg.log_start_offset:
                    lg.delete_records_before(start)
            if records:
                self.on_appended(p.topic, p.index)
        elif code == ErrorCode.offset_out_of_range:
            await self._handle_out_of_range(state)
        else:
            if code not in (
                ErrorCode.not_leader_or_follower,
                ErrorCode.unknown_leader_epoch,
                ErrorCode.fenced_leader_epoch,
                ErrorCode.unknown_topic_or_partition,
                ErrorCode.unknown_topic_id,
            ):
                log.warning(
                    "Fetch of %s-%d from leader %d: %s", p.topic, p.index, self.leader_id, code.name
                )
            self._delay(state)

    async def _handle_out_of_range(self, state: _FetchState) -> None:
        """Kafka's AbstractFetcherThread.handleOutOfRangeError via ListOffsets."""
        p = state.partition
        lg = p.log
        latest = await self._list_offset(state, -1)
        if latest is None:
            return
        if latest < lg.log_end_offset:
            log.warning(
                "Truncating %s-%d from %d to the leader's end %d after an out-of-range fetch",
                p.topic,
                p.index,
                lg.log_end_offset,
                latest,
            )
            lg.truncate_to(latest)
            return
        earliest = await self._list_offset(state, -2)
        if earliest is None:
            return
        if earliest > lg.log_end_offset:
            log.info(
                "Restarting %s-%d empty at the leader's log start %d (ours ends at %d)",
                p.topic,
                p.index,
                earliest,
                lg.log_end_offset,
            )
            lg.truncate_fully_and_start_at(earliest)

    async def _list_offset(self, state: _FetchState, timestamp: int) -> int | None:
        p = state.partition
        body = build(
            request_type(2, LIST_OFFSETS_VERSION),
            replica_id=self.local_id,
            isolation_level=0,
            topics=[
                dict(
                    name=p.topic,
                    partitions=[
                        dict(
                            partition_index=p.index,
                            current_leader_epoch=state.epoch,
                            timestamp=timestamp,
                        )
                    ],
                )
            ],
        )
        resp = await self.client.request(2, LIST_OFFSETS_VERSION, body, self._timeout())
        for t in resp.topics:
            for r in t.partitions:
                if ErrorCode(r.error_code) == ErrorCode.none:
                    return int(r.offset)
                self._delay(state)
        return None

    def _timeout(self) -> float:
        return (self.config.request_timeout_ms + self.config.max_wait_ms) / 1000


class ReplicaFetcherManager:
    """Which leader each followed partition is fetched from (Kafka's fetcher manager)."""

    def __init__(
        self,
        local_id: int,
        config: FetcherConfig,
        endpoint_of: Callable[[int], tuple[str, int] | None],
        on_appended: Callable[[str, int], None] = lambda t, p: None,
    ) -> None:
        self.local_id = local_id
        self.config = config
        self.endpoint_of = endpoint_of
        self.on_appended = on_appended
        self.fetchers: dict[int, tuple[tuple[str, int], ReplicaFetcher]] = {}
        self._assigned: dict[TopicPartition, int] = {}

    def follow(self, partition: Partition, leader_id: int) -> None:
        """Fetch ``partition`` from ``leader_id`` from now on, truncating first."""
        tp = (partition.topic, partition.index)
        self.unfollow(tp)
        endpoint = self.endpoint_of(leader_id)
        if endpoint is None:
            return  # the leader is not registered: the next metadata change retries
        entry = self.fetchers.get(leader_id)
        if entry is not None and entry[0] != endpoint:
            asyncio.get_running_loop().create_task(entry[1].stop())
            del self.fetchers[leader_id]
            entry = None
        if entry is None:
            client = BrokerClient(
                endpoint[0],
                endpoint[1],
                f"replica-fetcher-{self.local_id}",
                ssl=self.config.ssl,
                sasl=self.config.sasl,
            )
            fetcher = ReplicaFetcher(
                self.local_id, leader_id, client, self.config, self.on_appended
            )
            fetcher.start()
            entry = (endpoint, fetcher)
            self.fetchers[leader_id] = entry
        entry[1].add(partition)
        self._assigned[tp] = leader_id

    def unfollow(self, tp: TopicPartition) -> None:
        leader = self._assigned.pop(tp, None)
        if leader is not None and leader in self.fetchers:
            fetcher = self.fetchers[leader][1]
            fetcher.remove(tp)
            if not fetcher.states:
                # Nothing left to fetch from this leader: close its connection and task.
                del self.fetchers[leader]
                asyncio.get_running_loop().create_task(fetcher.stop())

    def leader_of(self, tp: TopicPartition) -> int | None:
        return self._assigned.get(tp)

    async def stop(self) -> None:
        fetchers = [f for _, f in self.fetchers.values()]
        self.fetchers.clear()
        self._assigned.clear()
        await asyncio.gather(*(f.stop() for f in fetchers), return_exceptions=True)
