"""Importing this module registers every API handler with the registry."""

from pybroker.broker.handlers import (  # noqa: F401
    admin_configs,
    admin_topics,
    api_versions,
    consumer_groups,
    delete_records,
    fetch,
    groups,
    list_offsets,
    metadata,
    offset_for_leader_epoch,
    offsets,
    produce,
    txn,
)
