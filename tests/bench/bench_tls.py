"""`make bench`: produce and consume throughput over SSL as a ratio of PLAINTEXT, same run.

    .venv/bin/python tests/bench/bench_tls.py [--records 100000] [--size 1024] [--rounds 3]

One broker with a PLAINTEXT and an SSL listener (PKCS12 key store, certificates made with
openssl in a temporary directory). Each round produces N records of 1 KiB with
confluent-kafka to a fresh topic through each listener and consumes them back through the
same listener; the best round of each and the median per-round ratio are reported. On
PLAINTEXT fetches go out with ``os.sendfile``; on SSL the broker reads the log and writes
through the TLS transport, so the consume ratio is the price of that path plus encryption
(librdkafka decrypts on the client side of the same machine). Exits non-zero on a lost or
corrupt record.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from tests.support.broker import BrokerProcess, free_port  # noqa: E402
from tests.support.tls_certs import PASSWORD, make_certs  # noqa: E402

PHASE_TIMEOUT = 60.0


class BenchFailure(Exception):
    pass


def create_topic(conf: dict[str, str], topic: str) -> None:
    admin = AdminClient(conf)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(
        timeout=15
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        t = admin.list_topics(topic, timeout=5).topics.get(topic)
        if t is not None and t.error is None and t.partitions and t.partitions[0].leader >= 0:
            return
        time.sleep(0.05)
    raise BenchFailure(f"{topic} has no leader")


def produce(conf: dict[str, str], topic: str, records: int, value: bytes) -> float:
    producer = Producer(
        {
            **conf,
            "acks": "1",
            "linger.ms": 5,
            "batch.size": 1000000,
            "batch.num.messages": 100000,
            "queue.buffering.max.messages": 1000000,
            "queue.buffering.max.kbytes": 1048576,
            "enable.idempotence": False,
            "message.timeout.ms": int(PHASE_TIMEOUT * 1000),
        }
    )
    errors: list[str] = []
    start = time.perf_counter()
    for i in range(records):
        while True:
            try:
                producer.produce(
                    topic, value, partition=0, on_delivery=lambda e, m: e and errors.append(str(e))
                )
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10000 == 0:
            producer.poll(0)
    if producer.flush(PHASE_TIMEOUT) or errors:
        raise BenchFailure(f"produce to {topic} failed: {errors[:1]}")
    return time.perf_counter() - start


def consume(conf: dict[str, str], topic: str, records: int, value: bytes) -> float:
    consumer = Consumer(
        {
            **conf,
            "group.id": f"{topic}-reader",
            "enable.auto.commit": False,
            "fetch.max.bytes": 52428800,
            "max.partition.fetch.bytes": 16777216,
            "fetch.wait.max.ms": 100,
            "queued.min.messages": 1000000,
            "queued.max.messages.kbytes": 1048576,
            "check.crcs": False,
        }
    )
    got = bad = 0
    try:
        start = time.perf_counter()
        consumer.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + PHASE_TIMEOUT
        while got < records and time.monotonic() < deadline:
            for msg in consumer.consume(num_messages=10000, timeout=1.0):
                if msg.error() is not None:
                    raise BenchFailure(f"consume error: {msg.error()}")
                bad += msg.offset() != got or msg.value() != value
                got += 1
        elapsed = time.perf_counter() - start
    finally:
        consumer.close()
    if got < records or bad:
        raise BenchFailure(f"consume {topic}: {got}/{records} records, {bad} wrong")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    mb = args.records * args.size / 1e6
    value = os.urandom(args.size)
    with tempfile.TemporaryDirectory(prefix="pybroker-bench-tls-") as tmp:
        certs = make_certs(Path(tmp) / "certs")
        plain_port, ssl_port = free_port(), free_port()
        listeners = f"PLAINTEXT://127.0.0.1:{plain_port},SSL://127.0.0.1:{ssl_port}"
        broker = BrokerProcess(
            Path(tmp) / "data",
            {
                "listeners": listeners,
                "advertised.listeners": listeners,
                "ssl.keystore.type": "PKCS12",
                "ssl.keystore.location": str(certs.broker_p12),
                "ssl.keystore.password": PASSWORD,
            },
            port=plain_port,
        )
        confs = {
            "PLAINTEXT": {"bootstrap.servers": f"127.0.0.1:{plain_port}"},
            "SSL": {
                "bootstrap.servers": f"127.0.0.1:{ssl_port}",
                "security.protocol": "SSL",
                "ssl.ca.location": str(certs.ca_cert),
            },
        }
        rates: dict[tuple[str, str], list[float]] = {}
        try:
            broker.start()
            print(f"{args.records:,} records x {args.size} B = {mb:.1f} MB per phase")
            for rnd in range(args.rounds):
                for name, conf in confs.items():
                    topic = f"bench-{name.lower()}-{rnd}"
                    create_topic(conf, topic)
                    for phase, run in (("produce", produce), ("consume", consume)):
                        rate = mb / run(conf, topic, args.records, value)
                        rates.setdefault((name, phase), []).append(rate)
                        print(f"  round {rnd + 1} {name:9} {phase}: {rate:7.1f} MB/s")
        except BenchFailure as exc:
            print(f"BENCH FAILED: {exc}\n{broker.log_tail()}", file=sys.stderr)
            return 1
        finally:
            broker.stop()
    # Best of the rounds, and the median of the per-round ratios (a round runs both
    # listeners back to back, so a noisy neighbour hits both sides of its ratio).
    print(f"\n{'':8} {'PLAINTEXT MB/s':>15} {'SSL MB/s':>9} {'best/best':>10} {'median ratio':>13}")
    for phase in ("produce", "consume"):
        plain, tls = rates[("PLAINTEXT", phase)], rates[("SSL", phase)]
        ratio = statistics.median(t / p for p, t in zip(plain, tls, strict=True))
        print(
            f"{phase:8} {max(plain):15.1f} {max(tls):9.1f} {max(tls) / max(plain):9.2f}x "
            f"{ratio:12.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
