"""Create (38), Renew (39), Expire (40) and DescribeDelegationToken (41): KIP-48, KIP-373.

Kafka's broker checks first (KafkaApis): tokens are only handled over an authenticated
channel, so a request on PLAINTEXT, on SSL without a client certificate, or from a
connection that itself authenticated with a token gets DELEGATION_TOKEN_REQUEST_NOT_ALLOWED.
Creating a token for someone else needs CREATE_TOKENS on that user; renewers must be users.
The rest is the controller's (broker.delegation_tokens): disabled without a secret key,
unknown HMAC, expired, not the owner or a renewer.
"""

from __future__ import annotations

import datetime
from typing import Any

from pybroker.broker.context import RequestContext
from pybroker.broker.delegation_tokens import ERROR_TIMESTAMP, user_principal
from pybroker.broker.handlers.registry import api
from pybroker.broker.security.authz import AclOperation, ResourceType, authorize
from pybroker.protocol.codec import build, millis, response_type
from pybroker.protocol.errors import ErrorCode

USER_TYPE = "User"


def _ts(ms: int) -> datetime.datetime:
    """A datetime_i64 field, negative values included (build() would make -1 a null)."""
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)


def allow_token_requests(ctx: RequestContext) -> bool:
    """KafkaApis.allowTokenRequests."""
    protocol = ctx.broker.config.listener_security_protocol_map.get(ctx.listener, ctx.listener)
    if ctx.token_authenticated or protocol == "PLAINTEXT":
        return False
    return not (protocol == "SSL" and ctx.principal == "User:ANONYMOUS")


def _create_response(
    ctx: RequestContext, code: ErrorCode, owner: str, requester: str, **fields: Any
) -> Any:
    otype, oname = user_principal(owner)
    rtype, rname = user_principal(requester)
    values: dict[str, Any] = dict(
        error_code=code,
        principal_type=otype,
        principal_name=oname,
        token_requester_principal_type=rtype,
        token_requester_principal_name=rname,
        issue_timestamp=ERROR_TIMESTAMP,
        expiry_timestamp=ERROR_TIMESTAMP,
        max_timestamp=ERROR_TIMESTAMP,
        token_id="",
        hmac=b"",
        throttle_time=0,
    )
    values.update(fields)
    for key in ("issue_timestamp", "expiry_timestamp", "max_timestamp"):
        values[key] = _ts(values[key])
    return build(response_type(38, ctx.version), **values)


@api(38, "CreateDelegationToken", 1, 3)
async def handle_create(ctx: RequestContext, request: Any) -> Any:
    requester = ctx.principal
    name = getattr(request, "owner_principal_name", None)
    owner = f"{request.owner_principal_type}:{name}" if name else requester
    renewers = [f"{r.principal_type}:{r.principal_name}" for r in request.renewers]
    if not allow_token_requests(ctx):
        code = ErrorCode.delegation_token_request_not_allowed
        return _create_response(ctx, code, owner, requester)
    if owner != requester and not authorize(
        ctx, AclOperation.CREATE_TOKENS, ResourceType.USER, owner
    ):
        code = ErrorCode.delegation_token_authorization_failed
        return _create_response(ctx, code, owner, requester)
    if any(not r.startswith(f"{USER_TYPE}:") for r in renewers):
        return _create_response(ctx, ErrorCode.invalid_principal_type, owner, requester)
    manager = ctx.broker.delegation_tokens
    if not manager.enabled:
        # The controller's answer: owner and requester, zero timestamps.
        code = ErrorCode.delegation_token_auth_disabled
        return _create_response(
            ctx, code, owner, requester, issue_timestamp=0, expiry_timestamp=0, max_timestamp=0
        )
    token, mac = await manager.create(owner, requester, renewers, millis(request.max_lifetime))
    return _create_response(
        ctx,
        ErrorCode.none,
        owner,
        requester,
        issue_timestamp=token.issue_ms,
        expiry_timestamp=token.expiry_ms,
        max_timestamp=token.max_ms,
        token_id=token.token_id,
        hmac=mac,
    )


def _expiry_response(ctx: RequestContext, code: ErrorCode, expiry: int) -> Any:
    return build(
        response_type(ctx.header.api_key, ctx.version),
        error_code=code,
        expiry_timestamp=_ts(expiry),
        throttle_time=0,
    )


@api(39, "RenewDelegationToken", 1, 2)
async def handle_renew(ctx: RequestContext, request: Any) -> Any:
    if not allow_token_requests(ctx):
        code = ErrorCode.delegation_token_request_not_allowed
        return _expiry_response(ctx, code, ERROR_TIMESTAMP)
    code, expiry = await ctx.broker.delegation_tokens.renew(
        ctx.principal, bytes(request.hmac), millis(request.renew_period)
    )
    return _expiry_response(ctx, code, expiry)


@api(40, "ExpireDelegationToken", 1, 2)
async def handle_expire(ctx: RequestContext, request: Any) -> Any:
    if not allow_token_requests(ctx):
        code = ErrorCode.delegation_token_request_not_allowed
        return _expiry_response(ctx, code, ERROR_TIMESTAMP)
    code, expiry = await ctx.broker.delegation_tokens.expire(
        ctx.principal, bytes(request.hmac), millis(request.expiry_time_period)
    )
    return _expiry_response(ctx, code, expiry)


@api(41, "DescribeDelegationToken", 1, 3)
async def handle_describe(ctx: RequestContext, request: Any) -> Any:
    rtype = response_type(41, ctx.version)
    manager = ctx.broker.delegation_tokens
    if not allow_token_requests(ctx):
        code = ErrorCode.delegation_token_request_not_allowed
        return build(rtype, error_code=code, tokens=[], throttle_time=0)
    if not manager.enabled:
        code = ErrorCode.delegation_token_auth_disabled
        return build(rtype, error_code=code, tokens=[], throttle_time=0)
    if request.owners is not None and not request.owners:
        return build(rtype, error_code=ErrorCode.none, tokens=[], throttle_time=0)
    owners = (
        None
        if request.owners is None
        else [f"{o.principal_type}:{o.principal_name}" for o in request.owners]
    )
    found = await manager.describe(
        ctx.principal,
        owners,
        lambda tid: authorize(ctx, AclOperation.DESCRIBE, ResourceType.DELEGATION_TOKEN, tid),
        lambda owner: authorize(ctx, AclOperation.DESCRIBE_TOKENS, ResourceType.USER, owner),
    )
    tokens = []
    for token, mac in found:
        otype, oname = user_principal(token.owner)
        qtype, qname = user_principal(token.requester)
        tokens.append(
            dict(
                principal_type=otype,
                principal_name=oname,
                token_requester_principal_type=qtype,
                token_requester_principal_name=qname,
                issue_timestamp=token.issue_ms,
                expiry_timestamp=token.expiry_ms,
                max_timestamp=token.max_ms,
                token_id=token.token_id,
                hmac=mac,
                renewers=[
                    dict(principal_type=t, principal_name=n)
                    for t, n in map(user_principal, token.renewers)
                ],
            )
        )
    return build(rtype, error_code=ErrorCode.none, tokens=tokens, throttle_time=0)
