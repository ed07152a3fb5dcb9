"""The console's pure parts: static file names, sessions, login forms and password checks
(the broker's own PLAIN and SCRAM servers), rate and lag samplers, the record browser over a
real on-disk Log, and the query helpers of the HTTP endpoint."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest

from pybroker.broker.console import static
from pybroker.broker.console.records import (
    MAX_FIELD_BYTES,
    MAX_RESPONSE_BYTES,
    bytes_view,
    read_records,
)
from pybroker.broker.console.samplers import (
    LAG_SAMPLES,
    LagSampler,
    RateSampler,
    total_rates,
)
from pybroker.broker.console.session import (
    COOKIE,
    MAX_SESSIONS,
    PasswordChecker,
    SessionStore,
    cookie_token,
    parse_form,
)
from pybroker.broker.http_endpoint import BadRequest, int_param, query_params
from pybroker.broker.http_server import MAX_BODY_BYTES, HttpError, Request, parse_head
from pybroker.protocol.compression import GZIP, LZ4, SNAPPY, ZSTD
from pybroker.protocol.records import NONE, NewRecord, build_batch
from pybroker.protocol.scram import ScramCredential, new_credential
from tests.unit.test_storage_support import open_log

# ---------------------------------------------------------------------- static


@pytest.mark.parametrize(
    ("name", "ctype"),
    [
        ("index.html", "text/html; charset=utf-8"),
        ("app.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("chart-1.svg", "image/svg+xml"),
        ("api.py", None),
        ("../app.js", None),
        ("..", None),
        (".app.js", None),
        ("App.js", None),
        ("a/b.js", None),
        ("a%2fb.js", None),
        ("noext", None),
        ("x" * 200 + ".js", None),
    ],
)
def test_static_names(name: str, ctype: str | None) -> None:
    assert static.content_type(name) == ctype


def test_static_read_serves_only_this_directory() -> None:
    found = static.read("index.html")
    assert found is not None
    assert found[0] == (static.DIRECTORY / "index.html").read_bytes()
    assert static.read("missing.js") is None
    assert static.read("__init__.py") is None


# ---------------------------------------------------------------------- sessions


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_sessions_expire_end_and_are_random() -> None:
    clock = FakeClock()
    store = SessionStore(ttl_s=60, clock=clock)
    a, b = store.create("User:alice"), store.create("User:bob")
    assert a != b and len(base64.urlsafe_b64decode(a + "=" * (-len(a) % 4))) == 32
    assert store.lookup(a).principal == "User:alice"  # type: ignore[union-attr]
    assert store.lookup(b).principal == "User:bob"  # type: ignore[union-attr]
    assert store.lookup(a[:-1] + ("A" if a[-1] != "A" else "B")) is None
    assert store.lookup("") is None and store.lookup(None) is None
    assert store.lookup("x" * 1000) is None
    store.end(b)
    assert store.lookup(b) is None
    clock.t += 61
    assert store.lookup(a) is None and len(store) == 0


def test_sessions_are_bounded() -> None:
    store = SessionStore()
    first = store.create("User:a")
    for _ in range(MAX_SESSIONS):
        store.create("User:b")
    assert len(store) == MAX_SESSIONS and store.lookup(first) is None


def test_cookie_and_form_parsing() -> None:
    assert cookie_token(f"a=1; {COOKIE}=tok; b=2") == "tok"
    assert cookie_token("a=1") is None and cookie_token(None) is None
    assert parse_form(b"username=al%20ice&password=p%26w") == {
        "username": "al ice",
        "password": "p&w",
    }
    assert parse_form(b"username=a") is None
    assert parse_form(b"username=a&username=b&password=c") is None
    assert parse_form(b"username=a&password=" + b"x" * 2000) is None
    assert parse_form("username=ä&password=x".encode()) is None  # not urlencoded
    assert parse_form(b"&".join(b"k%d=v" % i for i in range(50))) is None


def test_passwords_checked_by_the_sasl_servers() -> None:
    creds = {
        ("bob", "SCRAM-SHA-256"): new_credential("SCRAM-SHA-256", "bob-pw"),
        ("eve", "SCRAM-SHA-512"): new_credential("SCRAM-SHA-512", "eve-pw", 8192),
    }

    async def lookup(user: str, mechanism: str) -> ScramCredential | None:
        return creds.get((user, mechanism))

    checker = PasswordChecker([{"alice": "alice-pw"}, {}], lookup)

    async def run() -> list[bool]:
        cases = [
            ("alice", "alice-pw"),
            ("alice", "wrong"),
            ("bob", "bob-pw"),
            ("bob", "alice-pw"),
            ("eve", "eve-pw"),
            ("eve", ""),
            ("", "x"),
            ("nobody", "bob-pw"),
            ("n=bob,", "bob-pw"),  # SCRAM name escaping cannot smuggle another user
        ]
        return [await checker.check(u, p) for u, p in cases]

    assert asyncio.run(run()) == [True, False, True, False, True, False, False, False, False]
    assert not asyncio.run(PasswordChecker([], None).check("alice", "alice-pw"))


# ---------------------------------------------------------------------- samplers


def test_rates_from_cumulative_counters() -> None:
    counts = {"a": (0, 0, 0)}
    sampler = RateSampler(lambda: dict(counts))
    assert sampler.rates() == {
        "a": {"messages_in_per_sec": 0.0, "bytes_in_per_sec": 0.0, "bytes_out_per_sec": 0.0}
    }
    sampler.sample(now=0.0)
    counts["a"] = (100, 10_000, 500)
    counts["b"] = (20, 2_000, 0)  # a topic born between samples
    sampler.sample(now=10.0)
    rates = sampler.rates()
    assert rates["a"] == {
        "messages_in_per_sec": 10.0,
        "bytes_in_per_sec": 1000.0,
        "bytes_out_per_sec": 50.0,
    }
    assert rates["b"]["messages_in_per_sec"] == 2.0
    assert total_rates(rates)["bytes_in_per_sec"] == 1200.0
    for t in range(11, 30):  # only the last samples count: a quiet topic goes to 0
        sampler.sample(now=float(t))
    assert sampler.rates()["a"]["messages_in_per_sec"] == 0.0


def test_lag_history_ring() -> None:
    totals = {"g": 5, "h": 1}
    sampler = LagSampler(lambda: dict(totals))
    for i in range(LAG_SAMPLES + 10):
        totals["g"] = i
        sampler.sample(now_ms=i * 5000)
    history = sampler.of("g")
    assert len(history) == LAG_SAMPLES
    assert history[-1] == {"t": (LAG_SAMPLES + 9) * 5000, "lag": LAG_SAMPLES + 9}
    del totals["h"]  # a deleted group's history goes
    sampler.sample()
    assert sampler.of("h") == [] and sampler.of("nope") == []


# ---------------------------------------------------------------------- records


def test_bytes_view() -> None:
    assert bytes_view(None, "key") == {"key_b64": None, "key_text": None}
    assert bytes_view(b"hi", "v") == {"v_b64": "aGk=", "v_text": "hi"}
    assert bytes_view(b"\xff", "v")["v_text"] is None
    long = "é" * MAX_FIELD_BYTES  # 2 bytes each: the bound cuts a character or not
    view = bytes_view(long.encode(), "v")
    assert len(base64.b64decode(view["v_b64"])) == MAX_FIELD_BYTES
    assert view["v_text"] == "é" * (MAX_FIELD_BYTES // 2)
    odd = ("x" + long).encode()
    assert bytes_view(odd, "v")["v_text"] == "x" + "é" * (MAX_FIELD_BYTES // 2 - 1)


def _records(first: int, n: int, size: int = 10) -> list[NewRecord]:
    return [
        NewRecord(
            f"k{first + i}".encode(),
            f"v{first + i}".encode().ljust(size, b"."),
            (("h", b"%d" % (first + i)),),
            timestamp=1000 + first + i,
        )
        for i in range(n)
    ]


def test_read_records_over_a_real_log(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    codecs = [NONE, GZIP, SNAPPY, LZ4, ZSTD]
    for i, codec in enumerate(codecs):  # five batches of 4 records, one per codec
        log.append_as_leader(bytearray(build_batch(_records(i * 4, 4), compression=codec)), 0)
    log.high_watermark = 16  # the last batch is not committed yet
    out = read_records(log, 2, 500)
    assert [r["offset"] for r in out["records"]] == list(range(2, 16))
    assert (out["offset"], out["next_offset"], out["high_watermark"]) == (2, 16, 16)
    r = out["records"][5]
    assert (r["key_text"], r["timestamp"], r["headers"][0]["value_text"]) == ("k7", 1007, "7")
    assert r["value_text"] == "v7........" and not r["control"] and r["producer_id"] == -1

    page = read_records(log, 3, 6)
    assert [r["offset"] for r in page["records"]] == list(range(3, 9))
    assert page["next_offset"] == 9
    nxt = read_records(log, page["next_offset"], 6)
    assert nxt["records"][0]["offset"] == 9
    assert read_records(log, 100, 5)["records"] == []  # clamped to the high watermark
    assert read_records(log, -5, 1)["records"][0]["offset"] == 0


def test_read_records_bounds_the_answer(tmp_path: Path) -> None:
    log = open_log(tmp_path / "big-0")
    for i in range(80):  # values above MAX_FIELD_BYTES: each is shown cut to it
        log.append_as_leader(bytearray(build_batch(_records(i, 1, 70_000))), 0)
    log.high_watermark = 80
    out = read_records(log, 0, 500)
    shown = [len(base64.b64decode(r["value_b64"])) for r in out["records"]]
    assert all(n == MAX_FIELD_BYTES for n in shown)
    assert all(r["value_size"] == 70_000 for r in out["records"])
    # the answer stops once MAX_RESPONSE_BYTES of keys and values are shown
    expected = -(-MAX_RESPONSE_BYTES // (MAX_FIELD_BYTES + 3))
    assert out["next_offset"] == len(out["records"]) == expected


# ---------------------------------------------------------------------- query helpers


def _request(query: str) -> Request:
    return Request("GET", "/api/records", query, "HTTP/1.1", {"host": "h"})


def test_query_helpers() -> None:
    params = query_params(_request("topic=t&partition=3&max="))
    assert params == {"topic": "t", "partition": "3", "max": ""}
    assert int_param(params, "partition") == 3
    assert int_param(params, "max", 50) == 50
    assert int_param(params, "offset", 0) == 0
    for bad in ("x", "-1", "1.5", "9" * 30, " 1"):
        with pytest.raises(BadRequest):
            int_param({"p": bad}, "p")
    with pytest.raises(BadRequest):
        int_param({}, "partition")
    with pytest.raises(BadRequest):
        query_params(_request("a=1&a=2"))
    with pytest.raises(BadRequest):
        query_params(_request("&".join(f"k{i}=v" for i in range(40))))


# ---------------------------------------------------------------------- POST heads


def _head(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_post_heads() -> None:
    req = parse_head(_head("POST /login HTTP/1.1", "Host: h", "Content-Length: 27"))
    assert (req.method, req.headers["content-length"], req.body) == ("POST", "27", b"")
    req = parse_head(_head("POST /logout HTTP/1.1", "Host: h"))  # no length: no body
    assert req.headers["content-length"] == "0"
    for lines, status in (
        ((f"Content-Length: {MAX_BODY_BYTES + 1}",), 413),
        (("Content-Length: 99999999999999",), 400),
        (("Content-Length: -1",), 400),
        (("Content-Length: 1, 1",), 400),
        (("Transfer-Encoding: chunked",), 413),
    ):
        with pytest.raises(HttpError) as info:
            parse_head(_head("POST /login HTTP/1.1", "Host: h", *lines))
        assert info.value.status == status
    with pytest.raises(HttpError) as info:  # GET keeps refusing bodies
        parse_head(_head("GET / HTTP/1.1", "Host: h", "Content-Length: 3"))
    assert info.value.status == 413
