"""Authorizer-enabled twins: pybroker and Kafka 4.1 with the same ACLs, for ACL tests.

Both run with ``authorizer.class.name`` and deny by default. Clients on PLAINTEXT are
``User:ANONYMOUS`` on either broker, so ACL hosts tell them apart: connections from
``127.0.0.2`` (ADMIN_HOST) hold ALL on the cluster and on every topic, group and
transactional id (set-up and clean-up go through them), while connections from
``127.0.0.1`` get only what a test grants to host 127.0.0.1. Kafka's bootstrap ACLs are
created by its super user (kafka-acls over SASL PLAIN); pybroker's are written to its ACL
file before it starts, as an operator would seed them.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.broker import BrokerProcess
from tests.support.kafka_ref import REF_SUPER_USER, KafkaReference, run_tool, with_authorizer

ADMIN_HOST = "127.0.0.2"
CLIENT_HOST = "127.0.0.1"
ANONYMOUS = "User:ANONYMOUS"
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
COMMON = {
    "num.partitions": "1",
    "offsets.topic.num.partitions": "50",
    "group.initial.rebalance.delay.ms": "0",
}


def _seed_pybroker_acls(data_dir: Path) -> None:
    from pybroker.replication.acl_store import LocalAclStore
    from pybroker.replication.acls import (
        AccessControlEntry,
        AclBinding,
        AclOperation,
        PermissionType,
        ResourcePattern,
        ResourceType,
    )

    entry = AccessControlEntry(ANONYMOUS, ADMIN_HOST, AclOperation.ALL, PermissionType.ALLOW)
    patterns = [
        ResourcePattern(ResourceType.CLUSTER, "kafka-cluster"),
        ResourcePattern(ResourceType.TOPIC, "*"),
        ResourcePattern(ResourceType.GROUP, "*"),
        ResourcePattern(ResourceType.TRANSACTIONAL_ID, "*"),
    ]
    data_dir.mkdir(parents=True, exist_ok=True)
    LocalAclStore(data_dir).save([AclBinding(p, entry) for p in patterns])


def start_pybroker(data_dir: Path, **overrides: str) -> BrokerProcess:
    _seed_pybroker_acls(data_dir)
    return BrokerProcess(
        data_dir,
        config=Path(__file__).parents[1] / "differential" / "pybroker.properties",
        overrides={**COMMON, "authorizer.class.name": AUTHORIZER, **overrides},
    ).start()


def start_kafka(data_dir: Path) -> KafkaReference:
    ref = with_authorizer(KafkaReference(data_dir, overrides=dict(COMMON))).start()
    try:
        user, password = REF_SUPER_USER
        command_config = data_dir.parent / "admin-client.properties"
        command_config.write_text(
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n"
            "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule "
            f'required username="{user}" password="{password}";\n'
        )
        run_tool(
            "kafka-acls",
            "--bootstrap-server",
            f"127.0.0.1:{ref.internal_port}",  # type: ignore[attr-defined]
            "--command-config",
            str(command_config),
            "--add",
            "--allow-principal",
            ANONYMOUS,
            "--allow-host",
            ADMIN_HOST,
            "--operation",
            "All",
            "--cluster",
            "--topic",
            "*",
            "--group",
            "*",
            "--transactional-id",
            "*",
            timeout=120,
        ).check()
    except BaseException:
        ref.stop()
        raise
    return ref
