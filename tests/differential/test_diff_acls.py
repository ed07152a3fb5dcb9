"""DescribeAcls (29), CreateAcls (30), DeleteAcls (31) against Kafka 4.1, every version.

Without an authorizer both answer SECURITY_DISABLED; with one (StandardAuthorizer on Kafka,
pybroker's with the same class name) a client without cluster rights is refused, and the
admin host creates, describes (every filter shape) and deletes ACLs, with Kafka's
validation of bad bindings and filters.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.differential.helpers import Cases, versions
from tests.support.authz import ADMIN_HOST, ANONYMOUS, CLIENT_HOST, start_kafka, start_pybroker
from tests.support.authz_pairs import (
    ANY,
    CREATE_ACLS,
    DELETE_ACLS,
    DESCRIBE_ACLS,
    LITERAL,
    MATCH,
    PREFIXED,
    creation,
    describe_all,
    revoke_client,
    sync,
)
from tests.support.broker import BrokerProcess
from tests.support.differential import CLOSED, DifferentialPair, request_for
from tests.support.kafka_ref import KafkaReference

UNORDERED = ("resources", "acls", "matching_acls")
KEEP = ("host",)  # an ACL's host is part of the ACL
ADMIN_ONLY = ("error_message",)  # Kafka's cluster-denial message names its request object


@pytest.fixture(scope="module")
def authz_brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    base: Path = tmp_path_factory.mktemp("acls")
    kafka = start_kafka(base / "kafka" / "data")
    try:
        ours = start_pybroker(base / "ours" / "data")
    except BaseException:
        kafka.stop()
        raise
    try:
        yield ours.port, kafka.port
    finally:
        ours.stop()
        kafka.stop()


def _filter(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "resource_type_filter": ANY,
        "resource_name_filter": None,
        "pattern_type_filter": ANY,
        "principal_filter": None,
        "host_filter": None,
        "operation": 1,
        "permission_type": 1,
    }
    base.update(kw)
    return base


def _describe(v: int, **kw: object) -> object:
    return request_for(DESCRIBE_ACLS, v, **_filter(**kw))


def test_acl_apis_without_authorizer(
    differential_brokers: tuple[BrokerProcess, KafkaReference],
) -> None:
    ours, kafka = differential_brokers
    with DifferentialPair(ours.port, kafka.port) as pair:
        cases = Cases(pair)
        for v in versions(pair, DESCRIBE_ACLS):
            cases.compare(f"describe-acls-disabled-v{v}", _describe(v))
        for v in versions(pair, CREATE_ACLS):
            request = request_for(CREATE_ACLS, v, creations=[creation("topic", "t", "READ")])
            cases.compare(f"create-acls-disabled-v{v}", request)
        for v in versions(pair, DELETE_ACLS):
            request = request_for(DELETE_ACLS, v, filters=[_filter()])
            cases.compare(f"delete-acls-disabled-v{v}", request)
        cases.check()
        answer = pair.ours.request(_describe(3))
        assert answer.error_code.name == "security_disabled"


def test_acl_apis_refuse_without_cluster_rights(authz_brokers: tuple[int, int]) -> None:
    with DifferentialPair(*authz_brokers, source=CLIENT_HOST) as client:
        cases = Cases(client)
        for v in versions(client, DESCRIBE_ACLS):
            cases.compare(f"describe-acls-denied-v{v}", _describe(v), volatile=ADMIN_ONLY)
        for v in versions(client, CREATE_ACLS):
            request = request_for(CREATE_ACLS, v, creations=[creation("topic", "t", "READ")] * 2)
            cases.compare(f"create-acls-denied-v{v}", request, volatile=ADMIN_ONLY)
        for v in versions(client, DELETE_ACLS):
            request = request_for(DELETE_ACLS, v, filters=[_filter(), _filter()])
            cases.compare(f"delete-acls-denied-v{v}", request, volatile=ADMIN_ONLY)
        cases.check()
        denied = client.ours.request(_describe(3))
        assert denied.error_code.name == "cluster_authorization_failed"


def test_acl_lifecycle_every_version(authz_brokers: tuple[int, int]) -> None:
    with DifferentialPair(*authz_brokers, source=ADMIN_HOST) as admin:
        cases = Cases(admin)
        for v in versions(admin, CREATE_ACLS):
            revoke_client(admin)
            bindings = [
                creation("topic", f"orders-{v}", "READ"),
                creation("topic", f"orders-{v}", "WRITE", deny=True, host="*"),
                creation("topic", "pay-", "DESCRIBE", pattern=PREFIXED),
                creation("group", "*", "READ", principal="User:*"),
                creation("cluster", "kafka-cluster", "IDEMPOTENT_WRITE"),
                creation("transactional_id", "tx-", "WRITE", pattern=PREFIXED),
                creation("topic", f"orders-{v}", "READ"),  # a duplicate: accepted, stored once
            ]
            cases.compare(
                f"create-acls-v{v}", request_for(CREATE_ACLS, v, creations=bindings), keep=KEEP
            )
            sync(admin)
            invalid = [
                creation("cluster", "other-cluster", "ALTER"),
                dict(creation("topic", "", "READ")),
                dict(creation("topic", "x", "READ"), resource_type=99),
                dict(creation("topic", "x", "READ"), operation=99),
                dict(creation("topic", "x", "READ"), principal="alice"),
                creation("topic", "fine", "ALTER", host="bad host"),
            ]
            cases.compare(
                f"create-acls-invalid-v{v}", request_for(CREATE_ACLS, v, creations=invalid)
            )
            for label, field, code in [
                ("resource-any", "resource_type", ANY),
                ("pattern-match", "resource_pattern_type", MATCH),
                ("pattern-any", "resource_pattern_type", ANY),
                ("operation-any", "operation", 1),
                ("permission-any", "permission_type", 1),
            ]:
                # One such creation fails the whole request, the valid one beside it too.
                bad = [dict(creation("topic", "x", "READ"), **{field: code})]
                request = request_for(
                    CREATE_ACLS, v, creations=[*bad, creation("topic", "y", "READ")]
                )
                cases.compare(f"create-acls-{label}-v{v}", request)
            sync(admin)
            unknown = dict(creation("topic", "x", "READ"), operation=0)
            outcome = cases.compare(
                f"create-acls-unknown-code-v{v}", request_for(CREATE_ACLS, v, creations=[unknown])
            )
            assert outcome.identical
        for v in versions(admin, DESCRIBE_ACLS):
            for label, kw in [
                ("all", {}),
                ("topic-any", dict(resource_type_filter=2)),
                ("literal", dict(pattern_type_filter=LITERAL)),
                ("prefixed", dict(pattern_type_filter=PREFIXED)),
                (
                    "match",
                    dict(
                        resource_type_filter=2,
                        resource_name_filter="pay-eu",
                        pattern_type_filter=MATCH,
                    ),
                ),
                (
                    "match-literal",
                    dict(
                        resource_type_filter=3, resource_name_filter="g1", pattern_type_filter=MATCH
                    ),
                ),
                ("name", dict(resource_name_filter="orders-3")),
                ("principal", dict(principal_filter="User:*")),
                ("host", dict(host_filter="*")),
                ("operation", dict(operation=4)),
                ("deny", dict(permission_type=2)),
                ("none", dict(principal_filter="User:nobody")),
                ("unknown-code", dict(operation=0)),
            ]:
                cases.compare(
                    f"describe-acls-{label}-v{v}",
                    _describe(v, **kw),
                    unordered=UNORDERED,
                    keep=KEEP,
                )
        for v in versions(admin, DELETE_ACLS):
            request = request_for(
                DELETE_ACLS,
                v,
                filters=[
                    _filter(
                        resource_type_filter=2,
                        resource_name_filter=f"orders-{v}",
                        pattern_type_filter=LITERAL,
                    ),
                    _filter(pattern_type_filter=PREFIXED, host_filter=CLIENT_HOST),
                    _filter(principal_filter="User:nobody"),
                    _filter(resource_type_filter=99),
                    _filter(operation=99),
                ],
            )
            cases.compare(f"delete-acls-v{v}", request, unordered=UNORDERED, keep=KEEP)
            sync(admin)
            outcome = cases.compare(
                f"delete-acls-unknown-code-v{v}",
                request_for(DELETE_ACLS, v, filters=[_filter(permission_type=0)]),
            )
            assert outcome.identical
        cases.check()
        # What is left is the same on both, and real: the group wildcard for User:*.
        remaining = admin.ours.request(describe_all())
        names = {(r.resource_type, r.resource_name) for r in remaining.resources}
        assert (3, "*") in names and all(
            a.principal in (ANONYMOUS, "User:*") for r in remaining.resources for a in r.acls
        )
        assert admin.ours.request(describe_all()) is not CLOSED
