"""DescribeUserScramCredentials (50) and AlterUserScramCredentials (51), KIP-554.

Credentials are stored as Kafka stores them (salt, stored key, server key, iterations:
never the password) in the ``users`` config entities (replication.entity_configs).
Kafka's rules and texts: a user named twice in one request gets DUPLICATE_RESOURCE and
nothing else; an empty name UNACCEPTABLE_CREDENTIAL; a mechanism other than
SCRAM-SHA-256 (1) / SCRAM-SHA-512 (2) UNSUPPORTED_SASL_MECHANISM; iterations outside
[4096, 16384] UNACCEPTABLE_CREDENTIAL; deleting or describing a missing credential
RESOURCE_NOT_FOUND. Kafka collects the users in a java.util.HashMap, so its results
come in that map's iteration order, which ``java_hash_order`` reproduces.
"""

from __future__ import annotations

from typing import Any

from pybroker.broker.context import RequestContext
from pybroker.broker.handlers.registry import api
from pybroker.broker.java_hash import java_hash_order
from pybroker.broker.security.authz import (
    CLUSTER_NAME,
    DEFAULT_MESSAGES,
    AclOperation,
    ResourceType,
    authorize,
)
from pybroker.protocol import scram
from pybroker.protocol.codec import build, response_type
from pybroker.protocol.errors import ErrorCode
from pybroker.replication.entity_configs import USERS


def _store(ctx: RequestContext) -> Any:
    return ctx.broker.entity_configs


@api(50, "DescribeUserScramCredentials", 0, 0)
async def handle_describe(ctx: RequestContext, request: Any) -> Any:
    if not authorize(ctx, AclOperation.DESCRIBE, ResourceType.CLUSTER, CLUSTER_NAME):  # ACLs
        # Kafka's getErrorResponse: a nameless result per requested user.
        code = ErrorCode.cluster_authorization_failed
        return build(
            response_type(50, ctx.version),
            throttle_time=0,
            error_code=code,
            error_message=None,
            results=[
                dict(user="", error_code=code, error_message=None, credential_infos=[])
                for _ in request.users or ()
            ],
        )
    store = _store(ctx)
    results = []
    if not request.users:
        users = await store.list(USERS)
        for name in java_hash_order(list(users)):
            infos = _infos(users[name])
            if infos:
                results.append(_described(name, ErrorCode.none, "", infos))
    else:
        names = [u.name for u in request.users]
        for name in java_hash_order(names):
            if names.count(name) > 1:
                results.append(
                    _described(
                        name,
                        ErrorCode.duplicate_resource,
                        "Cannot describe SCRAM credentials for the same user twice in a single "
                        f"request: {name}",
                        [],
                    )
                )
                continue
            infos = _infos(await store.get(USERS, name))
            if not infos:
                results.append(
                    _described(
                        name,
                        ErrorCode.resource_not_found,
                        f"Attempt to describe a user credential that does not exist: {name}",
                        [],
                    )
                )
            else:
                results.append(_described(name, ErrorCode.none, "", infos))
    return build(
        response_type(50, ctx.version),
        throttle_time=0,
        error_code=ErrorCode.none,
        error_message="",
        results=results,
    )


def _infos(config: dict[str, str]) -> list[dict[str, int]]:
    """Mechanism order is unspecified in Kafka (a map keyed by the mechanism enum, whose
    identity hash differs from run to run); here it is SCRAM-SHA-256, SCRAM-SHA-512."""
    out = []
    for mech, (_, _, _, type_id) in scram.MECHANISMS.items():
        if mech in config:
            try:
                iterations = scram.ScramCredential.from_config(config[mech]).iterations
            except scram.ScramError:
                continue
            out.append(dict(mechanism=type_id, iterations=iterations))
    return out


def _described(name: str, code: ErrorCode, message: str, infos: list[Any]) -> dict[str, Any]:
    return dict(user=name, error_code=code, error_message=message, credential_infos=infos)


def _illegal(op: Any, duplicate: bool) -> tuple[ErrorCode, str] | None:
    """The request-level checks."""
    if duplicate:
        return (
            ErrorCode.duplicate_resource,
            "A user credential cannot be altered twice in the same request",
        )
    if not op.name:
        return ErrorCode.unacceptable_credential, "Username must not be empty"
    if int(op.mechanism) not in scram.MECHANISM_BY_TYPE:
        return ErrorCode.unsupported_sasl_mechanism, "Unknown SCRAM mechanism"
    return None


def _check(op: Any, upsert: bool, config: dict[str, str]) -> tuple[ErrorCode, str | None]:
    """The checks against the stored credentials and Kafka's iteration bounds."""
    mech = scram.MECHANISM_BY_TYPE[int(op.mechanism)]
    if not upsert:
        if mech not in config:
            return (
                ErrorCode.resource_not_found,
                "Attempt to delete a user credential that does not exist",
            )
        return ErrorCode.none, None
    lo, hi = scram.MECHANISMS[mech][1:3]
    if op.iterations < lo:
        return ErrorCode.unacceptable_credential, "Too few iterations"
    if op.iterations > hi:
        return ErrorCode.unacceptable_credential, "Too many iterations"
    if not op.salted_password:
        return ErrorCode.unknown_server_error, None
    return ErrorCode.none, None


@api(51, "AlterUserScramCredentials", 0, 0)
async def handle_alter(ctx: RequestContext, request: Any) -> Any:
    """Kafka 4.1 answers the users it changed first, then those it refused, each group in
    its HashMap's order."""
    if not authorize(ctx, AclOperation.ALTER, ResourceType.CLUSTER, CLUSTER_NAME):  # ACLs
        code, message = ErrorCode.cluster_authorization_failed, DEFAULT_MESSAGES["cluster"]
        users = [op.name for op in (*request.deletions, *request.upsertions)]
        results = [dict(user=u, error_code=code, error_message=message) for u in users]
        return build(response_type(51, ctx.version), throttle_time=0, results=results)
    store = _store(ctx)
    ops = [(d, False) for d in request.deletions] + [(u, True) for u in request.upsertions]
    names = [op.name for op, _ in ops]
    refused: dict[str, tuple[ErrorCode, str | None]] = {}
    changed: list[str] = []
    for op, upsert in ops:
        name = op.name
        if name in refused or name in changed:
            continue
        bad = _illegal(op, names.count(name) > 1)
        if bad is not None:
            refused[name] = bad
            continue
        config = await store.get(USERS, name)
        code, message = _check(op, upsert, config)
        if code != ErrorCode.none:
            refused[name] = (code, message)
            continue
        mech = scram.MECHANISM_BY_TYPE[int(op.mechanism)]
        if upsert:
            cred = scram.credential_from_salted(
                mech, bytes(op.salted_password), bytes(op.salt), int(op.iterations)
            )
            config[mech] = cred.to_config()
        else:
            config.pop(mech, None)
        await store.set(USERS, name, config)
        changed.append(name)
    results = [
        dict(user=name, error_code=ErrorCode.none, error_message=None)
        for name in java_hash_order(changed)
    ] + [
        dict(user=name, error_code=refused[name][0], error_message=refused[name][1])
        for name in java_hash_order(refused)
    ]
    return build(response_type(51, ctx.version), throttle_time=0, results=results)
