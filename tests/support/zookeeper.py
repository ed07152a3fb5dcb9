"""Start and stop a real ZooKeeper server (Debian's ``zookeeper`` package) for tests.

One standalone server per instance, on a free 127.0.0.1 port with its own data dir; it
keeps both across stop/kill/restart so that tests can restart ZooKeeper under a live
session. Every wait is bounded. The server logs to ``zookeeper-<port>.log`` beside the
data dir (log4j console output, when the slf4j-log4j12 binding is installed).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.support.broker import free_port

ZK_CONF_DIR = Path("/etc/zookeeper/conf")
ZK_JAR = Path("/usr/share/java/zookeeper.jar")
_LOG_JARS = (Path("/usr/share/java/slf4j-log4j12.jar"), Path("/usr/share/java/log4j-1.2.jar"))
MAIN_CLASS = "org.apache.zookeeper.server.ZooKeeperServerMain"


def zookeeper_available() -> bool:
    return ZK_JAR.exists() and shutil.which("java") is not None


def four_letter_word(port: int, word: str, timeout: float = 1.0) -> str:
    """Send a ZooKeeper four-letter command (``srvr``, ``ruok``) and return the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(word.encode("ascii"))
        chunks = []
        while True:
            data = s.recv(4096)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode("utf-8", "replace")


class ZooKeeperProcess:
    """A standalone ZooKeeper server on 127.0.0.1."""

    def __init__(self, data_dir: Path, port: int | None = None, tick_time_ms: int = 500) -> None:
        # tickTime bounds the session timeouts the server grants: [2, 20] x tickTime.
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.tick_time_ms = tick_time_ms
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir.parent / f"zookeeper-{self.port}.log"
        self.config_path = self.data_dir.parent / f"zoo-{self.port}.cfg"

    @property
    def connect(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _write_config(self) -> None:
        self.config_path.write_text(
            "\n".join(
                [
                    f"tickTime={self.tick_time_ms}",
                    f"dataDir={self.data_dir}",
                    f"clientPort={self.port}",
                    "clientPortAddress=127.0.0.1",
                    "admin.enableServer=false",
                    "maxClientCnxns=0",
                    "4lw.commands.whitelist=srvr,ruok,stat,cons,dump",
                    "",
                ]
            )
        )

    def command(self) -> list[str]:
        classpath = [str(ZK_CONF_DIR), str(ZK_JAR)]
        classpath += [str(j) for j in _LOG_JARS if j.exists()]
        return [
            "java",
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-Dzookeeper.root.logger=INFO,CONSOLE",
            "-Dzookeeper.log.dir=" + str(self.data_dir.parent),
            "-cp",
            ":".join(classpath),
            MAIN_CLASS,
            str(self.config_path),
        ]

    def start(self, timeout: float = 30.0) -> ZooKeeperProcess:
        if self.running:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                self.proc = None
                raise RuntimeError(f"zookeeper exited with {code}:\n{self.log_tail()}")
            try:
                if "Zookeeper version" in four_letter_word(self.port, "srvr", 0.5):
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(
            f"zookeeper not serving on {self.port} in {timeout}s:\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM and wait (the server's sessions live on in its data dir)."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: a crash."""
        if self.proc is None:
            return
        try:
            os.kill(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        self.proc = None

    def restart(self, down_for: float = 0.0) -> ZooKeeperProcess:
        """Stop, stay down ``down_for`` seconds, start again on the same port and data."""
        self.stop()
        if down_for:
            time.sleep(down_for)
        return self.start()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
