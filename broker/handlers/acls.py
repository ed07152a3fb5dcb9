"""DescribeAcls (29), CreateAcls (30), DeleteAcls (31): Kafka's AclApis on a KRaft broker.

Describing needs DESCRIBE on the cluster, creating and deleting ALTER on the cluster
(CLUSTER_AUTHORIZATION_FAILED otherwise). Without an authorizer every request is answered
SECURITY_DISABLED. A request naming an UNKNOWN (code 0) type, pattern, operation or
permission cannot be parsed by Kafka and closes the connection; creations are then checked
as AclControlManager.validateNewAcl does (INVALID_REQUEST with Kafka's messages), and
delete filters as validateFilter does.
"""

from __future__ import annotations

from typing import Any

from pybroker.broker.connection import CloseConnection
from pybroker.broker.context import RequestContext
from pybroker.broker.handlers.registry import api
from pybroker.broker.security.authz import authorize, denied_message
from pybroker.protocol.codec import build, response_type
from pybroker.protocol.errors import ErrorCode
from pybroker.replication.acls import (
    CLUSTER_NAME,
    AccessControlEntry,
    AclBinding,
    AclBindingFilter,
    AclOperation,
    PatternType,
    PermissionType,
    ResourcePattern,
    ResourceType,
    operation,
    pattern_type,
    permission_type,
    resource_type,
)

NO_AUTHORIZER_DESCRIBE = "No Authorizer is configured on the broker"
NO_AUTHORIZER = "No Authorizer is configured."


def _filter(f: Any) -> AclBindingFilter:
    return AclBindingFilter(
        resource_type(f.resource_type_filter),
        f.resource_name_filter,
        pattern_type(f.pattern_type_filter),
        f.principal_filter,
        f.host_filter,
        operation(f.operation),
        permission_type(f.permission_type),
    )


def _unparseable(codes: tuple[int, ...]) -> bool:
    """Kafka's request constructors refuse a code 0 (UNKNOWN) in any of these fields."""
    return any(int(c) == 0 for c in codes)


@api(29, "DescribeAcls", 1, 3)
async def handle_describe_acls(ctx: RequestContext, request: Any) -> Any:
    if _unparseable(
        (
            request.resource_type_filter,
            request.pattern_type_filter,
            request.operation,
            request.permission_type,
        )
    ):
        raise CloseConnection("DescribeAcls with UNKNOWN elements")
    response = response_type(29, ctx.version)
    if not authorize(ctx, AclOperation.DESCRIBE, ResourceType.CLUSTER, CLUSTER_NAME):
        return build(
            response,
            throttle_time=0,
            error_code=ErrorCode.cluster_authorization_failed,
            error_message=denied_message(ctx, AclOperation.DESCRIBE),
            resources=[],
        )
    acls = ctx.broker.acls
    if acls is None:
        return build(
            response,
            throttle_time=0,
            error_code=ErrorCode.security_disabled,
            error_message=NO_AUTHORIZER_DESCRIBE,
            resources=[],
        )
    by_pattern: dict[ResourcePattern, list[AccessControlEntry]] = {}
    for b in acls.authorizer.matching(_filter(request)):
        by_pattern.setdefault(b.pattern, []).append(b.entry)
    return build(
        response,
        throttle_time=0,
        error_code=ErrorCode.none,
        error_message="",
        resources=[
            {
                "resource_type": int(p.resource_type),
                "resource_name": p.name,
                "pattern_type": int(p.pattern_type),
                "acls": [
                    {
                        "principal": e.principal,
                        "host": e.host,
                        "operation": int(e.operation),
                        "permission_type": int(e.permission),
                    }
                    for e in entries
                ],
            }
            for p, entries in by_pattern.items()
        ],
    )


def _creation_error(c: Any) -> tuple[ErrorCode, str | None] | None:
    """Why Kafka 4.1 refuses a creation, or None. ResourcePattern/AccessControlEntry refuse
    ANY and MATCH outright (UNKNOWN_SERVER_ERROR for the whole request); then the cluster-name
    and empty-name checks, the principal's parse, and AclControlManager.validateNewAcl,
    which names the fields Kafka's enums do not know (INVALID_REQUEST)."""
    rtype = resource_type(c.resource_type)
    ptype = pattern_type(c.resource_pattern_type)
    op = operation(c.operation)
    perm = permission_type(c.permission_type)
    if (
        rtype == ResourceType.ANY
        or ptype in (PatternType.ANY, PatternType.MATCH)
        or op == AclOperation.ANY
        or perm == PermissionType.ANY
    ):
        return ErrorCode.unknown_server_error, None
    invalid = ErrorCode.invalid_request
    if rtype == ResourceType.CLUSTER and c.resource_name != CLUSTER_NAME:
        return invalid, f"The only valid name for the CLUSTER resource is {CLUSTER_NAME}"
    if c.resource_name == "":
        return invalid, "Invalid empty resource name"
    if ":" not in c.principal:
        return invalid, (
            f"Could not parse principal from `{c.principal}` (no colon is present separating "
            "the principal type from the principal name)"
        )
    for field, value in (
        ("resourceType", rtype),
        ("patternType", ptype),
        ("operation", op),
        ("permissionType", perm),
    ):
        if int(value) == 0:
            return invalid, f"Invalid {field} UNKNOWN"
    return None


