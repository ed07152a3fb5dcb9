"""``python -m pybroker.broker.healthcheck``: is a broker serving Kafka requests?

Docker's HEALTHCHECK (and any probe) needs more than an open port: a broker that accepts
connections but cannot answer is not healthy. This sends one ApiVersions request (v3, as
clients do first) and exits 0 only when a well-formed answer with no error comes back
within the timeout; otherwise it prints why and exits 1.
"""

from __future__ import annotations

import argparse
import socket
import struct
import sys

from kio.schema.api_versions.v3.request import ApiVersionsRequest

from pybroker.protocol.client_codec import decode_response, encode_request
from pybroker.protocol.codec import FrameError

API_VERSIONS = 18
VERSION = 3


def check(host: str, port: int, timeout: float) -> str | None:
    """None when the broker answered ApiVersions without error, else the reason."""
    request = ApiVersionsRequest(
        client_software_name="pybroker-healthcheck", client_software_version="1"
    )
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(encode_request(API_VERSIONS, VERSION, 1, "healthcheck", request))
            (size,) = struct.unpack(">i", _read(sock, 4))
            if not 0 < size <= 1 << 20:
                return f"implausible response size {size}"
            _cid, body = decode_response(API_VERSIONS, VERSION, _read(sock, size))
    except (OSError, ValueError, EOFError, FrameError) as exc:
        return f"{host}:{port}: {exc}"
    if body.error_code != 0:
        return f"ApiVersions answered error {int(body.error_code)}"
    return None


def _read(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("connection closed before the answer was complete")
        data += chunk
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="host:port to probe")
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    host, _, port = args.bootstrap.rpartition(":")
    problem = check(host or "127.0.0.1", int(port), args.timeout)
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
