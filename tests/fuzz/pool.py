"""A pool of non-blocking connections that writes fuzz frames and discards the answers.

The broker may close any connection at any time (a correct answer to a bad frame), may
stop reading one (a frame that declares more bytes than follow) or answer slowly. So:
each slot of the pool holds one live connection; a write expected to end its connection
("last") retires it: the slot gets a new connection for the next write while the retired
one is half-closed once flushed (the broker then closes it after the frames it has, as
Kafka does on EOF) and stays registered until the broker closes it, or is reset after
``linger`` seconds. Every socket is read all the time so the broker never blocks on a
full send buffer. (Half-closing first leaves TIME_WAIT on our side; Linux reuses those
ports for loopback connections, net.ipv4.tcp_tw_reuse=2 by default.)
"""

from __future__ import annotations

import errno
import selectors
import socket
import struct
import time
from collections import deque

__all__ = ["Pool", "PoolStats"]

_LINGER_RST = struct.pack("ii", 1, 0)
_READ = 1 << 18
_R = selectors.EVENT_READ
_RW = selectors.EVENT_READ | selectors.EVENT_WRITE


class PoolStats:
    def __init__(self) -> None:
        self.bytes_sent = 0
        self.bytes_received = 0
        self.responses = 0
        self.broker_closes = 0
        self.connections = 0
        self.resets = 0
        self.stalls = 0
        self.dropped_bytes = 0
        self.connect_failures = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class _Conn:
    __slots__ = (
        "sock",
        "out",
        "cases",
        "connecting",
        "progress_at",
        "need",
        "hdr",
        "slot",
        "closed",
        "port",
    )

    def __init__(self, sock: socket.socket, slot: int) -> None:
        self.sock = sock
        self.out = bytearray()
        self.cases = 0
        self.connecting = True
        self.progress_at = time.monotonic()
        self.need = 0  # bytes left of the response frame being read
        self.hdr = b""  # partial size prefix
        self.slot = slot  # -1 once retired
        self.closed = False
        self.port = 0


