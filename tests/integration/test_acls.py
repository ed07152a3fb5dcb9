"""ACLs end to end: a stock admin client manages them, a stock producer meets them; super
users; ACLs survive a restart; in a cluster they live in ZooKeeper, Kafka's layout, and
every broker applies what any broker was told."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)
from kazoo.client import KazooClient

from pybroker.replication.acl_store import LocalAclStore
from pybroker.replication.acls import AccessControlEntry, PermissionType, ResourcePattern
from pybroker.replication.acls import AclBinding as Binding
from pybroker.replication.acls import AclOperation as Op
from pybroker.replication.acls import ResourceType as Rt
from tests.support.authz import AUTHORIZER
from tests.support.authz_pairs import DESCRIBE_ACLS, creation
from tests.support.broker import BrokerProcess
from tests.support.cluster import Cluster
from tests.support.differential import request_for
from tests.support.wire import KafkaWire
from tests.support.zookeeper import ZooKeeperProcess

ANON = "User:ANONYMOUS"


def _produce(bootstrap: str, topic: str, **extra: Any) -> KafkaError | None:
    """One message, flushed; the delivery error (None when acknowledged)."""
    outcome: list[KafkaError | None] = []
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "message.timeout.ms": 10_000,
            "retries": 0,
            **extra,
        }
    )
    producer.produce(topic, b"v", on_delivery=lambda err, _msg: outcome.append(err))
    producer.flush(20)
    assert outcome, "no delivery report within 20s"
    return outcome[0]


def _describe_all() -> Any:
    return request_for(
        DESCRIBE_ACLS,
        3,
        resource_type_filter=1,
        resource_name_filter=None,
        pattern_type_filter=1,
        principal_filter=None,
        host_filter=None,
        operation=1,
        permission_type=1,
    )


def test_stock_admin_manages_acls_and_producer_meets_them(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    # The operator's seed: this client may administer the cluster (and create topics).
    everything = AccessControlEntry(ANON, "*", Op.ALL, PermissionType.ALLOW)
    LocalAclStore(data).save([Binding(ResourcePattern(Rt.CLUSTER, "kafka-cluster"), everything)])
    broker = BrokerProcess(data, overrides={"authorizer.class.name": AUTHORIZER}).start()
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        write = AclBinding(
            ResourceType.TOPIC,
            "acl-orders",
            ResourcePatternType.LITERAL,
            ANON,
            "*",
            AclOperation.WRITE,
            AclPermissionType.ALLOW,
        )
        err = _produce(broker.bootstrap, "acl-orders")
        assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err

        for fut in admin.create_acls([write]).values():
            fut.result(timeout=15)
        any_topic = AclBindingFilter(
            ResourceType.TOPIC,
            None,
            ResourcePatternType.ANY,
            None,
            None,
            AclOperation.ANY,
            AclPermissionType.ANY,
        )
        described = admin.describe_acls(any_topic).result(timeout=15)
        assert described == [write]
        # Metadata auto-creation needs CREATE: the seed's cluster ALL gives it.
        assert _produce(broker.bootstrap, "acl-orders") is None
        idempotent = {"enable.idempotence": True, "retries": 3}
        assert _produce(broker.bootstrap, "acl-orders", **idempotent) is None

        deleted = admin.delete_acls([any_topic])
        (result,) = [fut.result(timeout=15) for fut in deleted.values()]
        assert result == [write]
        assert admin.describe_acls(any_topic).result(timeout=15) == []
        err = _produce(broker.bootstrap, "acl-orders")
        assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err

        # ACLs are metadata: they survive a restart.
        for fut in admin.create_acls([write]).values():
            fut.result(timeout=15)
        broker.restart()
        with KafkaWire(port=broker.port) as conn:
            kept = conn.request(_describe_all())
        names = {(r.resource_type, r.resource_name) for r in kept.resources}
        assert names == {(4, "kafka-cluster"), (2, "acl-orders")}
        assert _produce(broker.bootstrap, "acl-orders") is None
    finally:
        broker.stop()


def test_super_users_pass_without_acls(tmp_path: Path) -> None:
    supers = {"authorizer.class.name": AUTHORIZER, "super.users": f"User:admin;{ANON}"}
    broker = BrokerProcess(tmp_path / "a" / "data", overrides=supers).start()
    try:
        assert _produce(broker.bootstrap, "acl-super") is None
    finally:
        broker.stop()
    others = {"authorizer.class.name": AUTHORIZER, "super.users": "User:admin"}
    broker = BrokerProcess(tmp_path / "b" / "data", overrides=others).start()
    try:
        err = _produce(broker.bootstrap, "acl-super")
        assert err is not None and err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, err
    finally:
        broker.stop()


def _wait(check: Any, what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not seen within {timeout}s")
        time.sleep(0.1)


def test_cluster_acls_live_in_zookeeper(tmp_path: Path, zookeeper: ZooKeeperProcess) -> None:
    # allow.everyone.if.no.acl.found: the brokers' own (ANONYMOUS) traffic and the first
    # CreateAcls need no ACL; only the topic the test protects has any.
    overrides = {
        "authorizer.class.name": "kafka.security.authorizer.AclAuthorizer",
        "allow.everyone.if.no.acl.found": "true",
        "offsets.topic.replication.factor": "2",
        "transaction.state.log.replication.factor": "2",
    }
    cluster = Cluster(tmp_path, size=2, overrides=overrides, zookeeper=zookeeper).start()
    try:
        b1, b2 = cluster.brokers[1], cluster.brokers[2]
        deny = creation("topic", "secret", "ALL", deny=True, host="*")
        with KafkaWire(port=b1.port) as c1, KafkaWire(port=b2.port) as c2:
            created = c1.request(request_for(30, 3, creations=[deny]))
            assert created.results[0].error_code == 0, created

            def seen_on_2() -> bool:
                return any(
                    r.resource_name == "secret" for r in c2.request(_describe_all()).resources
                )

            _wait(seen_on_2, "the ACL on broker 2")
            meta = c2.request(
                request_for(3, 12, topics=[{"name": "secret"}], allow_auto_topic_creation=True)
            )
            assert meta.topics[0].error_code == 29  # TOPIC_AUTHORIZATION_FAILED

            zk = KazooClient(hosts=zookeeper.connect)
            zk.start(timeout=15)
            try:
                raw, _ = zk.get("/kafka-acl/Topic/secret")
                assert json.loads(raw) == {
                    "version": 1,
                    "acls": [
                        {
                            "principal": ANON,
                            "permissionType": "Deny",
                            "operation": "All",
                            "host": "*",
                        }
                    ],
                }
                changes = zk.get_children("/kafka-acl-changes")
                assert any(c.startswith("acl_changes_") for c in changes)
            finally:
                zk.stop()
                zk.close()

            flt = {
                "resource_type_filter": 2,
                "resource_name_filter": "secret",
                "pattern_type_filter": 3,
                "principal_filter": None,
                "host_filter": None,
                "operation": 1,
                "permission_type": 1,
            }
            deleted = c2.request(request_for(31, 3, filters=[flt]))
            assert len(deleted.filter_results[0].matching_acls) == 1

            def gone_on_1() -> bool:
                return not any(
                    r.resource_name == "secret" for r in c1.request(_describe_all()).resources
                )

            _wait(gone_on_1, "the deletion on broker 1")
    finally:
        cluster.stop()
