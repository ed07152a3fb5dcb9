"""ApiVersions (key 18): advertise exactly the registry; answer any version (KIP-511).

The registry holds Kafka 4.1's ranges. With pybroker.legacy.protocol.enable (the default)
the minimums go down to Kafka 3.9's for the versions KIP-896 removed (protocol/legacy).
Without it Produce is still advertised from v0 though v0-2 are refused, as Kafka 4.1 does
(KAFKA-18659: librdkafka < 2.8 infers gzip/snappy/lz4 support from Produce v0 being listed).
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from kio.schema.api_versions.v0.response import ApiVersionsResponse as ApiVersionsResponseV0

from pybroker.broker.context import RequestContext
from pybroker.broker.handlers.registry import ApiSpec, api, supported_apis
from pybroker.protocol.codec import build, encode_body, response_type
from pybroker.protocol.errors import ErrorCode
from pybroker.protocol.legacy import LEGACY_MIN

LEGACY_KEY = "pybroker.legacy.protocol.enable"
# KAFKA-18659: Kafka 4.x lists Produce from v0 while refusing v0-2.
_ADVERTISED_MIN = {0: 0}

# KIP-511: client software name and version must match this.
_SOFTWARE = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?$")


def legacy_enabled(broker: Any) -> bool:
    """pybroker.legacy.protocol.enable of this broker (true when there is no config)."""
    config = getattr(broker, "config", None)
    values = getattr(config, "values", None)
    if not values:
        return True
    return bool(values.get(LEGACY_KEY, True))


def served_min_version(spec: ApiSpec, broker: Any) -> int:
    """The lowest version of ``spec`` this broker answers."""
    if legacy_enabled(broker):
        return min(spec.min_version, LEGACY_MIN.get(spec.api_key, spec.min_version))
    return spec.min_version


def _advertised_min(spec: ApiSpec, legacy: bool) -> int:
    lo = spec.min_version
    if legacy:
        lo = min(lo, LEGACY_MIN.get(spec.api_key, lo))
    return min(lo, _ADVERTISED_MIN.get(spec.api_key, lo))


def _api_keys(legacy: bool = True) -> list[dict[str, int]]:
    return [
        dict(api_key=s.api_key, min_version=_advertised_min(s, legacy), max_version=s.max_version)
        for s in supported_apis()
    ]


@cache
def _body(version: int, legacy: bool) -> bytes:
    """Encoded once per version; the correlation id lives in the header, not here."""
    return encode_body(build(response_type(18, version), error_code=0, api_keys=_api_keys(legacy)))


def _error_keys(code: ErrorCode) -> list[dict[str, int]]:
    """Kafka's ApiVersionsRequest.getErrorResponse: UNSUPPORTED_VERSION lists only
    ApiVersions' own range (so the client can retry with a version we take); any other
    error lists nothing."""
    if code != ErrorCode.unsupported_version:
        return []
    return [k for k in _api_keys() if k["api_key"] == 18]


def _v0_error(code: ErrorCode) -> bytes:
    return encode_body(build(ApiVersionsResponseV0, error_code=code, api_keys=_error_keys(code)))


def unsupported_version_body() -> bytes:
    """The v0-format answer to a version we do not support, listing ApiVersions' range."""
    return _v0_error(ErrorCode.unsupported_version)


def invalid_request_body(version: int) -> bytes:
    return _v0_error(ErrorCode.invalid_request)


@api(18, "ApiVersions", 0, 4)
async def handle_api_versions(ctx: RequestContext, request: Any) -> bytes:
    if ctx.version >= 3:
        name = request.client_software_name
        ver = request.client_software_version
        if not (_SOFTWARE.match(name or "") and _SOFTWARE.match(ver or "")):
            return encode_body(
                build(
                    response_type(18, ctx.version),
                    error_code=ErrorCode.invalid_request,
                    api_keys=_error_keys(ErrorCode.invalid_request),
                )
            )
    return _body(ctx.version, legacy_enabled(ctx.broker))
