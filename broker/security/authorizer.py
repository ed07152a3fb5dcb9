"""Kafka's authorizer semantics (StandardAuthorizer / AclAuthorizer), without I/O.

Enabled by ``authorizer.class.name``. A request is allowed when the principal is a super
user, or an ALLOW ACL matches and no DENY ACL does (deny beats allow); with no ACL at all
on the resource (for anyone) the answer is ``allow.everyone.if.no.acl.found``. An ACL
matches on resource (literal name, ``*`` wildcard, or a prefix), principal (exact or
``User:*``), host (``*`` or the client's IP) and operation, where an ALLOW of READ, WRITE,
DELETE or ALTER implies DESCRIBE, ALTER_CONFIGS implies DESCRIBE_CONFIGS, and ALL
matches everything (the implications hold for ALLOW only, as in Kafka).
"""

from __future__ import annotations

from collections.abc import Iterable

from pybroker.config.broker_config import BrokerConfig
from pybroker.replication.acls import (
    SUPPORTED_OPERATIONS,
    WILDCARD,
    WILDCARD_PRINCIPAL,
    AccessControlEntry,
    AclBinding,
    AclBindingFilter,
    AclOperation,
    PatternType,
    PermissionType,
    ResourcePattern,
    ResourceType,
)

_IMPLIES_DESCRIBE = frozenset(
    {
        AclOperation.DESCRIBE,
        AclOperation.READ,
        AclOperation.WRITE,
        AclOperation.DELETE,
        AclOperation.ALTER,
    }
)
_IMPLIES_DESCRIBE_CONFIGS = frozenset({AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS})


def parse_super_users(raw: str | None) -> frozenset[str]:
    """``super.users``: principals separated by semicolons (``User:alice;User:bob``)."""
    return frozenset(p.strip() for p in (raw or "").split(";") if p.strip())


def _entry_result(
    entry: AccessControlEntry, principal: str, host: str, op: AclOperation
) -> PermissionType | None:
    """StandardAuthorizerData.findResult: ALLOW/DENY when ``entry`` applies, else None."""
    if entry.principal not in (principal, WILDCARD_PRINCIPAL):
        return None
    if entry.host != WILDCARD and entry.host != host:
        return None
    if entry.operation != AclOperation.ALL:
        if entry.permission == PermissionType.ALLOW:
            if op == AclOperation.DESCRIBE:
                if entry.operation not in _IMPLIES_DESCRIBE:
                    return None
            elif op == AclOperation.DESCRIBE_CONFIGS:
                if entry.operation not in _IMPLIES_DESCRIBE_CONFIGS:
                    return None
            elif op != entry.operation:
                return None
        elif op != entry.operation:
            return None
    return entry.permission


class Authorizer:
    """ACLs in memory, indexed by resource pattern; replaced wholesale or changed in place."""

    def __init__(self, super_users: Iterable[str] = (), allow_if_no_acl: bool = False) -> None:
        self.super_users = frozenset(super_users)
        self.allow_if_no_acl = allow_if_no_acl
        self._acls: dict[ResourcePattern, set[AccessControlEntry]] = {}

    # ------------------------------------------------------------------ contents
    def replace(self, bindings: Iterable[AclBinding]) -> None:
        acls: dict[ResourcePattern, set[AccessControlEntry]] = {}
        for b in bindings:
            acls.setdefault(b.pattern, set()).add(b.entry)
        self._acls = acls

    def bindings(self) -> list[AclBinding]:
        return [AclBinding(p, e) for p, entries in self._acls.items() for e in entries]

    def matching(self, flt: AclBindingFilter) -> list[AclBinding]:
        return sorted(b for b in self.bindings() if flt.matches(b))

    # ------------------------------------------------------------------ decisions
    def authorize(
        self, principal: str, host: str, op: AclOperation, rtype: ResourceType, name: str
    ) -> bool:
        if principal in self.super_users:
            return True
        has_acls = False
        allowed = False
        for pattern in self._patterns_for(rtype, name):
            has_acls = True
            for entry in self._acls[pattern]:
                result = _entry_result(entry, principal, host, op)
                if result == PermissionType.DENY:
                    return False
                if result == PermissionType.ALLOW:
                    allowed = True
        if allowed:
            return True
        return not has_acls and self.allow_if_no_acl

    def _patterns_for(self, rtype: ResourceType, name: str) -> list[ResourcePattern]:
        """Patterns that apply to a literal resource: itself, ``*``, and matching prefixes."""
        found = []
        for p in self._acls:
            if p.resource_type != rtype:
                continue
            if p.pattern_type == PatternType.LITERAL:
                if p.name == name or p.name == WILDCARD:
                    found.append(p)
            elif p.pattern_type == PatternType.PREFIXED and name.startswith(p.name):
                found.append(p)
        return found

    def authorized_operations(
        self, principal: str, host: str, rtype: ResourceType, name: str
    ) -> int:
        """AuthHelper.authorizedOperations: a bit per allowed supported operation's code."""
        bits = 0
        for op in SUPPORTED_OPERATIONS[rtype]:
            if self.authorize(principal, host, op, rtype, name):
                bits |= 1 << int(op)
        return bits

    def authorize_by_resource_type(
        self, principal: str, host: str, op: AclOperation, rtype: ResourceType
    ) -> bool:
        """Authorizer.authorizeByResourceType: may ``op`` be done on some resource of the type
        (an allow not dominated by a deny); used by InitProducerId for idempotent producers."""
        if self.authorize(principal, host, op, rtype, "hardcode"):
            return True
        deny = {PatternType.LITERAL: set(), PatternType.PREFIXED: set()}
        allow = {PatternType.LITERAL: set(), PatternType.PREFIXED: set()}
        for b in self.bindings():
            e, p = b.entry, b.pattern
            if p.resource_type != rtype or e.host not in (host, WILDCARD):
                continue
            if e.principal not in (principal, WILDCARD_PRINCIPAL):
                continue
            if e.operation not in (op, AclOperation.ALL):
                continue
            if e.permission == PermissionType.DENY:
                if p.pattern_type == PatternType.LITERAL and p.name == WILDCARD:
                    return False
                deny[p.pattern_type].add(p.name)
            elif e.permission == PermissionType.ALLOW:
                if p.pattern_type == PatternType.LITERAL and p.name == WILDCARD:
                    return True
                allow[p.pattern_type].add(p.name)
        for ptype, names in allow.items():
            for name in names:
                if ptype == PatternType.LITERAL and name in deny[PatternType.LITERAL]:
                    continue
                if not any(name[:i] in deny[PatternType.PREFIXED] for i in range(1, len(name) + 1)):
                    return True
        return False


def authorizer_from_config(config: BrokerConfig) -> Authorizer | None:
    """None unless ``authorizer.class.name`` names one of Kafka's ACL authorizers."""
    if not config.values.get("authorizer.class.name"):
        return None
    return Authorizer(
        parse_super_users(config.values.get("super.users")),
        bool(config.values.get("allow.everyone.if.no.acl.found")),
    )
