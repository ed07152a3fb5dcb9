"""DescribeLogDirs: every log dir, its replicas' sizes and lag, its volume's space.

A broker with two log dirs holds partitions in both; kafka-python's admin client and
Kafka's own ``kafka-log-dirs`` tool must see each partition in the dir whose files hold
it, with the size those files have on disk (a log's size is its segments' .log files),
and the volume's total and usable bytes as the file system reports them.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from confluent_kafka import Producer
from kafka.admin import KafkaAdminClient

from tests.support.broker import BrokerProcess
from tests.support.kafka_ref import run_tool


def segment_bytes(partition_dir: Path) -> int:
    return sum(p.stat().st_size for p in partition_dir.glob("*.log"))


def on_disk(dirs: list[Path], topic: str) -> dict[int, tuple[str, int]]:
    """partition -> (its log dir, its .log bytes), read from the files."""
    found = {}
    for d in dirs:
        for part in d.glob(f"{topic}-*"):
            index = int(part.name.rsplit("-", 1)[1])
            found[index] = (os.path.abspath(d), segment_bytes(part))
    return found


def produce(bootstrap: str, topic: str, count: int) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(count):
        p.produce(topic, key=str(i).encode(), value=b"x" * (100 + i % 50), partition=i % 4)
    assert p.flush(30) == 0


def test_describe_log_dirs_matches_the_files(tmp_path: Path) -> None:
    dirs = [tmp_path / "dir-a", tmp_path / "dir-b"]
    broker = BrokerProcess(
        tmp_path / "data",
        overrides={"log.dirs": ",".join(map(str, dirs)), "num.partitions": "4"},
    ).start()
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        topic = f"logdirs-{uuid.uuid4().hex[:8]}"
        other = f"logdirs-other-{uuid.uuid4().hex[:8]}"
        produce(broker.bootstrap, topic, 400)
        produce(broker.bootstrap, other, 40)
        disk = on_disk(dirs, topic)
        assert sorted(disk) == [0, 1, 2, 3]
        assert {d for d, _ in disk.values()} == {os.path.abspath(d) for d in dirs}

        # kafka-python, asking for one topic's partitions.
        (answer,) = admin.describe_log_dirs(topic_partitions={topic: [0, 1, 2, 3]})
        assert answer["broker"] == 0
        seen = {}
        described_dirs = set()
        for result in answer["log_dirs"]:
            assert result["error_code"] == 0
            described_dirs.add(result["log_dir"])
            st = os.statvfs(result["log_dir"])
            assert result["total_bytes"] == st.f_blocks * st.f_frsize
            assert 0 < result["usable_bytes"] <= result["total_bytes"]
            for t in result["topics"]:
                assert t["name"] == topic  # the other topic was not asked for
                for p in t["partitions"]:
                    assert p["offset_lag"] == 0 and p["is_future_key"] is False
                    seen[p["partition_index"]] = (result["log_dir"], p["partition_size"])
        assert described_dirs == {os.path.abspath(d) for d in dirs}
        assert seen == disk

        # Kafka's own tool, every partition: both topics, the same numbers.
        out = run_tool(
            "kafka-log-dirs", "--bootstrap-server", broker.bootstrap, "--describe"
        ).check()
        line = next(x for x in out.stdout.splitlines() if x.startswith("{"))
        report = json.loads(line)
        (b,) = report["brokers"]
        tool_seen = {}
        for d in b["logDirs"]:
            assert d["error"] is None
            for p in d["partitions"]:
                name, _, index = p["partition"].rpartition("-")
                tool_seen[(name, int(index))] = (d["logDir"], p["size"])
        assert {k[1]: v for k, v in tool_seen.items() if k[0] == topic} == disk
        assert {k[1]: v for k, v in tool_seen.items() if k[0] == other} == on_disk(dirs, other)
    finally:
        admin.close()
        broker.stop()
