"""A well-behaved producer and consumer (confluent-kafka) running for the whole fuzz run.

The point of the fuzzer is that one bad client does not hurt the others: this thread is
the others. It produces a numbered record every ``interval`` seconds with acks=all and
consumes its topic in a consumer group; a failed delivery, a consumer error, a record
seen twice or out of order, or an acknowledged record not consumed within ``stall``
seconds is a failure.
"""

from __future__ import annotations

import threading
import time

from confluent_kafka import Consumer, KafkaError, Producer

__all__ = ["SteadyClient"]


class SteadyClient(threading.Thread):
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group: str,
        run_id: str,
        interval: float = 0.05,
        stall: float = 20.0,
    ) -> None:
        super().__init__(name="fuzz-steady-client", daemon=True)
        self.bootstrap = bootstrap
        self.topic = topic
        self.group = group
        self.run_id = run_id
        self.interval = interval
        self.stall = stall
        self.failures: list[str] = []
        self.produced = 0
        self.consumed = 0
        self._stop_event = threading.Event()
        self._lock = threading.Lock()
        self._acked: dict[int, float] = {}  # seq -> ack time, until consumed
        self._next_expected = 0

    def fail(self, message: str) -> None:
        with self._lock:
            if len(self.failures) < 100:
                self.failures.append(f"{time.strftime('%H:%M:%S')} {message}")

    def stop(self) -> None:
        self._stop_event.set()
        self.join(30)

    def _on_delivery(self, err: KafkaError | None, msg: object) -> None:
        seq = int(msg.value().split(b":")[1])  # type: ignore[attr-defined]
        if err is not None:
            self.fail(f"delivery of {seq} failed: {err}")
            return
        with self._lock:
            self._acked[seq] = time.monotonic()

    def run(self) -> None:
        producer = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "acks": "all",
                "linger.ms": 0,
                "message.timeout.ms": 30000,
                "enable.idempotence": True,
                "log_level": 0,  # librdkafka logs every refused reconnect to stderr
            }
        )
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": self.group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": True,
                "session.timeout.ms": 10000,
                "log_level": 0,
            }
        )
        consumer.subscribe([self.topic])
        seq = 0
        next_send = time.monotonic()
        try:
            while not self._stop_event.is_set():
                now = time.monotonic()
                if now >= next_send:
                    producer.produce(self.topic, f"{self.run_id}:{seq}".encode(), partition=0)
                    seq += 1
                    self.produced = seq
                    next_send = now + self.interval
                producer.poll(0)
                msg = consumer.poll(0.02)
                if msg is not None:
                    self._consumed(msg)
                self._check_stall()
        except Exception as exc:  # the client itself blew up: a failure, not a crash
            self.fail(f"steady client raised {type(exc).__name__}: {exc}")
        finally:
            producer.flush(1)
            consumer.close()

    def _consumed(self, msg: object) -> None:
        err = msg.error()  # type: ignore[attr-defined]
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                self.fail(f"consumer error: {err}")
            return
        run, _, num = msg.value().partition(b":")  # type: ignore[attr-defined]
        if run.decode() != self.run_id:
            return  # a record of an earlier run (before a broker restart)
        seq = int(num)
        self.consumed += 1
        with self._lock:
            if seq != self._next_expected:
                self.failures.append(f"consumed {seq}, expected {self._next_expected}")
            self._next_expected = max(self._next_expected, seq + 1)
            for s in [s for s in self._acked if s <= seq]:
                del self._acked[s]

    def _check_stall(self) -> None:
        with self._lock:
            if not self._acked:
                return
            oldest = min(self._acked)
            age = time.monotonic() - self._acked[oldest]
            if age > self.stall:
                self.failures.append(f"record {oldest} acked {age:.0f}s ago, not consumed")
                self._acked.clear()
