"""The handler registry: which API keys and versions this broker serves, and who serves them.

ApiVersions is generated from this table, so the broker advertises exactly what is
implemented. Handler modules register themselves with the ``@api`` decorator; importing
``pybroker.broker.handlers.all`` loads every one of them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    from pybroker.broker.context import RequestContext
    from pybroker.protocol.fetch_encoder import EncodedResponse

# What a handler returns: a kio response entity, a pre-encoded body (bytes), a response with
# file slices (Fetch), or None when the API sends no response (Produce with acks=0).
HandlerResult = Union[Any, bytes, "EncodedResponse", None]
Handler = Callable[["RequestContext", Any], Awaitable[HandlerResult]]


@dataclass(frozen=True, slots=True)
class ApiSpec:
    api_key: int
    name: str
    min_version: int
    max_version: int
    handler: Handler


REGISTRY: dict[int, ApiSpec] = {}


def api(
    api_key: int, name: str, min_version: int, max_version: int
) -> Callable[[Handler], Handler]:
    """Register ``handler`` for ``api_key`` at versions [min_version, max_version]."""

    def register(handler: Handler) -> Handler:
        if api_key in REGISTRY:
            raise RuntimeError(f"api key {api_key} registered twice")
        REGISTRY[api_key] = ApiSpec(api_key, name, min_version, max_version, handler)
        return handler

    return register


def supported_apis() -> list[ApiSpec]:
    return [REGISTRY[k] for k in sorted(REGISTRY)]
