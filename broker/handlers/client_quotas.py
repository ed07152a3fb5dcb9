"""DescribeClientQuotas (48) and AlterClientQuotas (49), KIP-546, with Kafka 4.1's rules.

Validation and texts follow Kafka's ClientQuotasImage.describe (filters) and
ClientQuotaControlManager (alterations): an entity type other than user/client-id/ip, an
empty name, a key the entity cannot have, a value <= 0 or a fraction for a long key are
INVALID_REQUEST for that entity; a duplicate key in one entry reports the entity as a
duplicate. Entities are stored in Kafka's ZooKeeper layout (replication.client_quotas);
the broker's quota manager reloads after every change.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pybroker.broker.context import RequestContext
from pybroker.broker.handlers.registry import api
from pybroker.broker.java_hash import java_hash_order
from pybroker.broker.security.authz import (
    CLUSTER_NAME,
    AclOperation,
    ResourceType,
    authorize,
    denied_message,
)
from pybroker.protocol.codec import build, response_type
from pybroker.protocol.errors import ErrorCode
from pybroker.replication import client_quotas as cq

MATCH_EXACT, MATCH_DEFAULT, MATCH_SPECIFIED = 0, 1, 2


class _Invalid(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _entity_data(ent: cq.Entity) -> list[dict[str, Any]]:
    parts = dict(ent)
    return [dict(entity_type=t, entity_name=parts[t]) for t in java_hash_order(parts)]


def _parse_filter(components: Any) -> tuple[dict[str, str | None], set[str]]:
    exact: dict[str, str | None] = {}
    typed: set[str] = set()
    for c in components:
        if not c.entity_type:
            raise _Invalid(ErrorCode.invalid_request, "Invalid empty entity type.")
        if c.entity_type in exact or c.entity_type in typed:
            raise _Invalid(
                ErrorCode.invalid_request,
                f"Entity type {c.entity_type} cannot appear more than once in the filter.",
            )
        if c.entity_type not in cq.ENTITY_TYPES:
            raise _Invalid(
                ErrorCode.unsupported_version, f"Unsupported entity type {c.entity_type}"
            )
        if c.match_type == MATCH_EXACT:
            if c.match is None:
                raise _Invalid(
                    ErrorCode.invalid_request,
                    "Request specified MATCH_TYPE_EXACT, but set match string to null.",
                )
            exact[c.entity_type] = c.match
        elif c.match_type == MATCH_DEFAULT:
            if c.match is not None:
                raise _Invalid(
                    ErrorCode.invalid_request,
                    "Request specified MATCH_TYPE_DEFAULT, but also specified a match string.",
                )
            exact[c.entity_type] = None
        elif c.match_type == MATCH_SPECIFIED:
            if c.match is not None:
                raise _Invalid(
                    ErrorCode.invalid_request,
                    "Request specified MATCH_TYPE_SPECIFIED, but also specified a match string.",
                )
            typed.add(c.entity_type)
        else:
            raise _Invalid(ErrorCode.invalid_request, f"Unknown match type {c.match_type}")
    named = set(exact) | typed
    if cq.IP in named and (cq.USER in named or cq.CLIENT_ID in named):
        raise _Invalid(
            ErrorCode.invalid_request,
            "Invalid entity filter component combination. IP filter component should not "
            "be used with user or clientId filter component.",
        )
    return exact, typed


def _matches(ent: cq.Entity, exact: dict[str, str | None], typed: set[str], strict: bool) -> bool:
    parts = dict(ent)
    if strict and len(parts) != len(exact) + len(typed):
        return False
    if any(t not in parts or parts[t] != name for t, name in exact.items()):
        return False
    return all(t in parts for t in typed)


@api(48, "DescribeClientQuotas", 0, 1)
async def handle_describe(ctx: RequestContext, request: Any) -> Any:
    cls = response_type(48, ctx.version)
    if not authorize(ctx, AclOperation.DESCRIBE_CONFIGS, ResourceType.CLUSTER, CLUSTER_NAME):
        return build(
            cls,
            throttle_time=0,
            error_code=ErrorCode.cluster_authorization_failed,
            error_message=None,
            entries=None,
        )
    try:
        exact, typed = _parse_filter(request.components)
    except _Invalid as exc:
        return build(
            cls, throttle_time=0, error_code=exc.code, error_message=exc.message, entries=None
        )
    entities = await cq.load_all(ctx.broker.entity_configs)
    entries = [
        dict(
            entity=_entity_data(ent),
            values=[dict(key=k, value=values[k]) for k in java_hash_order(values)],
        )
        for ent, values in entities.items()
        if _matches(ent, exact, typed, request.strict)
    ]
    return build(cls, throttle_time=0, error_code=0, error_message="", entries=entries)


def _java_entity(ent: cq.Entity) -> str:
    parts = dict(ent)
    inner = ", ".join(f"{t}={parts[t]}" for t in java_hash_order(parts))
    return f"ClientQuotaEntity(entries={{{inner}}})"


def _validate_value(keys: dict[str, str], key: str, value: float) -> str | None:
    kind = keys.get(key)
    if kind is None:
        return f"Invalid configuration key {key}"
    if value <= 0.0:
        return f"Quota {key} must be greater than 0"
    if kind == "double":
        return None
    if kind == "int" and value > 2**31 - 1:
        return f"Proposed value for {key} is too large for an INT."
    if kind == "long" and value > 2**63 - 1:
        return f"Proposed value for {key} is too large for a LONG."
    if abs(value % 1.0) > 1e-6:
        return f"{key} cannot be a fractional value."
    return None


def _validate_entity(ent: cq.Entity) -> tuple[str | None, dict[str, str]]:
    """(error, allowed keys) as ClientQuotaControlManager's validateEntity and
    configKeysForEntityType."""
    parts = dict(ent)
    if not parts:
        return "Invalid empty client quota entity", {}
    for t in java_hash_order(parts):
        if t not in cq.ENTITY_TYPES:
            return f"Unhandled client quota entity type: {t}", {}
        if parts[t] == "":
            return f"Empty {t} not supported", {}
    if cq.IP in parts:
        if len(parts) > 1:
            return (
                "Invalid quota entity combination, IP entity shouldnot be combined with User "
                "or ClientId",
                {},
            )
        return None, cq.IP_KEYS
    return None, cq.USER_CLIENT_KEYS


async def _resolvable(host: str) -> bool:
    """InetAddress.getByName: an IP literal or a name that resolves."""
    try:
        await asyncio.get_running_loop().getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return False
    return True


@api(49, "AlterClientQuotas", 0, 1)
async def handle_alter(ctx: RequestContext, request: Any) -> Any:
    cls = response_type(49, ctx.version)
    entries = request.entries or ()

    def entity_of(entry: Any) -> cq.Entity:
        parts: dict[str, str | None] = {}
        for e in entry.entity:
            parts[e.entity_type] = e.entity_name  # Kafka collects them in a map
        return frozenset(parts.items())

    if not authorize(ctx, AclOperation.ALTER_CONFIGS, ResourceType.CLUSTER, CLUSTER_NAME):
        # The controller's authorizeClusterOperation: its message names the request.
        denied = (
            ErrorCode.cluster_authorization_failed,
            denied_message(ctx, AclOperation.ALTER_CONFIGS),
        )
        results = {entity_of(e): denied for e in entries}
        return _alter_response(cls, results)
    results: dict[cq.Entity, tuple[int, str | None]] = {}
    changes: list[tuple[cq.Entity, dict[str, float | None]]] = []
    for entry in entries:
        ent = entity_of(entry)
        ops: dict[str, float | None] = {}
        for op in entry.ops:
            if op.key in ops:
                results[ent] = (
                    ErrorCode.invalid_request,
                    f"Duplicate quota key {op.key} not updating quota for this entity "
                    f"{_java_entity(ent)}",
                )
            else:
                ops[op.key] = None if op.remove else float(op.value)
        if ent in results:
            results[ent] = (
                ErrorCode.invalid_request,
                f"Ignoring duplicate entity {_java_entity(ent)}",
            )
            continue
        error, keys = _validate_entity(ent)
        ip = dict(ent).get(cq.IP)
        if error is None and ip is not None and not await _resolvable(ip):
            error = f"{ip} is not a valid IP or resolvable host."
        if error is None:
            for key, value in ops.items():
                if value is not None and (error := _validate_value(keys, key, value)):
                    break
        if error is not None:
            results[ent] = (ErrorCode.invalid_request, error)
            continue
        results[ent] = (0, None)
        changes.append((ent, ops))
    if not request.validate_only:
        store = ctx.broker.entity_configs
        for ent, ops in changes:
            await cq.apply(store, ent, ops)
        if changes:
            await ctx.broker.client_quotas.reload()
    return _alter_response(cls, results)


def _alter_response(cls: type, results: dict[cq.Entity, tuple[int, str | None]]) -> Any:
    return build(
        cls,
        throttle_time=0,
        entries=[
            dict(error_code=code, error_message=message, entity=_entity_data(ent))
            for ent, (code, message) in results.items()
        ],
    )