class Pool:
    """``size`` slots to host:port; ``submit`` queues bytes, ``pump`` moves them."""

    def __init__(
        self,
        host: str,
        port: int,
        size: int,
        budget: int = 200,
        stall_seconds: float = 1.0,
        linger_seconds: float = 2.0,
        max_open: int = 32,
    ) -> None:
        self.addr = (host, port)
        self.budget = budget
        self.stall_seconds = stall_seconds
        self.linger_seconds = linger_seconds
        # The broker's listen backlog is small (asyncio's default is 100): a burst of
        # connects beyond it loses SYNs, and each lost SYN costs a 1 s retransmit.
        self.max_open = max_open
        self.n_open = 0
        self.stats = PoolStats()
        self.slots: list[_Conn | None] = [None] * size
        self.sel = selectors.DefaultSelector()
        self.retired: deque[tuple[float, _Conn]] = deque()
        self._writers: set[_Conn] = set()
        # Which units went out from which local port: the broker logs its peer's port, so
        # a traceback in the log points straight at the write that caused it.
        self.port_units: dict[int, list[int]] = {}

    # -- connections -----------------------------------------------------------------
    def _open(self, slot: int) -> _Conn:
        if self.n_open >= self.max_open:
            deadline = time.monotonic() + 5.0
            while self.n_open >= self.max_open and time.monotonic() < deadline:
                self._wait(0.01)
                self._expire_retired(time.monotonic())
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = sock.connect_ex(self.addr)
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            self.stats.connect_failures += 1
            raise ConnectionRefusedError(err, "connect failed")
        conn = _Conn(sock, slot)
        try:
            conn.port = sock.getsockname()[1]
        except OSError:
            conn.port = 0
        self.slots[slot] = conn
        self.sel.register(sock, _RW, conn)
        self._writers.add(conn)
        self.stats.connections += 1
        self.n_open += 1
        return conn

    def _forget(self, conn: _Conn) -> None:
        if conn.closed:
            return
        conn.closed = True
        self.n_open -= 1
        if conn.slot >= 0 and self.slots[conn.slot] is conn:
            self.slots[conn.slot] = None
        self._writers.discard(conn)
        self.stats.dropped_bytes += len(conn.out)
        conn.out.clear()
        try:
            self.sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass

    def _reset(self, conn: _Conn) -> None:
        """Close with RST: no TIME_WAIT on our side, and the broker sees a reset."""
        self._forget(conn)
        try:
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        except OSError:
            pass
        conn.sock.close()
        self.stats.resets += 1

    def _closed_by_broker(self, conn: _Conn) -> None:
        self._forget(conn)
        conn.sock.close()
        self.stats.broker_closes += 1

    def _retire(self, conn: _Conn) -> None:
        if self.slots[conn.slot] is conn:
            self.slots[conn.slot] = None
        conn.slot = -1
        self.retired.append((time.monotonic() + self.linger_seconds, conn))

    def close(self) -> None:
        for conn in [c for c in self.slots if c is not None] + [c for _, c in self.retired]:
            if not conn.closed:
                self._reset(conn)
        self.retired.clear()
        self.slots = [None] * len(self.slots)

    # -- queueing ----------------------------------------------------------------------
    def submit(
        self, slot: int, data: bytes, cases: int, last: bool = False, unit: int = -1
    ) -> None:
        conn = self.slots[slot]
        if conn is None:
            conn = self._open(slot)
        if unit >= 0:
            self.port_units.setdefault(conn.port, []).append(unit)
        conn.out += data
        conn.cases += cases
        if conn not in self._writers:
            self._writers.add(conn)
            self.sel.modify(conn.sock, _RW, conn)
        if last or conn.cases >= self.budget:
            self._retire(conn)

    # -- moving bytes ------------------------------------------------------------------
    def _read(self, conn: _Conn) -> bool:
        """Drain what the broker sent; False when it closed the connection."""
        while True:
            try:
                data = conn.sock.recv(_READ)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not data:
                return False
            self.stats.bytes_received += len(data)
            self._count_responses(conn, data)
            if len(data) < _READ:
                return True

    def _count_responses(self, conn: _Conn, data: bytes) -> None:
        pos, n = 0, len(data)
        while pos < n:
            if conn.need:
                take = min(conn.need, n - pos)
                conn.need -= take
                pos += take
                continue
            missing = 4 - len(conn.hdr)
            hdr = conn.hdr + data[pos : pos + missing]
            pos += missing
            if len(hdr) < 4:
                conn.hdr = hdr
                return
            conn.hdr = b""
            conn.need = max(struct.unpack(">i", hdr)[0], 0)
            self.stats.responses += 1

    def _write(self, conn: _Conn, now: float) -> None:
        if conn.connecting:
            err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.stats.connect_failures += 1
                self._forget(conn)
                conn.sock.close()
                return
            conn.connecting = False
            conn.progress_at = now
        if conn.out:
            try:
                sent = conn.sock.send(conn.out)
            except BlockingIOError:
                sent = 0
            except OSError:
                self._closed_by_broker(conn)
                return
            if sent:
                del conn.out[:sent]
                conn.progress_at = now
                self.stats.bytes_sent += sent
        if not conn.out:
            self._writers.discard(conn)
            self.sel.modify(conn.sock, _R, conn)
            if conn.slot < 0:  # retired and flushed: EOF tells the broker nothing follows
                try:
                    conn.sock.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
        elif now - conn.progress_at > self.stall_seconds:
            self.stats.stalls += 1
            self._reset(conn)

    def _expire_retired(self, now: float) -> None:
        while self.retired:
            until, conn = self.retired[0]
            if until > now:
                break
            self.retired.popleft()
            if not conn.closed:
                self._reset(conn)

    def pump(self, timeout: float) -> None:
        """Write everything queued (or give up on stuck connections); read all answers."""
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            for conn in list(self._writers):
                if not conn.connecting:
                    self._write(conn, now)
            self._expire_retired(now)
            if not self._writers or now >= deadline:
                # one non-blocking sweep of reads before returning
                for key, _ in self.sel.select(0):
                    self._event(key.data, _R, now)
                return
            self._wait(min(0.01, max(deadline - now, 0)))

    def _wait(self, timeout: float) -> None:
        now = time.monotonic()
        for key, mask in self.sel.select(timeout):
            self._event(key.data, mask, now)

    def _event(self, conn: _Conn, mask: int, now: float) -> None:
        if conn.closed:
            return
        if mask & selectors.EVENT_READ and not conn.connecting and not self._read(conn):
            self._closed_by_broker(conn)
            return
        if mask & selectors.EVENT_WRITE:
            self._write(conn, now)
