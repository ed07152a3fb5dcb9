"""ACL bindings as Kafka models them: resource patterns, entries, filters and their codes.

Pure data (no I/O): the metadata stores persist these, the authorizer matches against them,
the ACL APIs (29-31) translate them to and from the wire. Codes and names are Kafka's
(org.apache.kafka.common.acl / .resource), so a binding reads the same in ZooKeeper, in a
response and in ``kafka-acls.sh`` output.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

WILDCARD = "*"  # ResourcePattern.WILDCARD_RESOURCE and AclEntry.WildcardHost
WILDCARD_PRINCIPAL = "User:*"
CLUSTER_NAME = "kafka-cluster"


class ResourceType(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5
    DELEGATION_TOKEN = 6
    USER = 7


class PatternType(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    MATCH = 2
    LITERAL = 3
    PREFIXED = 4


class AclOperation(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12
    CREATE_TOKENS = 13
    DESCRIBE_TOKENS = 14


class PermissionType(enum.IntEnum):
    UNKNOWN = 0
    ANY = 1
    DENY = 2
    ALLOW = 3


def _enum_or_unknown(cls: type[enum.IntEnum], code: int) -> enum.IntEnum:
    """Kafka's ``fromCode``: a code it does not know is UNKNOWN."""
    try:
        return cls(code)
    except ValueError:
        return cls(0)


def resource_type(code: int) -> ResourceType:
    return _enum_or_unknown(ResourceType, code)  # type: ignore[return-value]


def pattern_type(code: int) -> PatternType:
    return _enum_or_unknown(PatternType, code)  # type: ignore[return-value]


def operation(code: int) -> AclOperation:
    return _enum_or_unknown(AclOperation, code)  # type: ignore[return-value]


def permission_type(code: int) -> PermissionType:
    return _enum_or_unknown(PermissionType, code)  # type: ignore[return-value]


# AclEntry.supportedOperations: what each concrete resource type can be granted; the
# authorized-operations bitfields of Metadata, DescribeGroups and DescribeCluster list these.
SUPPORTED_OPERATIONS: dict[ResourceType, tuple[AclOperation, ...]] = {
    ResourceType.TOPIC: (
        AclOperation.READ,
        AclOperation.WRITE,
        AclOperation.CREATE,
        AclOperation.DESCRIBE,
        AclOperation.DELETE,
        AclOperation.ALTER,
        AclOperation.DESCRIBE_CONFIGS,
        AclOperation.ALTER_CONFIGS,
    ),
    ResourceType.GROUP: (
        AclOperation.READ,
        AclOperation.DESCRIBE,
        AclOperation.DELETE,
        AclOperation.DESCRIBE_CONFIGS,
        AclOperation.ALTER_CONFIGS,
    ),
    ResourceType.CLUSTER: (
        AclOperation.CREATE,
        AclOperation.CLUSTER_ACTION,
        AclOperation.DESCRIBE_CONFIGS,
        AclOperation.ALTER_CONFIGS,
        AclOperation.IDEMPOTENT_WRITE,
        AclOperation.ALTER,
        AclOperation.DESCRIBE,
    ),
    ResourceType.TRANSACTIONAL_ID: (AclOperation.DESCRIBE, AclOperation.WRITE),
    ResourceType.DELEGATION_TOKEN: (AclOperation.DESCRIBE,),
    ResourceType.USER: (AclOperation.CREATE_TOKENS, AclOperation.DESCRIBE_TOKENS),
}

# Names used in ZooKeeper's ACL JSON (SecurityUtils.resourceTypeName / operationName).
RESOURCE_TYPE_NAMES = {
    ResourceType.TOPIC: "Topic",
    ResourceType.GROUP: "Group",
    ResourceType.CLUSTER: "Cluster",
    ResourceType.TRANSACTIONAL_ID: "TransactionalId",
    ResourceType.DELEGATION_TOKEN: "DelegationToken",
    ResourceType.USER: "User",
}


def camel_name(member: enum.Enum) -> str:
    """READ -> Read, CLUSTER_ACTION -> ClusterAction (Kafka's SecurityUtils.toPascalCase)."""
    return "".join(part.capitalize() for part in member.name.split("_"))


def from_camel(cls: type[enum.IntEnum], name: str) -> enum.IntEnum:
    for member in cls:
        if camel_name(member).lower() == name.replace("_", "").lower():
            return member
    raise ValueError(f"unknown {cls.__name__} {name!r}")


@dataclass(frozen=True, slots=True, order=True)
class ResourcePattern:
    resource_type: ResourceType
    name: str
    pattern_type: PatternType = PatternType.LITERAL


@dataclass(frozen=True, slots=True, order=True)
class AccessControlEntry:
    principal: str
    host: str
    operation: AclOperation
    permission: PermissionType


@dataclass(frozen=True, slots=True, order=True)
class AclBinding:
    pattern: ResourcePattern
    entry: AccessControlEntry


@dataclass(frozen=True, slots=True)
class AclBindingFilter:
    """AclBindingFilter: None name/principal/host match anything; ANY codes match all."""

    resource_type: ResourceType
    name: str | None
    pattern_type: PatternType
    principal: str | None
    host: str | None
    operation: AclOperation
    permission: PermissionType

    def is_unknown(self) -> bool:
        """Any field Kafka's fromCode could not name (code 0 or a code from the future)."""
        codes = (self.resource_type, self.pattern_type, self.operation, self.permission)
        return any(int(c) == 0 for c in codes)

    def matches(self, binding: AclBinding) -> bool:
        return self._pattern_matches(binding.pattern) and self._entry_matches(binding.entry)

    def _pattern_matches(self, p: ResourcePattern) -> bool:
        """ResourcePatternFilter.matches (MATCH: literal, wildcard and prefixes that apply)."""
        if self.resource_type not in (ResourceType.ANY, p.resource_type):
            return False
        if self.pattern_type not in (PatternType.ANY, PatternType.MATCH, p.pattern_type):
            return False
        if self.name is None:
            return True
        if self.pattern_type in (PatternType.ANY, p.pattern_type):
            return self.name == p.name
        if p.pattern_type == PatternType.LITERAL:
            return self.name == p.name or p.name == WILDCARD
        return self.name.startswith(p.name)

    def _entry_matches(self, e: AccessControlEntry) -> bool:
        if self.principal is not None and self.principal != e.principal:
            return False
        if self.host is not None and self.host != e.host:
            return False
        if self.operation not in (AclOperation.ANY, e.operation):
            return False
        return self.permission in (PermissionType.ANY, e.permission)


def valid_principal(principal: str) -> bool:
    """SecurityUtils.parseKafkaPrincipal: ``Type:name`` with both parts present."""
    kind, sep, name = principal.partition(":")
    return bool(sep and kind and name)
