"""Importing this module registers every API handler with the registry."""

from pybroker.broker.handlers import (  # noqa: F401
    admin_configs,
    admin_topics,
    alter_replica_log_dirs,
    api_versions,
    consumer_groups,
    delete_records,
    describe_topic_partitions,
    elect_leaders,
    fetch,
    groups,
    list_offsets,
    log_dirs,
    metadata,
    offset_for_leader_epoch,
    offsets,
    produce,
    reassignments,
    txn,
)
