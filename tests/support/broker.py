"""Start and stop a real pybroker process for integration tests.

Tests talk to the broker over TCP only; this module owns the process, its free port
and its data directory, and bounds every wait so that a hung broker fails a test
instead of hanging the suite.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = ROOT / "config" / "server.properties"


_HANDED_OUT: set[int] = set()  # ports free_port() returned in this process
_RNG = random.Random()
_FREE_PORT_SPAN = 12_000  # how far below the ephemeral range free_port() looks


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing uses right now, for a server started later.

    Chosen below the kernel's ephemeral range (ip_local_port_range), so that no outgoing
    connection (a client, a broker's ZooKeeper session) can take it as its local port
    between this choice and the server's bind, and never the same port twice in one
    test process. A port the kernel picks with bind(0) comes from that very range: CI
    once saw a broker's HTTP port taken that way before the broker started."""
    high = _ephemeral_low()
    low = max(1024, high - _FREE_PORT_SPAN)
    for _ in range(500):
        port = _RNG.randrange(low, high)
        if port in _HANDED_OUT:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError(f"no free TCP port in {low}..{high - 1} after 500 tries")


def wait_for_port(
    port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until something accepts on ``port``; fail at once if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise TimeoutError(f"broker exited with code {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"broker did not listen on port {port} within {timeout}s")


class BrokerProcess:
    """One pybroker process on 127.0.0.1 with its own port and log dir."""

    def __init__(
        self,
        data_dir: Path,
        overrides: dict[str, str] | None = None,
        port: int | None = None,
        config: Path = DEFAULT_CONFIG,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        # Every test broker serves /metrics on a port of its own (9644 is shared).
        self.http_port = free_port()
        self.overrides = dict(overrides or {})
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir.parent / f"broker-{self.port}.log"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        settings = {
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "log.dirs": str(self.data_dir),
            "pybroker.http.listener": f"http://127.0.0.1:{self.http_port}",
            **self.overrides,
        }
        cmd = [sys.executable, "-m", "pybroker.broker.cli", "--config", str(self.config)]
        for key, value in settings.items():
            cmd += ["--override", f"{key}={value}"]
        return cmd

    def start(self, timeout: float = 20.0) -> BrokerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        try:
            wait_for_port(self.port, timeout, self.proc)
        except TimeoutError:
            self.kill()
            raise RuntimeError(f"broker failed to start:\n{self.log_tail()}") from None
        return self

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait: a clean shutdown. Returns the exit code."""
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(5)
        self.proc = None
        return code

    def kill(self) -> None:
        """SIGKILL: an unclean stop, as a crash would leave it."""
        if self.proc is None:
            return
        try:
            os.kill(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        self.proc = None

    def restart(self) -> BrokerProcess:
        self.stop()
        return self.start()
