"""Legacy protocol versions (KIP-896 removed them in Kafka 4.0; Kafka 3.9 served them).

Pure, no I/O. ``decode_request`` turns a legacy body into the kio request of the proxy
version (apis.py); ``response_class`` gives the class a handler builds its response with
(the proxy's kio class, marked); ``encode_response`` writes such a response in the legacy
layout. protocol/codec.py routes through these when kio has no class for a version, so
handlers need no legacy code of their own beyond version checks (Produce converts
message sets, Fetch down-converts: see message_set.py).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pybroker.protocol.legacy.apis import LEGACY_MIN, LEGACY_VERSIONS, LegacyVersion
from pybroker.protocol.legacy.wire import read, write

__all__ = [
    "LEGACY_MIN",
    "legacy_version",
    "decode_request",
    "response_class",
    "encode_response",
    "is_legacy_response",
    "encode_request",
    "decode_response",
]


def legacy_version(api_key: int, version: int) -> LegacyVersion | None:
    return LEGACY_VERSIONS.get((api_key, version))


def decode_request(api_key: int, version: int, frame: memoryview | bytes, pos: int) -> Any:
    """The body at ``pos`` as the proxy version's kio request; FrameError if malformed."""
    from pybroker.protocol.codec import FrameError, build, request_type

    spec = LEGACY_VERSIONS[(api_key, version)]
    fields = read(spec.request, frame, pos)
    if spec.translate is not None:
        fields = spec.translate(fields)
    cls = request_type(api_key, spec.proxy)
    assert cls is not None
    try:
        return build(cls, fields)
    except (ValueError, TypeError, OverflowError) as exc:  # never a crash, as kio's path
        raise FrameError(f"cannot decode {cls.__name__} v{version}: {exc!r}") from None


@cache
def response_class(api_key: int, version: int) -> type:
    """The proxy's kio response class, subclassed and marked with the legacy version."""
    from pybroker.protocol.codec import response_type

    spec = LEGACY_VERSIONS[(api_key, version)]
    base = response_type(api_key, spec.proxy)
    return type(
        f"{base.__name__}V{version}",
        (base,),
        {"__slots__": (), "__legacy__": (api_key, version), "__module__": __name__},
    )


def is_legacy_response(body: Any) -> bool:
    return getattr(type(body), "__legacy__", None) is not None


def encode_response(body: Any) -> bytes:
    spec = LEGACY_VERSIONS[type(body).__legacy__]
    value = spec.prepare(body) if spec.prepare is not None else body
    return write(spec.response, value)


# -- the client side (tests, tools): the same schemas read the other way ----------------


def encode_request(api_key: int, version: int, fields: dict[str, Any]) -> bytes:
    """A legacy request body from plain values named as in apis.py."""
    return write(LEGACY_VERSIONS[(api_key, version)].request, fields)


def decode_response(api_key: int, version: int, body: memoryview | bytes) -> dict[str, Any]:
    """A legacy response body as plain values."""
    return read(LEGACY_VERSIONS[(api_key, version)].response, body, 0)
