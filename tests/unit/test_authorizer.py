"""The authorizer's decisions (Kafka's StandardAuthorizer rules) and the ACL encodings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pybroker.broker.security.authorizer import Authorizer, parse_super_users
from pybroker.config.broker_config import BrokerConfig, ConfigError
from pybroker.replication.acl_store import (
    LocalAclStore,
    change_node,
    decode_entries,
    encode_entries,
    resource_path,
)
from pybroker.replication.acls import (
    AccessControlEntry,
    AclBinding,
    AclBindingFilter,
    AclOperation,
    PatternType,
    PermissionType,
    ResourcePattern,
    ResourceType,
)

ALICE, BOB = "User:alice", "User:bob"
HOST = "10.0.0.1"
Op, Rt = AclOperation, ResourceType


def acl(
    name: str,
    op: AclOperation,
    *,
    rtype: ResourceType = Rt.TOPIC,
    principal: str = ALICE,
    host: str = "*",
    deny: bool = False,
    prefixed: bool = False,
) -> AclBinding:
    return AclBinding(
        ResourcePattern(rtype, name, PatternType.PREFIXED if prefixed else PatternType.LITERAL),
        AccessControlEntry(
            principal, host, op, PermissionType.DENY if deny else PermissionType.ALLOW
        ),
    )


def authz(*bindings: AclBinding, allow_if_no_acl: bool = False, supers: str = "") -> Authorizer:
    a = Authorizer(parse_super_users(supers), allow_if_no_acl)
    a.replace(bindings)
    return a


def test_no_acl_denies_unless_allow_everyone() -> None:
    assert not authz().authorize(ALICE, HOST, Op.READ, Rt.TOPIC, "t")
    assert authz(allow_if_no_acl=True).authorize(ALICE, HOST, Op.READ, Rt.TOPIC, "t")
    # An ACL for someone else on the resource means "there are ACLs": default no longer applies.
    other = acl("t", Op.READ, principal=BOB)
    assert not authz(other, allow_if_no_acl=True).authorize(ALICE, HOST, Op.READ, Rt.TOPIC, "t")


def test_literal_wildcard_and_prefix_match() -> None:
    a = authz(acl("orders", Op.READ), acl("*", Op.WRITE), acl("pay-", Op.DELETE, prefixed=True))
    assert a.authorize(ALICE, HOST, Op.READ, Rt.TOPIC, "orders")
    assert not a.authorize(ALICE, HOST, Op.READ, Rt.TOPIC, "orders2")
    assert a.authorize(ALICE, HOST, Op.WRITE, Rt.TOPIC, "anything")
    assert a.authorize(ALICE, HOST, Op.DELETE, Rt.TOPIC, "pay-eu")
    assert not a.authorize(ALICE, HOST, Op.DELETE, Rt.TOPIC, "pa")
    assert not a.authorize(ALICE, HOST, Op.READ, Rt.GROUP, "orders")


def test_deny_beats_allow_and_implications_are_allow_only() -> None:
    a = authz(acl("t", Op.ALL), acl("t", Op.WRITE, deny=True))
    assert a.authorize(ALICE, HOST, Op.READ, Rt.TOPIC, "t")
    assert not a.authorize(ALICE, HOST, Op.WRITE, Rt.TOPIC, "t")
    # READ implies DESCRIBE; a DENY of READ does not deny DESCRIBE.
    b = authz(acl("t", Op.READ), acl("u", Op.DESCRIBE), acl("u", Op.READ, deny=True))
    assert b.authorize(ALICE, HOST, Op.DESCRIBE, Rt.TOPIC, "t")
    assert b.authorize(ALICE, HOST, Op.DESCRIBE, Rt.TOPIC, "u")
    c = authz(acl("t", Op.ALTER_CONFIGS))
    assert c.authorize(ALICE, HOST, Op.DESCRIBE_CONFIGS, Rt.TOPIC, "t")
    assert not c.authorize(ALICE, HOST, Op.DESCRIBE, Rt.TOPIC, "t")
    d = authz(acl("*", Op.ALL, deny=True), acl("t", Op.READ))
    assert not d.authorize(ALICE, HOST, Op.READ, Rt.TOPIC, "t")


def test_host_principal_wildcard_and_super_users() -> None:
    a = authz(acl("t", Op.READ, host="10.0.0.2"), acl("u", Op.READ, principal="User:*"))
    assert not a.authorize(ALICE, HOST, Op.READ, Rt.TOPIC, "t")
    assert a.authorize(ALICE, "10.0.0.2", Op.READ, Rt.TOPIC, "t")
    assert a.authorize(BOB, HOST, Op.READ, Rt.TOPIC, "u")
    s = authz(acl("t", Op.ALL, deny=True, principal=BOB), supers="User:x; User:bob")
    assert s.authorize(BOB, HOST, Op.WRITE, Rt.TOPIC, "t")


def test_authorized_operations_bitfield() -> None:
    a = authz(acl("t", Op.READ), acl("t", Op.ALTER_CONFIGS))
    bits = a.authorized_operations(ALICE, HOST, Rt.TOPIC, "t")
    assert bits == (1 << Op.READ) | (1 << Op.DESCRIBE) | (1 << Op.ALTER_CONFIGS) | (
        1 << Op.DESCRIBE_CONFIGS
    )


def test_authorize_by_resource_type() -> None:
    assert authz(acl("p-", Op.WRITE, prefixed=True)).authorize_by_resource_type(
        ALICE, HOST, Op.WRITE, Rt.TOPIC
    )
    dominated = authz(acl("p-x", Op.WRITE), acl("p-", Op.WRITE, deny=True, prefixed=True))
    assert not dominated.authorize_by_resource_type(ALICE, HOST, Op.WRITE, Rt.TOPIC)
    assert not authz().authorize_by_resource_type(ALICE, HOST, Op.WRITE, Rt.TOPIC)


def test_filters_match_as_kafka() -> None:
    bindings = [acl("orders", Op.READ), acl("ord", Op.READ, prefixed=True), acl("*", Op.WRITE)]

    def names(**kw: object) -> list[str]:
        fields = dict(
            resource_type=Rt.TOPIC,
            name="orders",
            pattern_type=PatternType.MATCH,
            principal=None,
            host=None,
            operation=Op.ANY,
            permission=PermissionType.ANY,
        )
        fields.update(kw)
        f = AclBindingFilter(**fields)  # type: ignore[arg-type]
        return sorted(b.pattern.name for b in bindings if f.matches(b))

    assert names() == ["*", "ord", "orders"]
    assert names(pattern_type=PatternType.ANY) == ["orders"]
    assert names(pattern_type=PatternType.PREFIXED, name=None) == ["ord"]
    assert names(operation=Op.WRITE) == ["*"]
    assert names(principal=BOB) == []


def test_zookeeper_encoding_is_kafkas() -> None:
    entry = AccessControlEntry(ALICE, "*", Op.CLUSTER_ACTION, PermissionType.ALLOW)
    raw = encode_entries([entry])
    assert json.loads(raw) == {
        "version": 1,
        "acls": [
            {
                "principal": ALICE,
                "permissionType": "Allow",
                "operation": "ClusterAction",
                "host": "*",
            }
        ],
    }
    assert decode_entries(raw) == {entry}
    lit = ResourcePattern(Rt.TRANSACTIONAL_ID, "tx")
    pre = ResourcePattern(Rt.TOPIC, "p-", PatternType.PREFIXED)
    assert resource_path(lit) == "/kafka-acl/TransactionalId/tx"
    assert resource_path(pre) == "/kafka-acl-extended/prefixed/Topic/p-"
    assert change_node(lit) == ("/kafka-acl-changes/acl_changes_", b"TRANSACTIONAL_ID:tx")
    path, data = change_node(pre)
    assert path == "/kafka-acl-extended-changes/acl_changes_"
    assert json.loads(data) == {
        "version": 1,
        "resourceType": "TOPIC",
        "name": "p-",
        "patternType": "PREFIXED",
    }


def test_local_store_round_trip(tmp_path: Path) -> None:
    store = LocalAclStore(tmp_path)
    assert store.load() == []
    bindings = [acl("t", Op.READ), acl("p-", Op.WRITE, prefixed=True, deny=True, host=HOST)]
    store.save(bindings)
    assert sorted(store.load()) == sorted(bindings)


def test_authorizer_class_names() -> None:
    for name in (
        "kafka.security.authorizer.AclAuthorizer",
        "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    ):
        assert (
            BrokerConfig.from_properties({"authorizer.class.name": name}).values[
                "authorizer.class.name"
            ]
            == name
        )
    with pytest.raises(ConfigError, match="authorizer.class.name"):
        BrokerConfig.from_properties({"authorizer.class.name": "com.example.MyAuthorizer"})
