"""Network namespaces for cluster tests: each broker behind its own veth, cut off for real.

Layout (all names carry the creating process's pid and a counter, so concurrent runs and
leftovers of crashed runs never collide)::

    root namespace                       namespace pb<pid>x<n>b<i>
    bridge pb<pid>x<n>br  10.A.B.1/24 <-veth-> eth0 10.A.B.<10+i>/24, lo up
    (ZooKeeper listens on 10.A.B.1; test clients connect from here)

The /24 is a private range chosen so that it overlaps no route of the root namespace;
its addresses exist only on the bridge and inside the namespaces created here. A *cut*
installs an nftables netdev table inside the broker's namespace that drops every frame in
and out of ``eth0`` (silently, on both sides: a pulled cable), and a *heal* deletes it.
Loopback inside the namespace keeps working.

``NetnsNetwork.teardown`` deletes the namespaces (which deletes their veth ends and so the
peers) and the bridge; it is idempotent, runs at interpreter exit as well, and
``cleanup_stale`` removes what runs whose process is gone left behind.
"""

from __future__ import annotations

import atexit
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.support.broker import DEFAULT_CONFIG, BrokerProcess, free_port
from tests.support.zookeeper import ZooKeeperProcess, four_letter_word

_COUNTER = itertools.count(1)
_NAME = re.compile(r"^pb([0-9a-f]+)x(\d+)(?:br|b\d+|v\d+)$")
_ACTIVE: set[NetnsNetwork] = set()
CUT_TABLE = "pbcut"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True, timeout=20)


def netns_available() -> bool:
    """True when we may create namespaces and cut them (root, iproute2 and nft present)."""
    return os.geteuid() == 0 and shutil.which("ip") is not None and shutil.which("nft") is not None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_stale() -> list[str]:
    """Delete namespaces and links named by this module whose creating process is gone."""
    removed: list[str] = []
    names = _ip("netns", "list", check=False).stdout.split()
    links = re.findall(r"^\d+: ([^:@ ]+)", _ip("-o", "link", "show", check=False).stdout, re.M)
    for name in [n for n in names if _NAME.match(n)] + [n for n in links if _NAME.match(n)]:
        m = _NAME.match(name)
        assert m is not None
        if _pid_alive(int(m.group(1), 16)):
            continue
        if name in names:
            _ip("netns", "del", name, check=False)
        else:
            _ip("link", "del", name, check=False)
        removed.append(name)
    return removed


def _used_prefixes() -> set[tuple[int, int]]:
    """(A, B) of every 10.A.B.x address or route the root namespace knows."""
    out = _ip("-4", "route", "show", "table", "all", check=False).stdout
    out += _ip("-4", "addr", "show", check=False).stdout
    return {(int(a), int(b)) for a, b in re.findall(r"\b10\.(\d+)\.(\d+)\.\d+", out)}


