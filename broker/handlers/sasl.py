"""SaslHandshake (17) and SaslAuthenticate (36) outside authentication.

On a SASL listener these requests are consumed by the connection's authenticator
(broker.sasl_authenticator) until the client is authenticated. What reaches these handlers
is what Kafka's KafkaApis sees: either a PLAINTEXT/SSL listener, or an already
authenticated SASL connection. Kafka answers both with ILLEGAL_SASL_STATE.
"""

from __future__ import annotations

from typing import Any

from pybroker.broker.context import RequestContext
from pybroker.broker.handlers.registry import api
from pybroker.protocol.codec import build, response_type
from pybroker.protocol.errors import ErrorCode


@api(17, "SaslHandshake", 0, 1)
async def handle_sasl_handshake(ctx: RequestContext, request: Any) -> Any:
    return build(
        response_type(17, ctx.version), error_code=ErrorCode.illegal_sasl_state, mechanisms=[]
    )


@api(36, "SaslAuthenticate", 0, 2)
async def handle_sasl_authenticate(ctx: RequestContext, request: Any) -> Any:
    fields: dict[str, Any] = dict(
        error_code=ErrorCode.illegal_sasl_state,
        error_message="SaslAuthenticate request received after successful authentication",
        auth_bytes=b"",
    )
    if ctx.version >= 1:
        fields["session_lifetime"] = 0
    return build(response_type(36, ctx.version), **fields)
