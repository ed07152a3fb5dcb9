"""An asyncio-facing ZooKeeper client over kazoo (the job of Kafka's ZooKeeperClient).

kazoo runs its own connection and callback threads. Every call the event loop makes uses a
kazoo ``*_async`` request whose completion resolves an asyncio future through
``loop.call_soon_threadsafe``; every watch and session-state change crosses into the loop
the same way, so the loop stays the only writer of broker state and is never blocked.

As in Kafka's ZooKeeperClient, a request waits for a connection up to
``zookeeper.connection.timeout.ms`` (then :class:`ZkConnectionTimeoutError`) and is retried
after a connection loss; a retried write may find its own earlier effect (NodeExists,
BadVersion), which callers that care about it check (Kafka does the same).

Watches: kazoo drops every watch when the connection is lost (firing it with a NONE event)
and does not set them again on reconnect. :meth:`ZkClient.watch_data` and
:meth:`ZkClient.watch_children` hide that: a subscription re-reads its znode with a fresh
one-shot watch after every firing and after every reconnect or new session, and hands the
current value to its callback on the loop. Callbacks therefore see the latest state, possibly
more than once, never a stale one after a newer one.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kazoo import exceptions as kz_errors
from kazoo.client import KazooClient, KazooState
from kazoo.protocol.paths import _prefix_root
from kazoo.protocol.serialization import CheckVersion, Create, Delete, SetData, Transaction
from kazoo.protocol.states import EventType, ZnodeStat
from kazoo.retry import KazooRetry
from kazoo.security import OPEN_ACL_UNSAFE

if TYPE_CHECKING:
    from pybroker.config.broker_config import BrokerConfig

log = logging.getLogger(__name__)

DEFAULT_SESSION_TIMEOUT_MS = 18_000  # Kafka's zookeeper.session.timeout.ms default
DEFAULT_PORT = 2181

# ----------------------------------------------------------------------------- errors


class ZkError(Exception):
    """A ZooKeeper request failed; ``path`` names the znode when known."""

    def __init__(self, message: str = "", path: str | None = None) -> None:
        super().__init__(message or type(self).__name__ + (f": {path}" if path else ""))
        self.path = path


class ZkNoNodeError(ZkError):
    pass


class ZkNodeExistsError(ZkError):
    pass


class ZkBadVersionError(ZkError):
    pass


class ZkNotEmptyError(ZkError):
    pass


class ZkConnectionLossError(ZkError):
    """The connection dropped while the request was in flight: its effect is unknown."""


class ZkConnectionTimeoutError(ZkError):
    """No connection within zookeeper.connection.timeout.ms (ZooKeeperClientTimeoutException)."""


class ZkSessionExpiredError(ZkError):
    pass


class ZkClosedError(ZkError):
    pass


class ZkMultiError(ZkError):
    """A multi-op was rolled back: ``index`` is the op that failed and ``cause`` why."""

    def __init__(self, index: int, cause: ZkError) -> None:
        super().__init__(f"multi-op {index} failed: {cause}", cause.path)
        self.index = index
        self.cause = cause


_ERRORS: tuple[tuple[type[BaseException], type[ZkError]], ...] = (
    (kz_errors.NoNodeError, ZkNoNodeError),
    (kz_errors.NodeExistsError, ZkNodeExistsError),
    (kz_errors.BadVersionError, ZkBadVersionError),
    (kz_errors.NotEmptyError, ZkNotEmptyError),
    (kz_errors.ConnectionClosedError, ZkClosedError),  # before its base SessionExpiredError
    (kz_errors.SessionExpiredError, ZkSessionExpiredError),
    (kz_errors.ConnectionLoss, ZkConnectionLossError),
    (kz_errors.ConnectionDropped, ZkConnectionLossError),
    (kz_errors.OperationTimeoutError, ZkConnectionLossError),
)


def _map_error(e: BaseException, path: str | None) -> BaseException:
    if isinstance(e, ZkError):
        return e
    for kazoo_type, ours in _ERRORS:
        if isinstance(e, kazoo_type):
            return ours(f"{ours.__name__}: {path}" if path else "", path)
    if isinstance(e, kz_errors.KazooException):
        return ZkError(f"{type(e).__name__}: {e} ({path})", path)
    return e


_RETRIABLE = (ZkConnectionLossError,)

# ----------------------------------------------------------------------------- config


@dataclass(frozen=True, slots=True)
class ZkConnectString:
    """``zookeeper.connect`` split into its host list and optional chroot ("" when none)."""

    hosts: str
    chroot: str = ""

    def __str__(self) -> str:
        return self.hosts + self.chroot


_HOST = re.compile(r"^(\[[0-9a-fA-F:.%]+\]|[^:\[\]/]+)(:[0-9]{1,5})?$")


def parse_zookeeper_connect(value: str) -> ZkConnectString:
    """ZooKeeper's ConnectStringParser: ``host1:2181,host2:2181/kafka``.

    The chroot starts at the first '/'; "/" alone means none; otherwise it must be a valid
    absolute path without a trailing '/' (PathUtils.validatePath).
    """
    value = value.strip()
    hosts, slash, chroot = value.partition("/")
    chroot = slash + chroot
    if chroot == "/":
        chroot = ""
    if chroot and (chroot.endswith("/") or "//" in chroot or "/./" in chroot + "/"):
        raise ValueError(f"zookeeper.connect: invalid chroot {chroot!r}")
    if chroot and "/../" in chroot + "/":
        raise ValueError(f"zookeeper.connect: invalid chroot {chroot!r}")
    entries = [h.strip() for h in hosts.split(",") if h.strip()]
    if not entries:
        raise ValueError(f"zookeeper.connect: no host in {value!r}")
    for h in entries:
        if not _HOST.match(h):
            raise ValueError(f"zookeeper.connect: bad host:port {h!r}")
    return ZkConnectString(",".join(entries), chroot)


# ----------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class ZkStat:
    """The parts of a znode's Stat that Kafka uses."""

    version: int  # data version: what conditional writes name
    czxid: int  # creation zxid: Kafka's broker epoch for /brokers/ids/<id>
    mzxid: int
    ephemeral_owner: int  # session id of an ephemeral's owner, 0 for persistent znodes
    cversion: int
    num_children: int

    @classmethod
    def of(cls, s: ZnodeStat) -> ZkStat:
        return cls(s.version, s.czxid, s.mzxid, s.ephemeralOwner, s.cversion, s.numChildren)