@api(30, "CreateAcls", 1, 3)
async def handle_create_acls(ctx: RequestContext, request: Any) -> Any:
    for c in request.creations:
        if _unparseable((c.resource_type, c.resource_pattern_type, c.operation, c.permission_type)):
            raise CloseConnection("CreateAcls with UNKNOWN elements")
    response = response_type(30, ctx.version)

    def every(code: ErrorCode, message: str | None) -> Any:
        results = [{"error_code": code, "error_message": message} for _ in request.creations]
        return build(response, throttle_time=0, results=results)

    if not authorize(ctx, AclOperation.ALTER, ResourceType.CLUSTER, CLUSTER_NAME):
        return every(
            ErrorCode.cluster_authorization_failed, denied_message(ctx, AclOperation.ALTER)
        )
    acls = ctx.broker.acls
    if acls is None:
        return every(ErrorCode.security_disabled, NO_AUTHORIZER)
    # Building the bindings fails the whole request when any names ANY or MATCH.
    errors = [_creation_error(c) for c in request.creations]
    if any(e is not None and e[0] == ErrorCode.unknown_server_error for e in errors):
        return every(ErrorCode.unknown_server_error, None)
    results: list[dict[str, Any]] = []
    valid: list[AclBinding] = []
    for c, error in zip(request.creations, errors, strict=True):
        if error is not None:
            results.append({"error_code": error[0], "error_message": error[1]})
            continue
        valid.append(
            AclBinding(
                ResourcePattern(
                    resource_type(c.resource_type),
                    c.resource_name,
                    pattern_type(c.resource_pattern_type),
                ),
                AccessControlEntry(
                    c.principal, c.host, operation(c.operation), permission_type(c.permission_type)
                ),
            )
        )
        results.append({"error_code": ErrorCode.none, "error_message": ""})
    await acls.create(valid)
    return build(response, throttle_time=0, results=results)


@api(31, "DeleteAcls", 1, 3)
async def handle_delete_acls(ctx: RequestContext, request: Any) -> Any:
    for f in request.filters:
        codes = (f.resource_type_filter, f.pattern_type_filter, f.operation, f.permission_type)
        if _unparseable(codes):
            raise CloseConnection("DeleteAcls with UNKNOWN elements")
    filters = [_filter(f) for f in request.filters]
    response = response_type(31, ctx.version)

    def every(code: ErrorCode, message: str | None) -> Any:
        results = [
            {"error_code": code, "error_message": message, "matching_acls": []} for _ in filters
        ]
        return build(response, throttle_time=0, filter_results=results)

    if not authorize(ctx, AclOperation.ALTER, ResourceType.CLUSTER, CLUSTER_NAME):
        return every(
            ErrorCode.cluster_authorization_failed, denied_message(ctx, AclOperation.ALTER)
        )
    acls = ctx.broker.acls
    if acls is None:
        return every(ErrorCode.security_disabled, NO_AUTHORIZER)
    valid = [f for f in filters if _filter_error(f) is None]
    deleted = iter(await acls.delete(valid))
    matched = [next(deleted) if _filter_error(f) is None else [] for f in filters]
    return build(
        response,
        throttle_time=0,
        filter_results=[
            {
                "error_code": ErrorCode.none if error is None else ErrorCode.invalid_request,
                "error_message": error,
                "matching_acls": [
                    {
                        "error_code": ErrorCode.none,
                        "error_message": None,
                        "resource_type": int(b.pattern.resource_type),
                        "resource_name": b.pattern.name,
                        "pattern_type": int(b.pattern.pattern_type),
                        "principal": b.entry.principal,
                        "host": b.entry.host,
                        "operation": int(b.entry.operation),
                        "permission_type": int(b.entry.permission),
                    }
                    for b in m
                ],
            }
            for m, error in zip(matched, map(_filter_error, filters), strict=True)
        ],
    )


def _filter_error(f: AclBindingFilter) -> str | None:
    """AclControlManager.validateFilter, for codes Kafka's enums do not know."""
    if f.resource_type == ResourceType.UNKNOWN or f.pattern_type == PatternType.UNKNOWN:
        return "Unknown patternFilter."
    if f.operation == AclOperation.UNKNOWN or f.permission == PermissionType.UNKNOWN:
        return "Unknown entryFilter."
    return None
