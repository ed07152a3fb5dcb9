"""Shrink a finding to the one write (ideally one frame) that causes it, on a scratch broker.

A findings file holds a whole batch or two. Replaying them against a fresh broker with
the same settings, first in chunks (each write on its own connection), then one write at a
time inside the chunk that reproduced, then one frame at a time inside that write, yields
a reproducer: hex bytes that, written on one new connection, kill the broker or make it
log the same traceback. State-dependent findings may not shrink; the file then stays the
reproducer.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tests.fuzz.cases import Unit, parse_units
from tests.fuzz.health import LogScanner, normalize, setup_topics
from tests.support.broker import BrokerProcess
from tests.support.wire import KafkaWire

if TYPE_CHECKING:
    from tests.fuzz.runner import Options, Summary

__all__ = ["Scratch", "reproduce", "isolate_findings", "replay_file"]

_CHUNK = 16


class Scratch:
    """A throwaway broker with the fuzz topics, restartable after a death."""

    def __init__(self, overrides: dict[str, str]) -> None:
        from tests.fuzz.runner import FUZZ_TOPICS, HEALTH_TOPIC

        self.topics = {**FUZZ_TOPICS, HEALTH_TOPIC: 1}
        self.overrides = overrides
        self.tmp = Path(tempfile.mkdtemp(prefix="pybroker-fuzz-isolate-"))
        self.broker: BrokerProcess | None = None
        self.scanner: LogScanner | None = None
        self.start()

    def start(self) -> None:
        self.stop()
        os.environ["RUST_BACKTRACE"] = "0"  # a backtrace makes an abort take long to finish
        data = Path(tempfile.mkdtemp(dir=self.tmp)) / "data"
        self.broker = BrokerProcess(data, self.overrides).start()
        self.scanner = LogScanner(self.broker.log_path)
        with KafkaWire("127.0.0.1", self.broker.port) as wire:
            setup_topics(wire, self.topics)
        self.scanner.skip_to_end()

    def dead(self) -> bool:
        proc = self.broker.proc if self.broker is not None else None
        return proc is None or proc.poll() is not None

    def last_words(self) -> str:
        assert self.broker is not None
        lines = [x for x in self.broker.log_tail(20).splitlines() if x.strip()]
        return lines[-1] if lines else ""

    def stop(self) -> None:
        if self.broker is not None:
            self.broker.kill()
            self.broker = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _send(port: int, data: bytes, split: int) -> socket.socket | None:
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=2.0)
    except OSError:
        return None
    try:
        if split:
            sock.sendall(data[:split])
            time.sleep(0.01)
            sock.sendall(data[split:])
        else:
            sock.sendall(data)
    except OSError:
        pass
    return sock


def _settle(socks: list[socket.socket], limit: float = 0.3) -> None:
    """Read until every socket is closed by the broker or quiet; then close them."""
    deadline = time.monotonic() + limit
    live = list(socks)
    while live and time.monotonic() < deadline:
        ready, _, _ = select.select(live, [], [], 0.03)
        if not ready:
            break
        for s in ready:
            try:
                if not s.recv(1 << 20):
                    live.remove(s)
            except OSError:
                live.remove(s)
    for s in socks:
        s.close()
    time.sleep(0.02)


def _hit(scratch: Scratch, kind: str, signature: str) -> bool:
    if kind == "death":
        deadline = time.monotonic() + 0.15
        while not scratch.dead():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True
    if scratch.dead() or scratch.scanner is None:
        return False
    return any(e.kind == kind and e.signature == signature for e in scratch.scanner.scan())


def _try(scratch: Scratch, units: list[Unit], kind: str, signature: str) -> bool:
    if scratch.dead():
        scratch.start()
    assert scratch.broker is not None
    socks = [s for u in units if (s := _send(scratch.broker.port, u.data, u.split))]
    _settle(socks)
    return _hit(scratch, kind, signature)


def _frames(data: bytes) -> list[bytes]:
    """Split a write into frames by their size prefixes (the last may be torn or odd)."""
    out, pos = [], 0
    while pos + 4 <= len(data):
        (size,) = struct.unpack_from(">i", data, pos)
        end = pos + 4 + size if size >= 0 else len(data)
        out.append(data[pos : min(end, len(data))])
        pos = min(end, len(data))
    if pos < len(data):
        out.append(data[pos:])
    return out


def _shrink(scratch: Scratch, u: Unit, kind: str, signature: str) -> bytes:
    if u.cases > 1:
        for f in _frames(u.data):
            if _try(scratch, [Unit(0, f, 1, 0, True)], kind, signature):
                return f
    return u.data


def reproduce(
    units: list[Unit],
    kind: str,
    signature: str,
    scratch: Scratch,
    culprits: list[Unit] | None = None,
    budget: float = 60.0,
) -> bytes | None:
    """The smallest write (one connection) that reproduces the finding, if any does."""
    for u in culprits or ():
        if _try(scratch, [u], kind, signature):
            return _shrink(scratch, u, kind, signature)
    deadline = time.monotonic() + budget
    for i in range(0, len(units), _CHUNK):
        if time.monotonic() > deadline:
            return None
        chunk = units[i : i + _CHUNK]
        if not _try(scratch, chunk, kind, signature):
            continue
        for u in chunk:
            if _try(scratch, [u], kind, signature):
                return _shrink(scratch, u, kind, signature)
    return None


def describe(frame: bytes) -> str:
    if len(frame) < 8:
        return "short frame"
    size, key, version = struct.unpack_from(">ihh", frame, 0)
    return f"api key {key} v{version}, declared size {size}, {len(frame)} bytes"


def isolate_findings(summary: Summary, opts: Options, say: Callable[[str], None]) -> None:
    """Find a one-write reproducer for each distinct finding of ``summary``."""
    scratch: Scratch | None = None
    try:
        for key, (kind, _batch, _text) in summary.findings.first.items():
            path = summary.finding_paths.get(key)
            if kind not in ("death", "traceback", "error") or path is None:
                continue
            if scratch is None:
                scratch = Scratch(opts.overrides)
            signature = key.split(": ", 1)[1]
            text = path.read_text()
            units = parse_units(text)
            t0 = time.monotonic()
            found = reproduce(units, kind, signature, scratch, parse_units(text, "culprit "))
            took = time.monotonic() - t0
            if found is None:
                say(f"isolate: {key}: not reproduced by single writes ({took:.1f}s)")
                continue
            extra = f" ({scratch.last_words()})" if kind == "death" else ""
            say(f"isolate: {key}: reproduced by one write, {describe(found)}{extra}")
            with open(path, "a") as f:
                f.write(f"reproducer {found.hex()}\n")
            shown = found.hex()
            summary.reproducers[key] = shown if len(shown) <= 400 else shown[:400] + "..."
    finally:
        if scratch is not None:
            scratch.close()


def replay_file(path: Path, overrides: dict[str, str]) -> int:
    """Replay a findings file on a scratch broker; 1 if it still reproduces, else 0."""
    text = path.read_text()
    kind = signature = ""
    reproducer: bytes | None = None
    for line in text.splitlines():
        if line.startswith("# kind: "):
            kind = line[8:]
        elif line.startswith("# signature: "):
            signature = line[13:]
        elif line.startswith("reproducer "):
            reproducer = bytes.fromhex(line.split()[1])
    scratch = Scratch(overrides)
    try:
        if reproducer is not None:
            units = [Unit(0, reproducer, 1, 0, True)]
            print(f"replaying the reproducer ({describe(reproducer)})")
        else:
            units = parse_units(text)
            print(f"replaying {len(units)} writes")
        found = reproduce(units, kind, signature, scratch, parse_units(text, "culprit "))
        if found is None:
            print(f"not reproduced: {kind}: {signature}")
            others = [] if scratch.scanner is None else scratch.scanner.scan()
            for e in others:
                print(f"but the broker logged another {e.kind}: {e.signature}")
            if scratch.dead():
                print(f"but the broker died: {scratch.last_words()}")
            return 1 if others or scratch.dead() else 0
        extra = f" ({normalize(scratch.last_words())})" if kind == "death" else ""
        print(f"REPRODUCED {kind}: {signature}{extra}\nreproducer {found.hex()[:2000]}")
        return 1
    finally:
        scratch.close()