class SessionState(enum.Enum):
    CONNECTED = "connected"  # connected; ``new_session`` says whether ephemerals/watches are gone
    SUSPENDED = "suspended"  # connection lost, session may still be alive
    EXPIRED = "expired"  # session gone: ephemerals deleted; a new session follows
    CLOSED = "closed"  # close() was called


@dataclass(frozen=True, slots=True)
class SessionEvent:
    state: SessionState
    session_id: int | None = None
    new_session: bool = False


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """A one-shot watch fired: type is created/deleted/changed/child, or "session"."""

    type: str
    path: str | None


_EVENT_TYPES = {
    EventType.CREATED: "created",
    EventType.DELETED: "deleted",
    EventType.CHANGED: "changed",
    EventType.CHILD: "child",
}


@dataclass(frozen=True, slots=True)
class CheckOp:
    path: str
    version: int


@dataclass(frozen=True, slots=True)
class CreateOp:
    path: str
    data: bytes | None = None  # None is Java's null data, as Kafka writes container znodes
    ephemeral: bool = False
    sequential: bool = False


@dataclass(frozen=True, slots=True)
class SetDataOp:
    path: str
    data: bytes
    version: int = -1


@dataclass(frozen=True, slots=True)
class DeleteOp:
    path: str
    version: int = -1


ZkOp = CheckOp | CreateOp | SetDataOp | DeleteOp
DataCallback = Callable[[bytes | None, ZkStat | None], None]
ChildrenCallback = Callable[[list[str] | None], None]


