"""The chaos run's steady producer (confluent-kafka or kafka-python) and the final reader.

The producer sends ``<tag>-<seq>`` to partition ``seq % partitions`` at a bounded rate,
idempotent and acks=all, from its own thread, and records every acknowledgement
(partition, offset, value, time) and every failure. The reader reads each partition from
offset 0 up to its high watermark with a plain confluent-kafka consumer.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

MAX_IN_FLIGHT = 4000  # sent but not yet acknowledged or failed; the load waits above this


@dataclass
class Ack:
    partition: int
    offset: int
    value: bytes
    at: float  # time.monotonic() of the acknowledgement


@dataclass
class LoadResult:
    sent: dict[bytes, int] = field(default_factory=dict)  # value -> partition it was sent to
    acked: list[Ack] = field(default_factory=list)
    failed: list[tuple[bytes, str]] = field(default_factory=list)
    unresolved: int = 0  # neither acked nor failed when the producer was closed
    errors: list[str] = field(default_factory=list)  # producer-level errors (error_cb, ...)


class Load:
    """Base: pacing, bookkeeping and the thread; subclasses wrap one client."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        tag: str,
        rate: float,
        log_path: Path | None = None,
    ):
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.tag = tag
        self.rate = rate
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"load-{tag}", daemon=True)
        self._pending = 0
        self.crashed: BaseException | None = None
        # The client's own log goes to a file in the run directory, not the terminal.
        self.logger = logging.getLogger(f"chaos.client.{tag}")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        if log_path is not None:
            handler = logging.FileHandler(log_path)
            handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
            self.logger.addHandler(handler)

    # -- bookkeeping, called from client callback threads ------------------------------
    def _acked(self, partition: int, offset: int, value: bytes) -> None:
        with self._lock:
            self.result.acked.append(Ack(partition, offset, value, time.monotonic()))
            self._pending -= 1

    def _failed(self, value: bytes, err: str) -> None:
        with self._lock:
            self.result.failed.append((value, err))
            self._pending -= 1

    # -- the thread ----------------------------------------------------------------------
    def start(self) -> Load:
        self._thread.start()
        return self

    def stop(self, flush_timeout: float = 60.0) -> LoadResult:
        self._stop.set()
        self._thread.join(flush_timeout + 30)
        if self._thread.is_alive():
            self.result.errors.append("producer thread did not finish")
        with self._lock:
            self.result.unresolved = self._pending
        return self.result

    def _run(self) -> None:
        try:
            self._open()
            seq = 0
            t0 = time.monotonic()
            while not self._stop.is_set():
                due = int((time.monotonic() - t0) * self.rate)
                while seq < due and self._pending < MAX_IN_FLIGHT and not self._stop.is_set():
                    value = f"{self.tag}-{seq:09d}".encode()
                    partition = seq % self.partitions
                    with self._lock:
                        self.result.sent[value] = partition
                        self._pending += 1
                    try:
                        self._send(value, partition)
                    except Exception as exc:  # the client refused it at once: never sent
                        self._failed(value, f"send raised {exc!r}")
                    seq += 1
                self._service(0.01)
            self._close()
        except BaseException as exc:  # reported by the runner
            self.crashed = exc

    # -- per client ----------------------------------------------------------------------
    def _open(self) -> None:
        raise NotImplementedError

    def _send(self, value: bytes, partition: int) -> None:
        raise NotImplementedError

    def _service(self, timeout: float) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError


