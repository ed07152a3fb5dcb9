"""ApiVersions (key 18): advertise exactly the registry; answer any version (KIP-511)."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from kio.schema.api_versions.v0.response import ApiVersionsResponse as ApiVersionsResponseV0

from pybroker.broker.context import RequestContext
from pybroker.broker.handlers.registry import api, supported_apis
from pybroker.protocol.codec import build, encode_body, response_type
from pybroker.protocol.errors import ErrorCode

# KIP-511: client software name and version must match this.
_SOFTWARE = re.compile(r"^[a-zA-Z0-9](?:[a-zA-Z0-9\-.]*[a-zA-Z0-9])?$")


def _api_keys() -> list[dict[str, int]]:
    return [
        dict(api_key=s.api_key, min_version=s.min_version, max_version=s.max_version)
        for s in supported_apis()
    ]


@cache
def _body(version: int) -> bytes:
    """Encoded once per version; the correlation id lives in the header, not here."""
    return encode_body(build(response_type(18, version), error_code=0, api_keys=_api_keys()))


def _v0_error(code: ErrorCode) -> bytes:
    return encode_body(build(ApiVersionsResponseV0, error_code=code, api_keys=_api_keys()))


def unsupported_version_body() -> bytes:
    """The v0-format answer to a version we do not support, listing what we do."""
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
                    api_keys=_api_keys(),
                )
            )
    return _body(ctx.version)
