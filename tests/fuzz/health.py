"""Is the broker still well? Alive, answering a well-behaved client, not growing, not failing.

Checked between batches of fuzz cases: the process has not exited, a raw-wire produce of
one record followed by a fetch returns that record, VmRSS stays within a budget of the
baseline, and the broker log has no new tracebacks or ERROR lines (each one a finding,
deduplicated by a signature of where and what failed).
"""

from __future__ import annotations

import datetime
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from kafka.record import MemoryRecords
from kio.static.primitive import Records, i16, i32, i64

from pybroker.protocol.records import NewRecord, build_batch
from tests.support.wire import KafkaWire, request_module

__all__ = ["LogEvent", "LogScanner", "WireChecker", "rss_kib", "setup_topics"]

PRODUCE, FETCH, METADATA, CREATE_TOPICS = 0, 1, 3, 19


def rss_kib(pid: int) -> int | None:
    """VmRSS of ``pid`` in KiB, or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


@dataclass
class LogEvent:
    kind: str  # "traceback" or "error"
    signature: str
    text: str
    peer_port: int | None = None  # the client port the broker named, if it did


_PEER = re.compile(r"\b\d+\.\d+\.\d+\.\d+:(\d+)")


def _peer_port(line: str) -> int | None:
    m = _PEER.search(line)
    return int(m.group(1)) if m else None


_LOG_LINE = re.compile(r"^\[[^\]]+\] (ERROR|CRITICAL) (.*?)(?: \(([\w.]+)\))?$")
_FRAME = re.compile(r'^\s+File "([^"]+)", line (\d+), in (\S+)')


def normalize(text: str) -> str:
    """Drop what varies between occurrences of one failure: peers, numbers, ids."""
    text = re.sub(r"\d+\.\d+\.\d+\.\d+:\d+", "PEER", text)
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "UUID", text)
    return re.sub(r"\d+", "N", text)


def _short_path(path: str) -> str:
    """Repo-relative where possible, so signatures match across checkouts."""
    for marker in ("/site-packages/", "/pybroker/", "/work/main/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


class LogScanner:
    """Reads the broker log incrementally and returns new tracebacks and ERROR lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self._partial = ""
        self._tb: list[str] | None = None
        self._last_port: int | None = None

    def skip_to_end(self) -> None:
        try:
            self.offset = self.path.stat().st_size
        except OSError:
            self.offset = 0
        self._partial = ""
        self._tb = None

    def scan(self) -> list[LogEvent]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return []
        self.offset += len(data)
        text = self._partial + data.decode("utf-8", "replace")
        lines = text.split("\n")
        self._partial = lines.pop()
        events: list[LogEvent] = []
        for line in lines:
            self._line(line, events)
        return events

    def _line(self, line: str, events: list[LogEvent]) -> None:
        if self._tb is not None:
            if line.startswith((" ", "\t")) or not line.strip():
                self._tb.append(line)
                return
            if line.startswith(("During handling", "The above exception", "Traceback")):
                self._tb.append(line)
                return
            self._tb.append(line)  # the exception line ends the traceback
            event = self._traceback_event(self._tb)
            event.peer_port = self._last_port  # named by the ERROR line just before
            events.append(event)
            self._tb = None
            return
        if line.startswith("Traceback (most recent call last)"):
            self._tb = [line]
            return
        m = _LOG_LINE.match(line)
        self._last_port = None
        if m:
            port = self._last_port = _peer_port(line)
            sig = normalize(f"{m.group(2)} ({m.group(3)})")
            events.append(LogEvent("error", sig, line, port))

    @staticmethod
    def _traceback_event(lines: list[str]) -> LogEvent:
        frames = [m for m in (_FRAME.match(x) for x in lines) if m]
        where = ""
        # The innermost frame in our code names the bug better than a library frame.
        ours = [m for m in frames if "site-packages" not in m.group(1)] or frames
        if ours:
            m = ours[-1]
            where = f" at {_short_path(m.group(1))}:{m.group(2)} in {m.group(3)}"
        exc = lines[-1].strip()
        exc_type = exc.split(":", 1)[0]
        return LogEvent("traceback", f"{exc_type}{where}", "\n".join(lines))


