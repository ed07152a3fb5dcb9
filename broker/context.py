"""What a handler sees of its request: the header, the peer, and the broker it runs in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pybroker.protocol.codec import RequestHeader

if TYPE_CHECKING:
    from pybroker.broker.server import Broker


@dataclass(frozen=True, slots=True)
class RequestContext:
    header: RequestHeader
    peer: str
    broker: Broker
    # The listener the request arrived on: Metadata, FindCoordinator and DescribeCluster
    # answer with each broker's endpoint on this listener, as Kafka does.
    listener: str = "PLAINTEXT"
    # Who sent it, as Kafka's KafkaPrincipal string ``User:<name>``: ANONYMOUS on
    # PLAINTEXT, the certificate's mapped name on SSL, the SASL identity once authenticated.
    principal: str = "User:ANONYMOUS"
    # The connection authenticated with a delegation token (SCRAM tokenauth=true, KIP-48):
    # it may not create, renew, expire or describe tokens.
    token_authenticated: bool = False
    # KIP-511: the client's software name and version from its ApiVersions request
    # (what KIP-714 client-metrics subscriptions match on).
    client_software: tuple[str, str] = ("unknown", "unknown")
    # Fetch only: writes a response completed outside the fetch's own task (a parked
    # fetch woken by an append) straight to the connection, when it may; returns what the
    # handler then returns (a SentResponse, or the response for the connection to send).
    respond_now: Callable[[Any], Any] | None = None

    @property
    def version(self) -> int:
        return self.header.api_version

    @property
    def client_id(self) -> str | None:
        return self.header.client_id