class ConfluentLoad(Load):
    client = "confluent"

    def _open(self) -> None:
        self.producer = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": 60_000,
                "request.timeout.ms": 10_000,
                "socket.timeout.ms": 10_000,
                "retry.backoff.ms": 100,
                "retry.backoff.max.ms": 1000,
                "reconnect.backoff.max.ms": 1000,
                "topic.metadata.refresh.interval.ms": 5_000,
                "error_cb": self._error,
            },
            logger=self.logger,
        )

    def _error(self, err: KafkaError) -> None:
        with self._lock:
            self.result.errors.append(f"{err.name()}: {err.str()} (fatal={err.fatal()})")

    def _delivered(self, err: KafkaError | None, msg: Any) -> None:
        if err is None:
            self._acked(msg.partition(), msg.offset(), msg.value())
        else:
            self._failed(msg.value(), f"{err.name()}: {err.str()}")

    def _send(self, value: bytes, partition: int) -> None:
        while True:
            try:
                self.producer.produce(
                    self.topic, value=value, partition=partition, on_delivery=self._delivered
                )
                return
            except BufferError:
                if self._stop.is_set():
                    raise
                self.producer.poll(0.05)

    def _service(self, timeout: float) -> None:
        self.producer.poll(timeout)

    def _close(self) -> None:
        self.producer.flush(60)
        del self.producer  # disconnects now rather than at interpreter exit


class KafkaPythonLoad(Load):
    client = "kafka-python"

    def _open(self) -> None:
        from kafka import KafkaProducer

        kafka_logger = logging.getLogger("kafka")
        kafka_logger.propagate = False
        kafka_logger.setLevel(logging.INFO)
        for handler in self.logger.handlers:
            kafka_logger.addHandler(handler)
        self.producer = KafkaProducer(
            bootstrap_servers=self.bootstrap.split(","),
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            request_timeout_ms=10_000,
            delivery_timeout_ms=60_000,
            max_block_ms=10_000,
            retry_backoff_ms=100,
            reconnect_backoff_max_ms=1000,
            metadata_max_age_ms=5_000,
        )

    def _send(self, value: bytes, partition: int) -> None:
        future = self.producer.send(self.topic, value=value, partition=partition)
        future.add_callback(lambda md, v=value: self._acked(md.partition, md.offset, v))
        future.add_errback(lambda exc, v=value: self._failed(v, repr(exc)))

    def _service(self, timeout: float) -> None:
        time.sleep(timeout)

    def _close(self) -> None:
        self.producer.flush(60)
        self.producer.close(10)


LOADS: dict[str, type[Load]] = {"confluent": ConfluentLoad, "kafka-python": KafkaPythonLoad}


def read_back(
    bootstrap: str, topic: str, partitions: int, timeout: float = 180.0
) -> tuple[dict[int, list[tuple[int, bytes]]], dict[int, int], list[str]]:
    """Every record of every partition from offset 0 to its high watermark.

    Returns (partition -> [(offset, value)] in read order, partition -> high watermark,
    problems). Bounded by ``timeout``; a partition not read to its watermark is a problem.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"chaos-reader-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
        }
    )
    problems: list[str] = []
    records: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(partitions)}
    high: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    try:
        for p in range(partitions):
            while True:
                try:
                    low, hw = consumer.get_watermark_offsets(TopicPartition(topic, p), 10)
                    high[p] = hw
                    if low != 0:
                        problems.append(f"partition {p} log start offset is {low}, not 0")
                    break
                except Exception as exc:
                    if time.monotonic() > deadline:
                        problems.append(f"partition {p}: no watermarks: {exc!r}")
                        high[p] = -1
                        break
                    time.sleep(0.5)
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        done = {p for p in range(partitions) if high[p] <= 0}
        while len(done) < partitions and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    if msg.offset() >= high[msg.partition()]:
                        done.add(msg.partition())
                    continue
                if not err.retriable():
                    problems.append(f"reader error: {err}")
                continue
            p = msg.partition()
            records[p].append((msg.offset(), msg.value()))
            if msg.offset() + 1 >= high[p]:
                done.add(p)
        for p in range(partitions):
            if p not in done:
                last = records[p][-1][0] if records[p] else None
                problems.append(f"partition {p}: read up to {last}, high watermark {high[p]}")
    finally:
        consumer.close()
    return records, high, problems
