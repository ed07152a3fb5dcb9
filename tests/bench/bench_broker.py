"""`make bench`: produce and consume throughput of a real pybroker process, beside this
machine's loopback ceiling measured in the same run.

    .venv/bin/python tests/bench/bench_broker.py [--records 200000] [--size 1024]

Starts a broker on a free 127.0.0.1 port in a temporary directory, produces N records of
1 KiB with confluent-kafka (librdkafka, the fastest client) with large batches, consumes
them back, and prints MB/s (10^6 bytes of record values per second) and records/s. The
references move the same number of bytes over loopback:

- raw socket: a client ``sendall``s the bytes from memory into a trivial asyncio (uvloop)
  sink server in another process: the ceiling for the produce path;
- sendfile:   ``os.sendfile`` of a file of that size into the same kind of reader: the
  ceiling for the consume path, which the broker serves with ``os.sendfile`` too.

Every wait is bounded; the whole run takes well under two minutes. Exits non-zero when
the broker fails to start, dies, loses or corrupts records, or a phase times out.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from tests.support.broker import BrokerProcess  # noqa: E402

TOPIC = "bench"
PHASE_TIMEOUT = 35.0  # seconds per produce / consume phase; the whole run stays < 2 min
CHUNK = 1 << 20


class BenchFailure(Exception):
    """The broker did not do its job; the run exits non-zero."""


@dataclass
class Result:
    name: str
    seconds: float
    nbytes: int
    records: int | None = None

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / self.seconds / 1e6

    @property
    def records_per_s(self) -> float | None:
        return None if self.records is None else self.records / self.seconds


# -- references: this machine's loopback ceiling ------------------------------------------------

SINK_SERVER = textwrap.dedent(
    """
    import asyncio, socket, sys
    try:
        import uvloop
        uvloop.install()
        loop_name = "uvloop"
    except ImportError:
        loop_name = "asyncio"

    expected = int(sys.argv[1])

    class Sink(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            self.got = 0
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)

        def data_received(self, data):
            self.got += len(data)
            if self.got >= expected:
                self.transport.write(b"k")
                self.transport.close()
                done.set_result(self.got)

    async def main():
        global done
        done = asyncio.get_running_loop().create_future()
        server = await asyncio.get_running_loop().create_server(Sink, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        print(port, loop_name, flush=True)
        await asyncio.wait_for(done, 60)
        server.close()

    asyncio.run(main())
    """
)


def _start_sink(nbytes: int) -> tuple[subprocess.Popen[str], int, str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", SINK_SERVER, str(nbytes)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    if len(line) != 2:
        proc.kill()
        raise RuntimeError("sink server did not start")
    return proc, int(line[0]), line[1]


def _await_ack(sock: socket.socket) -> None:
    sock.settimeout(30)
    if sock.recv(1) != b"k":
        raise RuntimeError("sink closed before receiving every byte")


def raw_socket_reference(nbytes: int) -> Result:
    proc, port, loop_name = _start_sink(nbytes)
    try:
        block = os.urandom(CHUNK)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            view = memoryview(block)
            start = time.perf_counter()
            left = nbytes
            while left > 0:
                n = min(left, CHUNK)
                sock.sendall(view[:n])
                left -= n
            _await_ack(sock)
            elapsed = time.perf_counter() - start
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    return Result(f"raw socket ({loop_name} sink)", elapsed, nbytes)


def sendfile_reference(nbytes: int, workdir: Path) -> Result:
    path = workdir / "sendfile.bin"
    with open(path, "wb") as f:
        block = os.urandom(CHUNK)
        left = nbytes
        while left > 0:
            left -= f.write(block[: min(left, CHUNK)])
    proc, port, loop_name = _start_sink(nbytes)
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=30) as sock,
            open(path, "rb") as f,
        ):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            sock.setblocking(True)  # os.sendfile on a socket with a timeout gets EAGAIN
            start = time.perf_counter()
            offset = 0
            while offset < nbytes:
                sent = os.sendfile(sock.fileno(), f.fileno(), offset, nbytes - offset)
                if sent == 0:
                    raise RuntimeError("sendfile sent nothing")
                offset += sent
            _await_ack(sock)
            elapsed = time.perf_counter() - start
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        path.unlink(missing_ok=True)
    return Result(f"os.sendfile ({loop_name} sink)", elapsed, nbytes)


# -- the broker ------------------------------------------------------------------------------


def _check_alive(broker: BrokerProcess, phase: str) -> None:
    if broker.proc is not None and broker.proc.poll() is not None:
        raise BenchFailure(f"broker died during {phase} (exit code {broker.proc.poll()})")


def create_topic(broker: BrokerProcess) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    futures = admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=1)])
    try:
        futures[TOPIC].result(timeout=10)
    except KafkaException as exc:
        raise BenchFailure(f"CreateTopics failed: {exc}") from exc
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        md = admin.list_topics(TOPIC, timeout=5)
        t = md.topics.get(TOPIC)
        if t is not None and t.error is None and t.partitions and t.partitions[0].leader >= 0:
            return
        time.sleep(0.05)
    raise BenchFailure("topic has no leader after 10s")


def produce(broker: BrokerProcess, records: int, value: bytes) -> Result:
    size = len(value)
    errors: list[str] = []
    delivered = 0

    def on_delivery(err: object, _msg: object) -> None:
        nonlocal delivered
        if err is not None:
            errors.append(str(err))
        else:
            delivered += 1

    producer = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "acks": "1",
            "linger.ms": 5,
            "batch.size": 1000000,
            "batch.num.messages": 100000,
            "queue.buffering.max.messages": 1000000,
            "queue.buffering.max.kbytes": 1048576,
            "compression.type": "none",
            "enable.idempotence": False,
            "socket.nagle.disable": True,
            "message.timeout.ms": int(PHASE_TIMEOUT * 1000),
        }
    )
    start = time.perf_counter()
    deadline = time.monotonic() + PHASE_TIMEOUT
    for i in range(records):
        key = b"%d" % i
        for _ in range(100_000):
            try:
                producer.produce(TOPIC, value, key, partition=0, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
                if time.monotonic() > deadline:
                    raise BenchFailure("produce: local queue never drained") from None
        if i % 10000 == 0:
            producer.poll(0)
            _check_alive(broker, "produce")
    remaining = len(producer)
    while remaining and time.monotonic() < deadline:
        remaining = producer.flush(min(1.0, max(0.0, deadline - time.monotonic())))
        _check_alive(broker, "produce")
    elapsed = time.perf_counter() - start
    _check_alive(broker, "produce")
    if errors:
        raise BenchFailure(f"produce: {len(errors)} delivery errors, first: {errors[0]}")
    if remaining or delivered != records:
        raise BenchFailure(
            f"produce: {delivered}/{records} delivered within {PHASE_TIMEOUT}s "
            f"({remaining} still queued)"
        )
    return Result("produce (confluent-kafka, acks=1)", elapsed, records * size, records)


def consume(broker: BrokerProcess, records: int, value: bytes) -> Result:
    size = len(value)
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "bench-reader",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "fetch.max.bytes": 52428800,
            "max.partition.fetch.bytes": 16777216,
            "fetch.wait.max.ms": 100,
            "queued.min.messages": 1000000,
            "queued.max.messages.kbytes": 1048576,
            "check.crcs": False,
        }
    )
    got = 0
    next_offset = 0
    bad = 0
    try:
        start = time.perf_counter()
        consumer.assign([TopicPartition(TOPIC, 0, 0)])
        deadline = time.monotonic() + PHASE_TIMEOUT
        while got < records and time.monotonic() < deadline:
            _check_alive(broker, "consume")
            for msg in consumer.consume(num_messages=10000, timeout=1.0):
                if msg.error() is not None:
                    raise BenchFailure(f"consume error: {msg.error()}")
                if msg.offset() != next_offset or msg.value() != value:
                    bad += 1
                next_offset = msg.offset() + 1
                got += 1
        elapsed = time.perf_counter() - start
    finally:
        consumer.close()
    _check_alive(broker, "consume")
    if got < records:
        raise BenchFailure(f"consume: {got}/{records} records within {PHASE_TIMEOUT}s")
    if bad:
        raise BenchFailure(f"consume: {bad} records with a wrong offset or value")
    return Result("consume (confluent-kafka)", elapsed, records * size, records)


# -- report ----------------------------------------------------------------------------------


def report(results: list[Result], raw: Result, sendfile: Result) -> str:
    header = f"{'':38} {'MB/s':>9} {'records/s':>11}   {'vs raw socket':>13} {'vs sendfile':>11}"
    lines = [header, "-" * len(header)]
    for r in [raw, sendfile, *results]:
        rps = "" if r.records_per_s is None else f"{r.records_per_s:,.0f}"
        lines.append(
            f"{r.name:38} {r.mb_per_s:9.1f} {rps:>11}   "
            f"{r.mb_per_s / raw.mb_per_s:12.3f}x {r.mb_per_s / sendfile.mb_per_s:10.3f}x"
        )
    lines.append("")
    for r, ref in zip(results, (raw, sendfile), strict=False):
        verb = r.name.split()[0]
        lines.append(f"{verb} {r.mb_per_s:.1f} MB/s = {r.mb_per_s / ref.mb_per_s:.3f}x {ref.name}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=1024, help="record value bytes")
    args = parser.parse_args(argv)
    nbytes = args.records * args.size
    total_start = time.monotonic()

    with tempfile.TemporaryDirectory(prefix="pybroker-bench-") as tmp:
        workdir = Path(tmp)
        print(
            f"{args.records:,} records x {args.size} B = {nbytes / 1e6:.1f} MB, "
            f"cpus={os.cpu_count()}"
        )
        # Best of three: the references are short and a single run is noisy.
        raw = max((raw_socket_reference(nbytes) for _ in range(3)), key=lambda r: r.mb_per_s)
        sendfile = max(
            (sendfile_reference(nbytes, workdir) for _ in range(3)), key=lambda r: r.mb_per_s
        )

        broker = BrokerProcess(workdir / "data")
        try:
            try:
                broker.start()
            except RuntimeError as exc:
                raise BenchFailure(str(exc)) from exc
            print(f"broker on {broker.bootstrap}, log {broker.log_path}")
            create_topic(broker)
            value = os.urandom(args.size)
            results = [produce(broker, args.records, value)]
            results.append(consume(broker, args.records, value))
            _check_alive(broker, "the run")
        except BenchFailure as exc:
            print(f"BENCH FAILED: {exc}", file=sys.stderr)
            print(f"--- broker log tail ---\n{broker.log_tail()}", file=sys.stderr)
            return 1
        finally:
            code = broker.stop() if broker.proc is not None else 0
        print()
        print(report(results, raw, sendfile))
        print(f"\ntotal {time.monotonic() - total_start:.1f}s; broker exit code {code}")
        if code != 0:
            print(f"BENCH FAILED: broker exited with {code} on SIGTERM", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
