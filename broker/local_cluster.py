"""`make cluster`: ZooKeeper and three brokers as local processes, the docker-compose
topology without Docker.

    python -m pybroker.broker.local_cluster [--config-dir config/cluster] [--data data/cluster]

Starts Debian's ZooKeeper (``config/cluster/zoo.cfg``, port 2181) and one pybroker per
``broker-*.properties`` (ports 9092-9094), each logging to ``<data>/logs/``, prints the
bootstrap list and waits. Ctrl-C or SIGTERM (``make cluster-stop`` sends it through the pid
file) stops the brokers with SIGTERM, so each does a controlled shutdown, then ZooKeeper.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from pybroker.config.properties import load_properties

ZK_CLASSPATH = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar"
ZK_MAIN = "org.apache.zookeeper.server.ZooKeeperServerMain"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0


def _port_of(listeners: str) -> tuple[str, int]:
    host_port = listeners.split(",")[0].split("://", 1)[1]
    host, _, port = host_port.rpartition(":")
    return host or "127.0.0.1", int(port)


def _wait_port(host: str, port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with code {proc.returncode}; see its log")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.2)
    raise SystemExit(f"{what} did not listen on {host}:{port} within {START_TIMEOUT_S:.0f}s")


def _stop(procs: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    for _, proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for name, proc in procs:
        try:
            proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            print(f"{name} did not stop in time: killing it", flush=True)
            proc.kill()
            proc.wait(5)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="ZooKeeper and three pybroker processes")
    ap.add_argument("--config-dir", default="config/cluster")
    ap.add_argument("--data", default="data/cluster")
    args = ap.parse_args(argv)
    config_dir, data = Path(args.config_dir), Path(args.data)
    logs = data / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    (data / "zookeeper").mkdir(parents=True, exist_ok=True)
    pid_file = data / "cluster.pid"
    pid_file.write_text(str(os.getpid()))
    stopping = False

    def request_stop(_sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    brokers: list[tuple[str, subprocess.Popen[bytes]]] = []
    zk: subprocess.Popen[bytes] | None = None
    try:
        zk_cfg = load_properties(config_dir / "zoo.cfg")
        with open(logs / "zookeeper.log", "ab") as out:
            zk = subprocess.Popen(
                ["java", "-cp", ZK_CLASSPATH, ZK_MAIN, str(config_dir / "zoo.cfg")],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_port(
            zk_cfg.get("clientPortAddress", "127.0.0.1"),
            int(zk_cfg["clientPort"]),
            zk,
            "ZooKeeper",
        )
        bootstrap = []
        for props in sorted(config_dir.glob("broker-*.properties")):
            listeners = load_properties(props)["listeners"]
            with open(logs / f"{props.stem}.log", "ab") as out:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "pybroker.broker.cli", "--config", str(props)],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            brokers.append((props.stem, proc))
            bootstrap.append(listeners)
        for (name, proc), listeners in zip(brokers, bootstrap, strict=True):
            _wait_port(*_port_of(listeners), proc, name)
        print(
            "pybroker cluster up: bootstrap.servers="
            + ",".join("{}:{}".format(*_port_of(x)) for x in bootstrap)
            + f"\nlogs in {logs}/; Ctrl-C or `make cluster-stop` to stop",
            flush=True,
        )
        while not stopping:
            for name, proc in brokers:
                if proc.poll() is not None:
                    print(f"{name} exited with code {proc.returncode}; stopping", flush=True)
                    stopping = True
            time.sleep(0.5)
        return 0
    finally:
        print("stopping the brokers (controlled shutdown), then ZooKeeper", flush=True)
        _stop(brokers)
        if zk is not None:
            _stop([("ZooKeeper", zk)])
        with contextlib.suppress(OSError):
            pid_file.unlink()


if __name__ == "__main__":
    sys.exit(main())
