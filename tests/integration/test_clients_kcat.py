"""kcat (a librdkafka command-line client, run as a subprocess) against pybroker.

kcat has no admin API, so topics are created with confluent's AdminClient. kcat
produces 100,000 ``key:value`` lines from a file under each codec (``-K :``, two fixed
``-H`` headers, ``-z codec``); kcat chooses the timestamps (CreateTime at produce), so
the by-timestamp expectations come from what kcat consumes back (``-f`` with partition,
offset, timestamp, lengths, key, value, headers). Offsets by timestamp through
``-Q -t topic:partition:timestamp`` (-2 earliest, -1 latest); metadata through
``-L -J``; long poll with ``-d protocol`` round-trip times.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from tests.support.clients import (
    CODECS,
    LONG_POLL_WAIT_MS,
    N_RECORDS,
    PARTITIONS,
    ROUND_GAP_S,
    Consumed,
    Layout,
    Produced,
    check_idle_fetches,
    check_prompt,
    confluent_create_topic,
    expected_offset_for_time,
    fetch_rtts_ms,
    key_of,
    run_kcat,
    value_of,
    verify_consumed,
)

pytestmark = pytest.mark.timeout(300)

FORMAT = r"%p|%o|%T|%K|%k|%S|%s|%h\n"
QUERY_RE = re.compile(r"^(\S+) \[(\d+)\] offset (-?\d+)$")


def kcat_headers(codec: str):
    return lambda i: [("client", b"kcat"), ("codec", codec.encode())]


def parse_headers(text: str) -> list[tuple[str, bytes]]:
    if not text:
        return []
    out = []
    for item in text.split(","):
        name, _, value = item.partition("=")
        out.append((name, value.encode()))
    return out


def kcat_consume(bootstrap: str, topic: str) -> list[Consumed]:
    res = run_kcat(
        ["-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", FORMAT]
        + ["-X", "fetch.message.max.bytes=10485760"],
        timeout=180,
    )
    assert res.returncode == 0, res.stderr.decode(errors="replace")[-3000:]
    records = []
    for line in res.stdout.decode().splitlines():
        p, o, ts, klen, key, vlen, value, headers = line.split("|")
        assert int(klen) == len(key) and int(vlen) == len(value), line
        records.append(
            Consumed(int(p), int(o), key.encode(), value.encode(), parse_headers(headers), int(ts))
        )
    return records


def kcat_query(bootstrap: str, topic: str, ts: int) -> dict[int, int]:
    args = ["-Q", "-b", bootstrap]
    for p in range(PARTITIONS):
        args += ["-t", f"{topic}:{p}:{ts}"]
    res = run_kcat(args, timeout=60)
    assert res.returncode == 0, res.stderr.decode(errors="replace")[-3000:]
    got = {}
    for line in res.stdout.decode().splitlines():
        m = QUERY_RE.match(line.strip())
        assert m is not None, f"unexpected kcat -Q output line: {line!r}"
        assert m.group(1) == topic
        got[int(m.group(2))] = int(m.group(3))
    return got


@pytest.fixture(scope="module", params=CODECS)
def produced(request, broker, tmp_path_factory) -> Produced:
    codec = request.param
    topic = f"kcat-{codec}"
    confluent_create_topic(broker.bootstrap, topic)
    path: Path = tmp_path_factory.mktemp("kcat") / f"{topic}.txt"
    path.write_bytes(b"".join(key_of(i) + b":" + value_of(i) + b"\n" for i in range(N_RECORDS)))
    args = ["-P", "-b", broker.bootstrap, "-t", topic, "-K", ":", "-l", str(path)]
    args += ["-H", "client=kcat", "-H", f"codec={codec}"]
    if codec != "none":
        args += ["-z", codec]
    args += ["-X", "linger.ms=20", "-X", "batch.num.messages=10000", "-X", "acks=all"]
    res = run_kcat(args, timeout=180)
    stderr = res.stderr.decode(errors="replace")
    assert res.returncode == 0, stderr[-3000:]
    assert "fail" not in stderr.lower(), stderr[-3000:]
    return Produced(topic, codec, N_RECORDS, None, None, headers=kcat_headers(codec))


def test_metadata_list(broker) -> None:
    topic = "kcat-metadata"
    confluent_create_topic(broker.bootstrap, topic)
    res = run_kcat(["-L", "-J", "-b", broker.bootstrap, "-t", topic], timeout=60)
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    md = json.loads(res.stdout)
    assert [b["name"] for b in md["brokers"]] == [f"127.0.0.1:{broker.port}"]
    broker_id = md["brokers"][0]["id"]
    (tmd,) = md["topics"]
    assert tmd["topic"] == topic
    assert "error" not in tmd, tmd
    parts = sorted(tmd["partitions"], key=lambda p: p["partition"])
    assert [p["partition"] for p in parts] == list(range(PARTITIONS))
    for p in parts:
        assert p["leader"] == broker_id
        assert [r["id"] for r in p["replicas"]] == [broker_id]
        assert [r["id"] for r in p["isrs"]] == [broker_id]


def test_consume_roundtrip(broker, produced: Produced) -> None:
    records = kcat_consume(broker.bootstrap, produced.topic)
    verify_consumed(produced, records)


def test_list_offsets(broker, produced: Produced) -> None:
    layout: Layout = verify_consumed(produced, kcat_consume(broker.bootstrap, produced.topic))
    counts = layout.counts()
    assert kcat_query(broker.bootstrap, produced.topic, -2) == dict.fromkeys(range(PARTITIONS), 0)
    assert kcat_query(broker.bootstrap, produced.topic, -1) == counts

    all_ts = sorted(ts for stamps in layout.timestamps.values() for ts in stamps)
    lo, hi = all_ts[0], all_ts[-1]
    queries = {lo - 1000, lo, lo + 1, hi, hi + 1}
    queries |= {all_ts[k * len(all_ts) // 7] for k in range(1, 7)}
    queries |= {all_ts[k * len(all_ts) // 5] + 1 for k in range(1, 5)}
    for ts in sorted(queries):
        got = kcat_query(broker.bootstrap, produced.topic, ts)
        want = {}
        for p in range(PARTITIONS):
            off = expected_offset_for_time(layout.timestamps[p], ts)
            want[p] = -1 if off is None else off
        assert got == want, f"timestamp {ts} (records span {lo}..{hi})"


def test_long_poll(broker) -> None:
    """An idle fetch is held for fetch.wait.max.ms; an append answers it at once."""
    topic = "kcat-longpoll"
    confluent_create_topic(broker.bootstrap, topic, partitions=1)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0, "acks": "all"})
    producer.produce(topic, value=b"warm-up", key=b"k")
    assert producer.flush(10) == 0

    cmd = ["kcat", "-C", "-b", broker.bootstrap, "-t", topic, "-p", "0", "-o", "1", "-c", "3"]
    cmd += ["-u", "-d", "protocol", "-f", r"%o|%s\n"]
    cmd += ["-X", f"fetch.wait.max.ms={LONG_POLL_WAIT_MS}", "-X", "fetch.min.bytes=1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out_lines: list[tuple[float, str]] = []
    err_lines: list[str] = []

    def read_out() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            out_lines.append((time.monotonic(), raw.decode().rstrip("\n")))

    def read_err() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            err_lines.append(raw.decode(errors="replace"))

    readers = [threading.Thread(target=f, daemon=True) for f in (read_out, read_err)]
    for t in readers:
        t.start()

    def wait_until(cond, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            assert proc.poll() is None or cond(), f"kcat exited: {''.join(err_lines[-20:])}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.01)

    def fetch_in_flight() -> bool:
        snapshot = list(err_lines)
        return sum("Sent FetchRequest" in x for x in snapshot) > len(fetch_rtts_ms(snapshot))

    try:
        wait_until(lambda: len(fetch_rtts_ms(list(err_lines))) >= 2, 15, "two idle fetches")
        check_idle_fetches(fetch_rtts_ms(list(err_lines)))
        assert out_lines == []

        latencies = []
        for r in range(3):
            wait_until(fetch_in_flight, 10, "a parked fetch")
            time.sleep(ROUND_GAP_S)  # scenario: the record comes while the fetch is parked
            value = f"long-poll-{r}"
            t0 = time.monotonic()
            producer.produce(topic, value=value.encode(), key=b"k")
            assert producer.flush(10) == 0
            wait_until(lambda v=value: any(x[1].endswith(v) for x in out_lines), 10, value)
            latencies.append(next(x[0] for x in out_lines if x[1].endswith(value)) - t0)
        assert proc.wait(10) == 0
        assert [x[1] for x in out_lines] == [f"{1 + r}|long-poll-{r}" for r in range(3)]
        check_prompt(latencies)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        for t in readers:
            t.join(5)
