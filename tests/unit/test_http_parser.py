"""The HTTP endpoint's request-head parser: what it accepts and how it refuses the rest."""

from __future__ import annotations

import pytest

from pybroker.broker.http_server import (
    MAX_HEAD_BYTES,
    MAX_HEADERS,
    HttpError,
    Response,
    find_head_end,
    parse_head,
    parse_listener,
    render,
)


def head(*lines: str) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def test_prometheus_style_get() -> None:
    req = parse_head(
        head(
            "GET /metrics?x=1 HTTP/1.1",
            "Host: 127.0.0.1:9644",
            "User-Agent: Prometheus/2.53.0",
            "Accept: text/plain;version=0.0.4;q=1,*/*;q=0.1",
            "X-Prometheus-Scrape-Timeout-Seconds:   10 ",
        )
    )
    assert (req.method, req.path, req.query, req.version) == ("GET", "/metrics", "x=1", "HTTP/1.1")
    assert req.headers["host"] == "127.0.0.1:9644"
    assert req.headers["x-prometheus-scrape-timeout-seconds"] == "10"
    assert req.keep_alive


def test_keep_alive_rules() -> None:
    assert not parse_head(head("GET / HTTP/1.1", "Host: h", "Connection: close")).keep_alive
    assert not parse_head(head("GET / HTTP/1.0")).keep_alive
    assert parse_head(head("GET / HTTP/1.0", "Connection: keep-alive")).keep_alive


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (head("GET /metrics"), 400),  # no version
        (head("GET  /metrics HTTP/1.1", "Host: h"), 400),  # double space
        (head("GET metrics HTTP/1.1", "Host: h"), 400),  # not an absolute path
        (head("GET http://x/metrics HTTP/1.1", "Host: h"), 400),  # absolute form refused
        (head("GE(T / HTTP/1.1", "Host: h"), 400),  # method is no token
        (head("GET / HTTP/2.0", "Host: h"), 505),
        (head("GET / SPDY/3", "Host: h"), 400),
        (head("GET / HTTP/1.1"), 400),  # HTTP/1.1 needs Host
        (head("GET / HTTP/1.1", "Host: h", " folded"), 400),  # obs-fold
        (head("GET / HTTP/1.1", "Host : h"), 400),  # space before colon
        (head("GET / HTTP/1.1", "Host h"), 400),  # no colon
        (head("GET / HTTP/1.1", "Host: h\x00"), 400),  # control character in a value
        (head("GET / HTTP/1.1", "Host: h", "Content-Length: 5"), 413),
        (head("GET / HTTP/1.1", "Host: h", "Transfer-Encoding: chunked"), 413),
        (head("GET /" + "a" * 3000 + " HTTP/1.1", "Host: h"), 414),
        (head("GET / HTTP/1.1", "Host: h", *[f"X-{i}: v" for i in range(MAX_HEADERS + 1)]), 431),
        (head("GET / HTTP/1.1", "Host: h", "X: " + "v" * MAX_HEAD_BYTES), 431),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),  # a TLS ClientHello
        (b"GET / HTTP/1.1\nHost: h\n\r\n\r\n", 400),  # bare LF line ends
    ],
)
def test_refused(raw: bytes, status: int) -> None:
    with pytest.raises(HttpError) as info:
        parse_head(raw)
    assert info.value.status == status


def test_find_head_end() -> None:
    data = b"GET / HTTP/1.1\r\nHost: h\r\n\r\nGET /x"
    end = find_head_end(data)
    assert data[end:] == b"GET /x"
    assert find_head_end(b"GET / HTTP/1.1\r\nHost: h\r\n") == -1


def test_render_sets_length_and_close() -> None:
    out = render(Response(503, b"not ready\n"), head_only=False, keep_alive=False)
    text = out.decode()
    assert text.startswith("HTTP/1.1 503 Service Unavailable\r\n")
    assert "\r\nContent-Length: 10\r\n" in text
    assert "\r\nConnection: close\r\n" in text
    assert text.endswith("\r\n\r\nnot ready\n")
    head_only = render(Response(200, b"abc"), head_only=True, keep_alive=True)
    assert head_only.endswith(b"\r\n\r\n") and b"Content-Length: 3" in head_only
    assert b"Connection: close" not in head_only


def test_parse_listener() -> None:
    assert parse_listener("http://127.0.0.1:9644") == ("127.0.0.1", 9644)
    assert parse_listener("http://[::1]:19644") == ("::1", 19644)
    assert parse_listener("http://:9644") == ("", 9644)