class NetnsNetwork:
    """A bridge in the root namespace and one namespace per member, ``1..size``."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.tag = f"pb{os.getpid():x}x{next(_COUNTER)}"
        self.bridge = f"{self.tag}br"
        used = _used_prefixes()
        start = os.getpid() * 7 + int(self.tag.rsplit("x", 1)[1])
        for k in range(200):
            a, b = 200 + (start + k) % 50, (start * 13 + k) % 256
            if (a, b) not in used:
                self.prefix = f"10.{a}.{b}"
                break
        else:  # pragma: no cover - 200 candidates all in use
            raise RuntimeError("no free 10.x.y.0/24 for the test network")
        self.gateway = f"{self.prefix}.1"
        self.cut_now: set[int] = set()
        self._up = False

    def namespace(self, i: int) -> str:
        return f"{self.tag}b{i}"

    def veth(self, i: int) -> str:
        return f"{self.tag}v{i}"

    def host(self, i: int) -> str:
        return f"{self.prefix}.{10 + i}"

    def exec_prefix(self, i: int) -> list[str]:
        return ["ip", "netns", "exec", self.namespace(i)]

    # ------------------------------------------------------------------ lifecycle
    def setup(self) -> NetnsNetwork:
        if self._up:
            return self
        cleanup_stale()
        _ACTIVE.add(self)
        self._up = True  # from here on teardown() has something to undo
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for i in range(1, self.size + 1):
                ns, veth = self.namespace(i), self.veth(i)
                _ip("netns", "add", ns)
                _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
                _ip("link", "set", veth, "master", self.bridge, "up")
                _ip("-n", ns, "addr", "add", f"{self.host(i)}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.teardown()
            raise
        return self

    def teardown(self) -> None:
        if not self._up:
            return
        for i in range(1, self.size + 1):
            _ip("netns", "del", self.namespace(i), check=False)
            _ip("link", "del", self.veth(i), check=False)  # gone with the namespace normally
        _ip("link", "del", self.bridge, check=False)
        self.cut_now.clear()
        self._up = False
        _ACTIVE.discard(self)

    def leftovers(self) -> list[str]:
        """Names of this network's namespaces and links that still exist (for tests)."""
        names = _ip("netns", "list", check=False).stdout.split()
        links = re.findall(r"^\d+: ([^:@ ]+)", _ip("-o", "link", "show", check=False).stdout, re.M)
        mine = {self.bridge}
        for i in range(1, self.size + 1):
            mine |= {self.namespace(i), self.veth(i)}
        return [n for n in names + links if n in mine]

    # ------------------------------------------------------------------ faults
    def cut(self, i: int) -> None:
        """Pull member ``i``'s cable: drop every frame into and out of its eth0.

        netdev ingress/egress hooks sit below IP, so the broker's own sends "succeed" and
        vanish, as they would on a dead wire (an IP-level output drop would give EPERM).
        Loopback inside the namespace is unaffected.
        """
        rules = (
            f"table netdev {CUT_TABLE} {{\n"
            "  chain wire_in {\n"
            '    type filter hook ingress device "eth0" priority -500; policy drop;\n'
            "  }\n"
            "  chain wire_out {\n"
            '    type filter hook egress device "eth0" priority -500; policy drop;\n'
            "  }\n"
            "}\n"
        )
        done = subprocess.run(
            [*self.exec_prefix(i), "nft", "-f", "-"],
            input=rules,
            check=False,
            capture_output=True,
            text=True,
            timeout=20,
        )
        if done.returncode != 0:
            raise RuntimeError(f"nft cut of {self.namespace(i)} failed: {done.stderr}")
        self.cut_now.add(i)

    def heal(self, i: int) -> None:
        subprocess.run(
            [*self.exec_prefix(i), "nft", "delete", "table", "netdev", CUT_TABLE],
            check=False,
            capture_output=True,
            text=True,
            timeout=20,
        )
        self.cut_now.discard(i)

    def heal_all(self) -> None:
        for i in list(self.cut_now):
            self.heal(i)


@atexit.register
def _teardown_all() -> None:
    for net in list(_ACTIVE):
        net.teardown()


def wait_for_address(
    host: str, port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait until something accepts on ``host:port``; fail at once if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise TimeoutError(f"process exited with code {proc.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on {host}:{port} within {timeout}s")


class NetnsBrokerProcess(BrokerProcess):
    """A BrokerProcess run with ``ip netns exec`` that listens on its namespace address.

    ``ip netns exec`` execs the command, so ``proc.pid`` is the broker itself and
    kill/SIGSTOP reach it directly.
    """

    def __init__(
        self,
        data_dir: Path,
        network: NetnsNetwork,
        member: int,
        overrides: dict[str, str] | None = None,
        port: int | None = None,
        config: Path = DEFAULT_CONFIG,
    ) -> None:
        super().__init__(data_dir, overrides, port or free_port(), config)
        self.network = network
        self.member = member
        self.host = network.host(member)
        self.overrides.setdefault("listeners", f"PLAINTEXT://{self.host}:{self.port}")
        self.overrides.setdefault("advertised.listeners", f"PLAINTEXT://{self.host}:{self.port}")

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [*self.network.exec_prefix(self.member), *super().command()]

    def start(self, timeout: float = 20.0) -> NetnsBrokerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        try:
            wait_for_address(self.host, self.port, timeout, self.proc)
        except TimeoutError:
            self.kill()
            raise RuntimeError(f"broker failed to start:\n{self.log_tail()}") from None
        return self

    def pause(self) -> None:
        if self.proc is not None:
            os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            try:
                os.kill(self.proc.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


class NetnsZooKeeper(ZooKeeperProcess):
    """A ZooKeeper in the root namespace that listens on the bridge address only."""

    def __init__(self, data_dir: Path, host: str, port: int | None = None) -> None:
        super().__init__(data_dir, port)
        self.host = host

    @property
    def connect(self) -> str:
        return f"{self.host}:{self.port}"

    def _write_config(self) -> None:
        super()._write_config()
        text = self.config_path.read_text()
        self.config_path.write_text(
            text.replace("clientPortAddress=127.0.0.1", f"clientPortAddress={self.host}")
        )

    def start(self, timeout: float = 30.0) -> NetnsZooKeeper:
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
                if "Zookeeper version" in _four_letter_word_at(self.host, self.port, "srvr"):
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"zookeeper not serving on {self.connect} in {timeout}s")


def _four_letter_word_at(host: str, port: int, word: str, timeout: float = 0.5) -> str:
    if host == "127.0.0.1":
        return four_letter_word(port, word, timeout)
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(word.encode("ascii"))
        chunks = []
        while True:
            data = s.recv(4096)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode("utf-8", "replace")
