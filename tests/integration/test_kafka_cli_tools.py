"""Apache Kafka 4.1's own command-line tools against a real pybroker.

Each test runs the tool as ``bin/kafka-*.sh`` would (by main class, Kafka's jars) and
checks what it prints against what pybroker must hold: the describe table's partitions,
leaders and configs, the consumer's exact records, offsets as numbers, the group's lag,
the transaction's state. Where a number can be had independently (confluent-kafka reading
the same partition), the tool's output is checked against it.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from tests.support.broker import BrokerProcess
from tests.support.kafka_ref import ToolResult, run_tool

pytestmark = pytest.mark.timeout(300)

NODE_ID = 0  # config/server.properties: broker.id=0


def tool(broker: BrokerProcess, name: str, *args: str, stdin: str | None = None) -> ToolResult:
    """Run a tool with ``--bootstrap-server`` pointing at pybroker; it must exit 0."""
    return run_tool(name, "--bootstrap-server", broker.bootstrap, *args, stdin=stdin).check()


def produce(broker: BrokerProcess, topic: str, records: list[tuple[bytes, bytes, int]]) -> None:
    """(key, value, timestamp) records to partition 0, acks=all, flushed."""
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for key, value, ts in records:
        p.produce(topic, key=key, value=value, partition=0, timestamp=ts)
    assert p.flush(30) == 0


def read_all(broker: BrokerProcess, topic: str, partition: int = 0) -> list[tuple[int, bytes]]:
    """Every record of one partition from its log start: (offset, value)."""
    c = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": f"reader-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    lo, hi = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    c.assign([TopicPartition(topic, partition, lo)])
    out: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + 20
    while len(out) < hi - lo and time.monotonic() < deadline:
        m = c.poll(1.0)
        if m is not None and m.error() is None:
            out.append((m.offset(), m.value()))
    c.close()
    return out


def parse_describe(stdout: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """kafka-topics --describe: (topic header fields, one dict per partition line)."""
    header: dict[str, str] = {}
    parts: list[dict[str, str]] = []
    for line in stdout.splitlines():
        if not line.strip():
            continue
        fields = {
            k.strip(): v.strip()
            for k, v in (f.split(":", 1) for f in line.strip().split("\t") if ":" in f)
        }
        if line.startswith("\t"):
            parts.append(fields)
        else:
            header = fields
    return header, parts


def offsets_table(stdout: str) -> dict[tuple[str, int], int]:
    """kafka-get-offsets prints ``topic:partition:offset`` lines."""
    out: dict[tuple[str, int], int] = {}
    for line in stdout.split():
        topic, partition, offset = line.rsplit(":", 2)
        out[(topic, int(partition))] = int(offset)
    return out


def group_rows(stdout: str) -> list[dict[str, str]]:
    """kafka-consumer-groups --describe: the table under its GROUP header as dicts."""
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    head = next(i for i, ln in enumerate(lines) if ln.startswith("GROUP"))
    names = lines[head].split()
    return [dict(zip(names, ln.split(), strict=False)) for ln in lines[head + 1 :]]


def tsv(stdout: str) -> list[dict[str, str]]:
    """kafka-transactions prints tab-separated tables with a header line."""
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    names = [n.strip() for n in lines[0].split("\t") if n.strip()]
    return [dict(zip(names, (v.strip() for v in ln.split("\t")), strict=False)) for ln in lines[1:]]


def test_topics_create_list_describe_alter_delete(broker: BrokerProcess) -> None:
    out = tool(
        broker,
        "kafka-topics",
        "--create",
        "--topic",
        "cli-topic",
        "--partitions",
        "3",
        "--replication-factor",
        "1",
        "--config",
        "retention.ms=12345",
        "--config",
        "max.message.bytes=4096",
    )
    assert out.stdout.strip() == "Created topic cli-topic."
    assert "cli-topic" in tool(broker, "kafka-topics", "--list").stdout.split()

    header, parts = parse_describe(
        tool(broker, "kafka-topics", "--describe", "--topic", "cli-topic").stdout
    )
    assert header["Topic"] == "cli-topic" and header["PartitionCount"] == "3"
    assert header["ReplicationFactor"] == "1"
    configs = dict(kv.split("=", 1) for kv in header["Configs"].split(","))
    assert configs["retention.ms"] == "12345" and configs["max.message.bytes"] == "4096"
    assert [p["Partition"] for p in parts] == ["0", "1", "2"]
    assert all(p["Leader"] == p["Replicas"] == p["Isr"] == str(NODE_ID) for p in parts)
    # The topic id is the one pybroker's Metadata gives to any client.
    meta = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics("cli-topic", 10)
    assert len(meta.topics["cli-topic"].partitions) == 3

    assert (
        tool(
            broker, "kafka-topics", "--alter", "--topic", "cli-topic", "--partitions", "5"
        ).stdout.strip()
        == ""
    )
    header, parts = parse_describe(
        tool(broker, "kafka-topics", "--describe", "--topic", "cli-topic").stdout
    )
    assert header["PartitionCount"] == "5"
    assert [p["Partition"] for p in parts] == ["0", "1", "2", "3", "4"]
    assert all(p["Leader"] == str(NODE_ID) for p in parts)

    # Shrinking is refused as Kafka refuses it.
    bad = run_tool(
        "kafka-topics",
        "--bootstrap-server",
        broker.bootstrap,
        "--alter",
        "--topic",
        "cli-topic",
        "--partitions",
        "2",
    )
    assert bad.returncode == 1
    assert "InvalidPartitionsException" in bad.stdout + bad.stderr

    tool(broker, "kafka-topics", "--delete", "--topic", "cli-topic")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if "cli-topic" not in tool(broker, "kafka-topics", "--list").stdout.split():
            break
    else:
        raise AssertionError("cli-topic still listed after --delete")
    gone = run_tool(
        "kafka-topics", "--bootstrap-server", broker.bootstrap, "--describe", "--topic", "cli-topic"
    )
    assert gone.returncode == 1
    assert "Topic 'cli-topic' does not exist" in gone.stdout + gone.stderr


def _config_lines(stdout: str) -> dict[str, str]:
    """kafka-configs --describe: ``name=value`` of each ``  name=value sensitive=...`` line."""
    out: dict[str, str] = {}
    for line in stdout.splitlines():
        m = re.match(r"^  (\S+?)=(\S*) sensitive=(true|false) synonyms=\{(.*)\}$", line)
        if m:
            out[m.group(1)] = m.group(2) + "|" + m.group(4)
    return out


def test_configs_topic_and_broker(broker: BrokerProcess) -> None:
    tool(broker, "kafka-topics", "--create", "--topic", "cfg-topic", "--partitions", "1")
    topic = ("--entity-type", "topics", "--entity-name", "cfg-topic")
    assert _config_lines(tool(broker, "kafka-configs", "--describe", *topic).stdout) == {}

    done = tool(
        broker,
        "kafka-configs",
        "--alter",
        *topic,
        "--add-config",
        "retention.ms=86400000,cleanup.policy=compact",
    )
    assert done.stdout.strip() == "Completed updating config for topic cfg-topic."
    desc = tool(broker, "kafka-configs", "--describe", *topic).stdout
    assert desc.splitlines()[0] == "Dynamic configs for topic cfg-topic are:"
    lines = _config_lines(desc)
    assert set(lines) == {"retention.ms", "cleanup.policy"}
    assert lines["retention.ms"].startswith("86400000|DYNAMIC_TOPIC_CONFIG:retention.ms=86400000")
    assert lines["cleanup.policy"].startswith("compact|DYNAMIC_TOPIC_CONFIG:cleanup.policy=compact")

    tool(broker, "kafka-configs", "--alter", *topic, "--delete-config", "retention.ms")
    lines = _config_lines(tool(broker, "kafka-configs", "--describe", *topic).stdout)
    assert set(lines) == {"cleanup.policy"}
    everything = _config_lines(tool(broker, "kafka-configs", "--describe", *topic, "--all").stdout)
    # Back to the value log.retention.hours=168 (server.properties) gives; as in Kafka 4.1,
    # that fallback key is no synonym of retention.ms, so none is listed.
    assert everything["retention.ms"] == "604800000|"
    assert everything["cleanup.policy"].startswith("compact|")
    assert everything["segment.bytes"].startswith("1073741824|")

    # Broker configs: nothing dynamic, server.properties as the static layer.
    brk = ("--entity-type", "brokers", "--entity-name", str(NODE_ID))
    desc = tool(broker, "kafka-configs", "--describe", *brk).stdout
    assert desc.splitlines()[0] == f"Dynamic configs for broker {NODE_ID} are:"
    assert _config_lines(desc) == {}
    static = _config_lines(tool(broker, "kafka-configs", "--describe", *brk, "--all").stdout)
    assert (
        static["log.dirs"] == f"{broker.data_dir}|STATIC_BROKER_CONFIG:log.dirs={broker.data_dir}"
    )
    assert static["num.partitions"].startswith("1|STATIC_BROKER_CONFIG:num.partitions=1")
    assert static["broker.id"].startswith(f"{NODE_ID}|")
    default = tool(
        broker, "kafka-configs", "--describe", "--entity-type", "brokers", "--entity-default"
    ).stdout
    assert default.splitlines()[0] == "Default configs for brokers in the cluster are:"
    assert _config_lines(default) == {}
    # Kafka refuses a key that is not dynamically updatable with this very message.
    refused = run_tool(
        "kafka-configs",
        "--bootstrap-server",
        broker.bootstrap,
        "--alter",
        *brk,
        "--add-config",
        "broker.id=7",
    )
    assert refused.returncode == 1
    assert "Cannot update these configs dynamically: Set(broker.id)" in refused.stderr


def test_console_producer_and_consumer_with_keys_and_group(broker: BrokerProcess) -> None:
    tool(broker, "kafka-topics", "--create", "--topic", "console", "--partitions", "1")
    lines = [f"key-{i}|value {i} with spaces" for i in range(5)]
    tool(
        broker,
        "kafka-console-producer",
        "--topic",
        "console",
        "--property",
        "parse.key=true",
        "--property",
        "key.separator=|",
        stdin="\n".join(lines) + "\n",
    )
    consumed = tool(
        broker,
        "kafka-console-consumer",
        "--topic",
        "console",
        "--from-beginning",
        "--max-messages",
        "5",
        "--group",
        "console-group",
        "--property",
        "print.key=true",
        "--property",
        "print.offset=true",
        "--property",
        "print.partition=true",
    )
    expected = [f"Partition:0\tOffset:{i}\tkey-{i}\tvalue {i} with spaces" for i in range(5)]
    assert consumed.stdout.splitlines() == expected
    assert "Processed a total of 5 messages" in consumed.stderr
    assert read_all(broker, "console") == [(i, f"value {i} with spaces".encode()) for i in range(5)]

    # --max-messages stops early; without --group nothing is committed for the group.
    two = tool(
        broker,
        "kafka-console-consumer",
        "--topic",
        "console",
        "--from-beginning",
        "--max-messages",
        "2",
        "--property",
        "print.key=true",
        "--property",
        "key.separator=,",
    )
    assert two.stdout.splitlines() == ["key-0,value 0 with spaces", "key-1,value 1 with spaces"]

    # The group committed offset 5 when the console consumer closed.
    rows = group_rows(
        tool(broker, "kafka-consumer-groups", "--describe", "--group", "console-group").stdout
    )
    assert [(r["TOPIC"], r["PARTITION"], r["CURRENT-OFFSET"], r["LAG"]) for r in rows] == [
        ("console", "0", "5", "0")
    ]


def test_consumer_groups_describe_reset_delete(broker: BrokerProcess) -> None:
    topic, group = "groups-cli", "cli-group"
    tool(broker, "kafka-topics", "--create", "--topic", topic, "--partitions", "1")
    produce(broker, topic, [(b"k%d" % i, b"v%d" % i, 0) for i in range(6)])
    c = Consumer(
        {"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    c.commit(offsets=[TopicPartition(topic, 0, 4)], asynchronous=False)
    c.close()

    assert group in tool(broker, "kafka-consumer-groups", "--list").stdout.split()
    described = tool(broker, "kafka-consumer-groups", "--describe", "--group", group)
    rows = group_rows(described.stdout)
    assert len(rows) == 1
    row = rows[0]
    assert (row["GROUP"], row["TOPIC"], row["PARTITION"]) == (group, topic, "0")
    assert (row["CURRENT-OFFSET"], row["LOG-END-OFFSET"], row["LAG"]) == ("4", "6", "2")
    assert (row["CONSUMER-ID"], row["HOST"], row["CLIENT-ID"]) == ("-", "-", "-")
    assert f"Consumer group '{group}' has no active members." in described.stderr

    def reset(*how: str) -> list[dict[str, str]]:
        out = tool(
            broker,
            "kafka-consumer-groups",
            "--reset-offsets",
            "--group",
            group,
            "--topic",
            topic,
            *how,
            "--execute",
        )
        return group_rows(out.stdout)

    def committed() -> int:
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
        (tp,) = c.committed([TopicPartition(topic, 0)], timeout=10)
        c.close()
        return int(tp.offset)

    assert [r["NEW-OFFSET"] for r in reset("--to-earliest")] == ["0"]
    assert committed() == 0
    assert [r["NEW-OFFSET"] for r in reset("--to-offset", "3")] == ["3"]
    assert committed() == 3
    assert [r["NEW-OFFSET"] for r in reset("--to-latest")] == ["6"]
    assert committed() == 6
    # Dry run (no --execute) shows the plan and changes nothing.
    plan = tool(
        broker,
        "kafka-consumer-groups",
        "--reset-offsets",
        "--group",
        group,
        "--topic",
        topic,
        "--shift-by",
        "-2",
        "--dry-run",
    )
    assert [r["NEW-OFFSET"] for r in group_rows(plan.stdout)] == ["4"]
    assert committed() == 6

    deleted = tool(
        broker, "kafka-consumer-groups", "--delete-offsets", "--group", group, "--topic", topic
    )
    assert f"Request succeeded for deleting offsets from group {group}." in deleted.stdout
    assert re.search(rf"^{topic}\s+0\s+Successful\s*$", deleted.stdout, re.M)
    assert committed() == -1001  # OFFSET_INVALID: nothing committed

    gone = tool(broker, "kafka-consumer-groups", "--delete", "--group", group)
    assert f"Deletion of requested consumer groups ('{group}') was successful." in gone.stdout
    assert group not in tool(broker, "kafka-consumer-groups", "--list").stdout.split()


def test_get_offsets_and_delete_records(broker: BrokerProcess, tmp_path: Path) -> None:
    topic = "offsets-cli"
    tool(broker, "kafka-topics", "--create", "--topic", topic, "--partitions", "2")
    base = int(time.time() * 1000) - 60_000
    # Partition 0: timestamps base, base+10, ... base+90 (offsets 0-9); partition 1 empty.
    produce(broker, topic, [(None, b"r%d" % i, base + 10 * i) for i in range(10)])

    def offsets(*time_args: str) -> dict[tuple[str, int], int]:
        return offsets_table(tool(broker, "kafka-get-offsets", "--topic", topic, *time_args).stdout)

    assert offsets() == {(topic, 0): 10, (topic, 1): 0}
    assert offsets("--time", "-1") == offsets("--time", "latest") == {(topic, 0): 10, (topic, 1): 0}
    assert (
        offsets("--time", "-2") == offsets("--time", "earliest") == {(topic, 0): 0, (topic, 1): 0}
    )
    # By time: the first offset whose timestamp is >= the asked time.
    assert offsets("--time", str(base + 35))[(topic, 0)] == 4
    assert offsets("--time", str(base + 90))[(topic, 0)] == 9
    # max-timestamp (-3): the offset of the record with the largest timestamp.
    assert offsets("--time", "-3")[(topic, 0)] == 9
    # --partitions narrows the output to the asked partitions.
    one = tool(broker, "kafka-get-offsets", "--topic", topic, "--partitions", "0").stdout
    assert offsets_table(one) == {(topic, 0): 10}

    spec = tmp_path / "delete.json"
    partitions = [{"topic": topic, "partition": 0, "offset": 7}]
    spec.write_text(json.dumps({"version": 1, "partitions": partitions}))
    out = tool(broker, "kafka-delete-records", "--offset-json-file", str(spec)).stdout
    assert "Records delete operation completed:" in out
    assert f"partition: {topic}-0\tlow_watermark: 7" in out
    assert offsets("--time", "-2") == {(topic, 0): 7, (topic, 1): 0}
    assert offsets("--time", "-1") == {(topic, 0): 10, (topic, 1): 0}
    # Reading from the start now begins at offset 7.
    assert read_all(broker, topic) == [(7, b"r7"), (8, b"r8"), (9, b"r9")]
    # A time before the new log start now answers the log start.
    assert offsets("--time", str(base))[(topic, 0)] == 7


def test_transactions_tool(broker: BrokerProcess) -> None:
    topic, txn_id = "txn-cli", "cli-txn-1"
    tool(broker, "kafka-topics", "--create", "--topic", topic, "--partitions", "1")
    p = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": txn_id})
    p.init_transactions(30)
    p.begin_transaction()
    p.produce(topic, key=b"a", value=b"committed", partition=0)
    p.commit_transaction(30)
    p.begin_transaction()
    p.produce(topic, key=b"b", value=b"open", partition=0)
    assert p.flush(30) == 0

    listed = {
        r["TransactionalId"]: r for r in tsv(tool(broker, "kafka-transactions", "list").stdout)
    }
    assert listed[txn_id]["TransactionState"] == "Ongoing"
    assert listed[txn_id]["Coordinator"] == str(NODE_ID)
    pid = listed[txn_id]["ProducerId"]

    (desc,) = tsv(
        tool(broker, "kafka-transactions", "describe", "--transactional-id", txn_id).stdout
    )
    assert desc["ProducerId"] == pid and desc["ProducerEpoch"] == "0"
    assert desc["TransactionState"] == "Ongoing"
    assert desc["TopicPartitions"] == f"{topic}-0"
    assert desc["TransactionTimeoutMs"] == "60000"
    assert int(desc["CurrentTransactionStartTimeMs"]) > 0

    producers = tsv(
        tool(
            broker,
            "kafka-transactions",
            "describe-producers",
            "--topic",
            topic,
            "--partition",
            "0",
        ).stdout
    )
    # Offsets: 0 = the committed record, 1 = its COMMIT marker, 2 = the open record.
    assert [
        (r["ProducerId"], r["LastSequence"], r["CurrentTransactionStartOffset"]) for r in producers
    ] == [(pid, "1", "2")]

    hanging = tool(broker, "kafka-transactions", "find-hanging", "--broker-id", str(NODE_ID))
    assert hanging.stdout.splitlines()[0].split() == [
        "Topic",
        "Partition",
        "ProducerId",
        "ProducerEpoch",
        "CoordinatorEpoch",
        "StartOffset",
        "LastTimestamp",
        "Duration(min)",
    ]
    assert tsv(hanging.stdout) == []  # the open transaction is young and known: not hanging

    p.abort_transaction(30)
    (desc,) = tsv(
        tool(broker, "kafka-transactions", "describe", "--transactional-id", txn_id).stdout
    )
    assert desc["TransactionState"] == "CompleteAbort" and desc["TopicPartitions"] == ""
    producers = tsv(
        tool(
            broker,
            "kafka-transactions",
            "describe-producers",
            "--topic",
            topic,
            "--partition",
            "0",
        ).stdout
    )
    assert [(r["ProducerId"], r["CurrentTransactionStartOffset"]) for r in producers] == [
        (pid, "None")
    ]


def test_producer_and_consumer_perf_tests(broker: BrokerProcess) -> None:
    topic, n = "perf-cli", 20_000
    tool(broker, "kafka-topics", "--create", "--topic", topic, "--partitions", "2")
    sent = run_tool(
        "kafka-producer-perf-test",
        "--topic",
        topic,
        "--num-records",
        str(n),
        "--record-size",
        "100",
        "--throughput",
        "-1",
        "--producer-props",
        f"bootstrap.servers={broker.bootstrap}",
        "acks=all",
        "linger.ms=5",
    ).check()
    summary = sent.stdout.strip().splitlines()[-1]
    assert summary.startswith(f"{n} records sent, "), summary
    assert "Exception" not in sent.stdout + sent.stderr
    latest = offsets_table(tool(broker, "kafka-get-offsets", "--topic", topic).stdout)
    assert sum(latest.values()) == n

    read = tool(
        broker,
        "kafka-consumer-perf-test",
        "--topic",
        topic,
        "--messages",
        str(n),
        "--timeout",
        "30000",
    )
    header, values = read.stdout.strip().splitlines()[-2:]
    names = [h.strip() for h in header.split(",")]
    row = dict(zip(names, (v.strip() for v in values.split(",")), strict=True))
    assert int(row["data.consumed.in.nMsg"]) == n
    assert float(row["data.consumed.in.MB"]) == pytest.approx(n * 100 / 1024 / 1024, abs=1e-3)
