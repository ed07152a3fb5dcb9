"""Importing this module registers every API handler with the registry."""

from pybroker.broker.handlers import (  # noqa: F401
    admin_configs,
    admin_topics,
    api_versions,
    fetch,
    list_offsets,
    metadata,
    produce,
)