def _records_values(records: bytes | None) -> list[bytes | None]:
    out: list[bytes | None] = []
    if not records:
        return out
    batches = MemoryRecords(bytes(records))
    while (batch := batches.next_batch()) is not None:
        out.extend(r.value for r in batch)
    return out


def setup_topics(wire: KafkaWire, topics: dict[str, int]) -> dict[str, uuid.UUID]:
    """Create ``topics`` (name -> partitions) and return their topic ids."""
    m = request_module(CREATE_TOPICS, 5)
    wire.request(
        m.CreateTopicsRequest(
            topics=tuple(
                m.CreatableTopic(
                    name=name,
                    num_partitions=i32(n),
                    replication_factor=i16(1),
                    assignments=(),
                    configs=(),
                )
                for name, n in topics.items()
            ),
            timeout=datetime.timedelta(seconds=10),
        )
    )
    md = request_module(METADATA, 12)
    resp = wire.request(
        md.MetadataRequest(
            topics=tuple(md.MetadataRequestTopic(topic_id=None, name=t) for t in topics),
            allow_auto_topic_creation=False,
            include_topic_authorized_operations=False,
        )
    )
    return {t.name: t.topic_id for t in resp.topics if t.error_code.value == 0}


class WireChecker:
    """Produce one record and fetch it back over a raw connection, each call."""

    def __init__(self, port: int, topic: str, timeout: float = 15.0) -> None:
        self.port = port
        self.topic = topic
        self.timeout = timeout
        self.wire: KafkaWire | None = None
        self.count = 0

    def close(self) -> None:
        if self.wire is not None:
            self.wire.close()
            self.wire = None

    def check(self) -> str | None:
        """None when the record went in and came back; otherwise what went wrong."""
        self.count += 1
        value = f"health-{self.count}".encode()
        try:
            if self.wire is None:
                self.wire = KafkaWire("127.0.0.1", self.port, timeout=self.timeout)
            return self._round_trip(self.wire, value)
        except Exception as exc:  # any failure of a well-behaved client is the finding
            self.close()
            return f"{type(exc).__name__}: {exc}"

    def _round_trip(self, wire: KafkaWire, value: bytes) -> str | None:
        pm = request_module(PRODUCE, 9)
        batch = build_batch([NewRecord(key=None, value=value)])
        resp = wire.request(
            pm.ProduceRequest(
                transactional_id=None,
                acks=i16(-1),
                timeout=datetime.timedelta(seconds=10),
                topic_data=(
                    pm.TopicProduceData(
                        name=self.topic,
                        partition_data=(
                            pm.PartitionProduceData(index=i32(0), records=Records(batch)),
                        ),
                    ),
                ),
            )
        )
        part = resp.responses[0].partition_responses[0]
        if part.error_code.value != 0:
            return f"produce failed: {part.error_code!r}"
        offset = int(part.base_offset)
        fm = request_module(FETCH, 12)
        fresp = wire.request(
            fm.FetchRequest(
                max_wait=datetime.timedelta(milliseconds=0),
                min_bytes=i32(1),
                topics=(
                    fm.FetchTopic(
                        topic=self.topic,
                        partitions=(
                            fm.FetchPartition(
                                partition=i32(0),
                                fetch_offset=i64(offset),
                                partition_max_bytes=i32(1 << 20),
                            ),
                        ),
                    ),
                ),
                forgotten_topics_data=(),
            )
        )
        if fresp.error_code.value != 0:
            return f"fetch failed: {fresp.error_code!r}"
        pdata = fresp.responses[0].partitions[0]
        if pdata.error_code.value != 0:
            return f"fetch partition failed: {pdata.error_code!r}"
        values = _records_values(pdata.records)
        if not values or values[0] != value:
            return f"fetched {values[:1]!r} at offset {offset}, produced {value!r}"
        return None


@dataclass
class Findings:
    """Every distinct failure once, with how often it happened and the batch it came from."""

    counts: dict[str, int] = field(default_factory=dict)
    first: dict[str, tuple[str, int, str]] = field(default_factory=dict)  # sig -> kind, batch, text

    def add(self, kind: str, signature: str, batch: int, text: str) -> bool:
        """Record one occurrence; True when the signature is new."""
        key = f"{kind}: {signature}"
        self.counts[key] = self.counts.get(key, 0) + 1
        if key in self.first:
            return False
        self.first[key] = (kind, batch, text)
        return True