class Subscription:
    """A standing watch on one znode (data) or its children; ``cancel()`` ends it."""

    def __init__(self, client: ZkClient, path: str, children: bool, callback: Any) -> None:
        self.client = client
        self.path = path
        self.children = children
        self.callback = callback
        self.cancelled = False
        self.initialized = asyncio.Event()  # set after the first delivery
        self._refreshing = False
        self._dirty = False

        loop = client.loop

        def kazoo_watch(event: Any) -> None:  # kazoo thread
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(client._refresh_subscription, self)

        self.kazoo_watch = kazoo_watch

    def cancel(self) -> None:
        self.cancelled = True
        self.client._subscriptions.discard(self)


# ----------------------------------------------------------------------------- client


class ZkClient:
    """One ZooKeeper session, used from one asyncio loop."""

    def __init__(
        self,
        connect: str,
        *,
        session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS,
        connection_timeout_ms: int | None = None,
    ) -> None:
        self.connect = parse_zookeeper_connect(connect)
        self.session_timeout_ms = session_timeout_ms
        self.connection_timeout_ms = connection_timeout_ms or session_timeout_ms
        self._kz: KazooClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected: asyncio.Event | None = None
        self._listeners: list[Callable[[SessionEvent], None]] = []
        self._subscriptions: set[Subscription] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        self._closed = False
        self._session_id: int | None = None  # loop's view
        self._thread_session_id: int | None = None  # kazoo thread's view

    @classmethod
    def from_config(cls, config: BrokerConfig) -> ZkClient:
        """zookeeper.connect / .session.timeout.ms / .connection.timeout.ms of a broker."""
        if not config.zookeeper_connect:
            raise ValueError("zookeeper.connect is not set")
        return cls(
            config.zookeeper_connect,
            session_timeout_ms=config.zookeeper_session_timeout_ms,
            connection_timeout_ms=config.zookeeper_connection_timeout_ms,
        )

    # ------------------------------------------------------------------ lifecycle

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise ZkClosedError("ZkClient not started")
        return self._loop

    @property
    def connected(self) -> bool:
        return self._connected is not None and self._connected.is_set()

    @property
    def session_id(self) -> int | None:
        """The current session's id (as seen by the loop), None while there is none."""
        return self._session_id

    @property
    def client_id(self) -> tuple[int, bytes] | None:
        """(session id, password): lets tests expire the session the classic way."""
        return self._kz.client_id if self._kz is not None else None

    def add_session_listener(self, callback: Callable[[SessionEvent], None]) -> None:
        """Call ``callback`` on the loop for every session state change."""
        self._listeners.append(callback)

    def remove_session_listener(self, callback: Callable[[SessionEvent], None]) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(callback)

    async def start(self) -> None:
        """Connect (creating the chroot if missing, as Kafka does), within the timeout."""
        self._loop = asyncio.get_running_loop()
        self._connected = asyncio.Event()
        if self.connect.chroot:
            await self._create_chroot()
        self._kz = self._new_kazoo(str(self.connect))
        self._kz.add_listener(self._kazoo_listener)
        self._kz.start_async()
        try:
            await asyncio.wait_for(self._connected.wait(), self.connection_timeout_ms / 1000)
        except TimeoutError:
            await self.close()
            raise ZkConnectionTimeoutError(
                f"Timed out waiting for connection to {self.connect} "
                f"after {self.connection_timeout_ms} ms"
            ) from None

    async def _create_chroot(self) -> None:
        root = ZkClient(
            self.connect.hosts,
            session_timeout_ms=self.session_timeout_ms,
            connection_timeout_ms=self.connection_timeout_ms,
        )
        await root.start()
        try:
            if await root.exists(self.connect.chroot) is None:
                log.info("creating chroot %s on %s", self.connect.chroot, self.connect.hosts)
                await root.ensure_path(self.connect.chroot)
        finally:
            await root.close()

    def _new_kazoo(self, hosts: str) -> KazooClient:
        retry = KazooRetry(max_tries=-1, delay=0.1, backoff=2, max_delay=1.0, max_jitter=0.1)
        return KazooClient(
            hosts=hosts,
            timeout=self.session_timeout_ms / 1000,
            connection_retry=retry,
            command_retry=KazooRetry(max_tries=0),
            logger=logging.getLogger("kazoo.client"),
        )

    async def close(self) -> None:
        """End the session (its ephemerals go at once) and stop kazoo's threads."""
        if self._closed:
            return
        self._closing = True
        self._closed = True
        for sub in list(self._subscriptions):
            sub.cancel()
        for task in list(self._tasks):
            task.cancel()
        kz = self._kz
        if kz is not None:
            await asyncio.to_thread(kz.stop)
            await asyncio.to_thread(kz.close)
        if self._connected is not None:
            self._connected.clear()
        self._session_id = None
        self._emit(SessionEvent(SessionState.CLOSED))

    # ------------------------------------------------------------------ session events

    def _kazoo_listener(self, state: str) -> None:
        """Runs on kazoo's connection thread: must not block, must not touch loop state."""
        kz = self._kz
        assert kz is not None and self._loop is not None
        if state == KazooState.CONNECTED:
            sid = kz.client_id[0] if kz.client_id else None
            new = sid != self._thread_session_id
            self._thread_session_id = sid
            event = SessionEvent(SessionState.CONNECTED, sid, new)
        elif state == KazooState.SUSPENDED:
            event = SessionEvent(SessionState.SUSPENDED, self._thread_session_id)
        else:  # LOST: expired (or closing, which close() reports itself)
            if self._closing:
                return
            event = SessionEvent(SessionState.EXPIRED, self._thread_session_id)
            self._thread_session_id = None
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._on_session_event, event)

    def _on_session_event(self, event: SessionEvent) -> None:
        if self._closed:
            return
        assert self._connected is not None
        if event.state is SessionState.CONNECTED:
            self._session_id = event.session_id
            self._connected.set()
            log.info(
                "ZooKeeper connected, session 0x%x%s",
                event.session_id or 0,
                " (new session)" if event.new_session else "",
            )
        else:
            self._connected.clear()
            if event.state is SessionState.EXPIRED:
                self._session_id = None
                log.warning("ZooKeeper session 0x%x expired", event.session_id or 0)
            else:
                log.warning("ZooKeeper connection lost (session 0x%x)", event.session_id or 0)
        self._emit(event)

    def _emit(self, event: SessionEvent) -> None:
        for cb in list(self._listeners):
            try:
                cb(event)
            except Exception:
                log.exception("session listener failed on %s", event)

    # ------------------------------------------------------------------ request plumbing

    async def _wait_connected(self, timeout_s: float | None) -> None:
        if self._closed:
            raise ZkClosedError("ZooKeeper client is closed")
        assert self._connected is not None
        if self._connected.is_set():
            return
        try:
            await asyncio.wait_for(self._connected.wait(), timeout_s)
        except TimeoutError:
            raise ZkConnectionTimeoutError(
                f"Timed out waiting for connection to {self.connect} "
                f"after {self.connection_timeout_ms} ms"
            ) from None
        if self._closed:
            raise ZkClosedError("ZooKeeper client is closed")

    def _submit(self, path: str | None, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Start a kazoo async request; its result arrives on the loop."""
        loop = self.loop
        fut: asyncio.Future[Any] = loop.create_future()

        def settle(value: Any, error: BaseException | None) -> None:
            if fut.done():
                return
            if error is not None:
                fut.set_exception(_map_error(error, path))
            else:
                fut.set_result(value)

        def on_done(result: Any) -> None:  # kazoo thread
            try:
                value, error = result.get(block=False), None
            except BaseException as e:  # noqa: BLE001 - handed to the loop
                value, error = None, e
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, value, error)

        try:
            fn(*args).rawlink(on_done)
        except BaseException as e:
            fut.set_exception(_map_error(e, path))
        return fut

    async def _call(self, path: str | None, fn: Callable[..., Any], *args: Any) -> Any:
        """Kafka's retryRequestUntilConnected: wait for a connection, retry on its loss."""
        while True:
            await self._wait_connected(self.connection_timeout_ms / 1000)
            assert self._kz is not None
            try:
                return await self._submit(path, fn, *args)
            except _RETRIABLE:
                log.debug("ZooKeeper connection lost during a request on %s; retrying", path)
                await asyncio.sleep(0.05)

    def _watch(self, watch: Callable[[WatchEvent], None] | None) -> Callable[[Any], None] | None:
        if watch is None:
            return None
        loop = self.loop

        def kazoo_watch(event: Any) -> None:  # kazoo thread
            ev = WatchEvent(_EVENT_TYPES.get(event.type, "session"), event.path)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(watch, ev)

        return kazoo_watch

    # ------------------------------------------------------------------ requests

    async def get(
        self, path: str, watch: Callable[[WatchEvent], None] | None = None
    ) -> tuple[bytes | None, ZkStat]:
        """Data and stat; raises ZkNoNodeError. ``watch`` fires once, on the loop."""
        kz = self._require()
        data, stat = await self._call(path, kz.get_async, path, self._watch(watch))
        return data, ZkStat.of(stat)

    async def get_or_none(self, path: str) -> tuple[bytes | None, ZkStat] | None:
        try:
            return await self.get(path)
        except ZkNoNodeError:
            return None

    async def exists(
        self, path: str, watch: Callable[[WatchEvent], None] | None = None
    ) -> ZkStat | None:
        kz = self._require()
        stat = await self._call(path, kz.exists_async, path, self._watch(watch))
        return ZkStat.of(stat) if stat is not None else None

    async def get_children(
        self, path: str, watch: Callable[[WatchEvent], None] | None = None
    ) -> list[str]:
        kz = self._require()
        return sorted(await self._call(path, kz.get_children_async, path, self._watch(watch)))

    async def create(
        self,
        path: str,
        data: bytes | None = None,
        *,
        ephemeral: bool = False,
        sequential: bool = False,
    ) -> str:
        """Create one znode; returns its path (with the sequence suffix if sequential)."""
        kz = self._require()
        return await self._call(
            path, kz.create_async, path, data, None, ephemeral, sequential, False
        )

    async def set(self, path: str, data: bytes, version: int = -1) -> ZkStat:
        kz = self._require()
        return ZkStat.of(await self._call(path, kz.set_async, path, data, version))

    async def delete(self, path: str, version: int = -1) -> None:
        kz = self._require()
        await self._call(path, kz.delete_async, path, version)

    async def ensure_path(self, path: str) -> None:
        """Kafka's createRecursive(throwIfPathExists = false): parents too, with null data."""
        parts = [p for p in path.split("/") if p]
        current = ""
        for part in parts:
            current += "/" + part
            with contextlib.suppress(ZkNodeExistsError):
                await self.create(current)

    async def delete_recursive(self, path: str) -> bool:
        """Delete a znode and its subtree (not atomically); False when it did not exist."""
        try:
            children = await self.get_children(path)
        except ZkNoNodeError:
            return False
        for child in children:
            await self.delete_recursive(f"{path.rstrip('/')}/{child}")
        try:
            await self.delete(path)
        except ZkNoNodeError:
            return False
        return True

    async def multi(self, ops: Sequence[ZkOp]) -> list[Any]:
        """One ZooKeeper transaction: all ops or none.

        Returns per-op results (created path, new ZkStat for a set, True otherwise);
        raises :class:`ZkMultiError` naming the failing op when it is rolled back.
        """
        kz = self._require()
        if not ops:
            return []
        chroot = kz.chroot
        raw: list[Any] = []
        for op in ops:
            full = _prefix_root(chroot, op.path)
            if isinstance(op, CheckOp):
                raw.append(CheckVersion(full, op.version))
            elif isinstance(op, CreateOp):
                flags = (1 if op.ephemeral else 0) | (2 if op.sequential else 0)
                raw.append(Create(full, op.data, OPEN_ACL_UNSAFE, flags))
            elif isinstance(op, SetDataOp):
                raw.append(SetData(full, op.data, op.version))
            elif isinstance(op, DeleteOp):
                raw.append(Delete(full, op.version))
            else:
                raise TypeError(f"not a ZooKeeper op: {op!r}")

        def commit() -> Any:
            result = kz.handler.async_result()
            kz._call(Transaction(raw), result)
            return result

        results = await self._call(ops[0].path, commit)
        failure = None
        for i, r in enumerate(results):
            if isinstance(r, kz_errors.RolledBackError | kz_errors.RuntimeInconsistency):
                continue
            if isinstance(r, Exception):
                failure = (i, r)
                break
        if failure is None and any(isinstance(r, Exception) for r in results):
            i = next(i for i, r in enumerate(results) if isinstance(r, Exception))
            failure = (i, results[i])
        if failure is not None:
            i, err = failure
            cause = _map_error(err, ops[i].path)
            if not isinstance(cause, ZkError):
                cause = ZkError(str(cause), ops[i].path)
            raise ZkMultiError(i, cause)
        out: list[Any] = []
        for r in results:
            if isinstance(r, str):
                out.append(kz.unchroot(r))
            elif isinstance(r, ZnodeStat):
                out.append(ZkStat.of(r))
            else:
                out.append(r)
        return out

    def _require(self) -> KazooClient:
        if self._kz is None or self._closed:
            raise ZkClosedError("ZooKeeper client is not started or closed")
        return self._kz

    # ------------------------------------------------------------------ standing watches

    def watch_data(self, path: str, callback: DataCallback) -> Subscription:
        """Call ``callback(data, stat)`` (None, None when absent) now and on every change."""
        return self._subscribe(path, False, callback)

    def watch_children(self, path: str, callback: ChildrenCallback) -> Subscription:
        """Call ``callback(sorted children)`` (None when absent) now and on every change."""
        return self._subscribe(path, True, callback)

    def _subscribe(self, path: str, children: bool, callback: Any) -> Subscription:
        self._require()
        sub = Subscription(self, path, children, callback)
        self._subscriptions.add(sub)
        self._refresh_subscription(sub)
        return sub

    def _refresh_subscription(self, sub: Subscription) -> None:
        """A watch fired (or the connection came back): read again, on the loop."""
        if sub.cancelled or self._closed:
            return
        if sub._refreshing:
            sub._dirty = True
            return
        sub._refreshing = True
        task = self.loop.create_task(self._run_refresh(sub))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_refresh(self, sub: Subscription) -> None:
        try:
            while not sub.cancelled and not self._closed:
                sub._dirty = False
                try:
                    value = await self._read_watched(sub)
                except (
                    ZkConnectionLossError,
                    ZkSessionExpiredError,
                    ZkConnectionTimeoutError,
                ):
                    await asyncio.sleep(0.05)
                    continue  # _call waits for the next connection
                except ZkClosedError:
                    return
                if value is _RETRY:
                    continue
                if sub.cancelled:
                    return
                try:
                    if sub.children:
                        sub.callback(value)
                    else:
                        sub.callback(*value)
                except Exception:
                    log.exception("watch callback for %s failed", sub.path)
                sub.initialized.set()
                if not sub._dirty:
                    return
        finally:
            sub._refreshing = False

    async def _read_watched(self, sub: Subscription) -> Any:
        kz = self._require()
        w = sub.kazoo_watch
        try:
            if sub.children:
                return sorted(await self._call(sub.path, kz.get_children_async, sub.path, w))
            data, stat = await self._call(sub.path, kz.get_async, sub.path, w)
            return data, ZkStat.of(stat)
        except ZkNoNodeError:
            # Absent: watch for its creation instead (a get leaves no watch on a missing node).
            stat = await self._call(sub.path, kz.exists_async, sub.path, w)
            if stat is not None:
                return _RETRY  # created in between: read it
            return None if sub.children else (None, None)


_RETRY = object()
