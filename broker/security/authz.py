"""What handlers call to authorize: one check, one filter for lists, one bitfield.

Each mirrors Kafka's AuthHelper and is a no-op (everything allowed, every supported
operation in the bitfield) when no authorizer is configured, so brokers without
``authorizer.class.name`` behave exactly as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from pybroker.replication.acls import SUPPORTED_OPERATIONS, AclOperation, ResourceType

if TYPE_CHECKING:
    from pybroker.broker.context import RequestContext

__all__ = [
    "AclOperation",
    "ResourceType",
    "authorize",
    "authorize_by_type",
    "authorized",
    "authorized_operations",
    "CLUSTER_NAME",
]

CLUSTER_NAME = "kafka-cluster"


def client_host(ctx: RequestContext) -> str:
    """The peer's IP, as ACL hosts name it."""
    host = ctx.peer.rsplit(":", 1)[0]
    return host.strip("[]")


def authorize(ctx: RequestContext, op: AclOperation, rtype: ResourceType, name: str) -> bool:
    authorizer = ctx.broker.authorizer
    if authorizer is None:
        return True
    return authorizer.authorize(ctx.principal, client_host(ctx), op, rtype, name)


def authorized(
    ctx: RequestContext, op: AclOperation, rtype: ResourceType, names: Iterable[str]
) -> set[str]:
    """The names in ``names`` the principal may ``op`` (AuthHelper.filterByAuthorized)."""
    authorizer = ctx.broker.authorizer
    if authorizer is None:
        return set(names)
    host = client_host(ctx)
    return {n for n in set(names) if authorizer.authorize(ctx.principal, host, op, rtype, n)}


def authorize_by_type(ctx: RequestContext, op: AclOperation, rtype: ResourceType) -> bool:
    authorizer = ctx.broker.authorizer
    if authorizer is None:
        return True
    return authorizer.authorize_by_resource_type(ctx.principal, client_host(ctx), op, rtype)


def authorized_operations(ctx: RequestContext, rtype: ResourceType, name: str) -> int:
    """AuthHelper.authorizedOperations: the bitfield of allowed supported operations."""
    authorizer = ctx.broker.authorizer
    if authorizer is None:
        return sum(1 << int(op) for op in SUPPORTED_OPERATIONS[rtype])
    return authorizer.authorized_operations(ctx.principal, client_host(ctx), rtype, name)


# Errors.message() of the authorization errors, where Kafka answers with the default text.
DEFAULT_MESSAGES = {
    "cluster": "Cluster authorization failed.",
    "topic": "Topic authorization failed.",
    "group": "Group authorization failed.",
    "transactional_id": "Transactional Id authorization failed.",
}


def denied_message(ctx: RequestContext, op: AclOperation) -> str:
    """AuthHelper.authorizeClusterOperation's message (Kafka names its request object)."""
    return (
        f"Request Request(connectionId={ctx.peer}, listenerName=ListenerName({ctx.listener}), "
        f"principal={ctx.principal}) needs {op.name} permission."
    )
