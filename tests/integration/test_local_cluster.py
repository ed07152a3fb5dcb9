"""`make cluster`: the supervisor starts ZooKeeper and three brokers, prints the bootstrap
list, serves a replicated topic, and stops everything on SIGTERM.

The repository's config/cluster files are used as they are, with only the ports (free
ones, chosen now) and the data paths rewritten, so the test checks the files users run.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from tests.support.broker import ROOT, free_port


def rewrite(src: Path, dst: Path, data: Path) -> tuple[int, list[int]]:
    """Copy config/cluster to ``dst`` with free ports and paths under ``data``."""
    dst.mkdir(parents=True)
    zk_port = free_port()
    zoo = (src / "zoo.cfg").read_text()
    zoo = re.sub(r"(?m)^clientPort=.*$", f"clientPort={zk_port}", zoo)
    zoo = re.sub(r"(?m)^dataDir=.*$", f"dataDir={data / 'zookeeper'}", zoo)
    (dst / "zoo.cfg").write_text(zoo)
    ports = []
    for props in sorted(src.glob("broker-*.properties")):
        port = free_port()
        ports.append(port)
        text = props.read_text()
        text = re.sub(r"(?m)^listeners=.*$", f"listeners=PLAINTEXT://127.0.0.1:{port}", text)
        text = re.sub(r"(?m)^log\.dirs=.*$", f"log.dirs={data / props.stem}", text)
        text = re.sub(  # the fixed 9644-9646 may be taken on a test machine
            r"(?m)^pybroker\.http\.listener=.*$",
            f"pybroker.http.listener=http://127.0.0.1:{free_port()}",
            text,
        )
        text = re.sub(
            r"(?m)^zookeeper\.connect=127\.0\.0\.1:\d+",
            f"zookeeper.connect=127.0.0.1:{zk_port}",
            text,
        )
        (dst / props.name).write_text(text)
    return zk_port, ports


def test_make_cluster_supervisor(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _, ports = rewrite(ROOT / "config" / "cluster", tmp_path / "cfg", data)
    assert len(ports) == 3
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pybroker.broker.local_cluster",
            "--config-dir",
            str(tmp_path / "cfg"),
            "--data",
            str(data),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        expected = ",".join(f"127.0.0.1:{p}" for p in ports)
        assert first.strip() == f"pybroker cluster up: bootstrap.servers={expected}"
        p = Producer({"bootstrap.servers": expected, "acks": "all"})
        for i in range(30):
            p.produce("local", value=b"%d" % i, partition=i % 3)
        assert p.flush(60) == 0
        c = Consumer({"bootstrap.servers": expected, "group.id": "g"})
        c.assign([TopicPartition("local", i, 0) for i in range(3)])
        got: set[bytes] = set()
        deadline = time.monotonic() + 30
        while len(got) < 30 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.add(m.value())
        md = c.list_topics("local", timeout=10).topics["local"].partitions
        c.close()
        assert got == {b"%d" % i for i in range(30)}
        assert all(len(part.replicas) == 3 and len(part.isrs) == 3 for part in md.values())
        assert (data / "cluster.pid").read_text() == str(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
        assert not (data / "cluster.pid").exists()
        for i in (1, 2, 3):
            log = (data / "logs" / f"broker-{i}.log").read_text()
            assert "Shutdown complete" in log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
