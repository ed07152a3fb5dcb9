"""Config entities other than topics (users, clients): one store, two homes.

Kafka's ZooKeeper mode kept them under ``/config/<type>/<name>`` as
``{"version":1,"config":{...}}`` and announced every change with a
``/config/changes/config_change_<seq>`` notification (entity path ``users/alice``) so other
brokers reload. SCRAM credentials live there (``SCRAM-SHA-256`` -> ``salt=...``), as client
quotas will. A single node keeps the same entities in one JSON file next to its metadata.
Reads go to the store each time, so a change made through any broker is seen at once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, unquote

from pybroker.replication import zk_data as zd
from pybroker.replication.zk_client import ZkClient, ZkNodeExistsError, ZkNoNodeError
from pybroker.storage.fileio import write_atomic

USERS = "users"
CLIENTS = "clients"
IPS = "ips"
# Kafka's ConfigEntityName.DEFAULT: the znode of a default user/client quota, never sanitized.
DEFAULT = "<default>"
FILE_NAME = "pybroker-entity-configs.json"


class EntityConfigStore(Protocol):
    async def get(self, entity_type: str, name: str) -> dict[str, str]: ...

    async def set(self, entity_type: str, name: str, config: dict[str, str]) -> None:
        """Replace the entity's config; an empty config removes the entity."""

    async def list(self, entity_type: str) -> dict[str, dict[str, str]]: ...

    async def users_with_clients(self) -> list[str]:
        """Users (desanitized) that have ``users/<user>/clients`` children."""


def nested_type(user: str) -> str:
    """The entity type of a user's client-id entities: Kafka keeps user+client-id quotas at
    ``/config/users/<user>/clients/<client-id>``."""
    return f"{USERS}/{sanitize(user)}/{CLIENTS}"


class LocalEntityConfigs:
    """Single node: ``{"users": {"alice": {...}}, "clients": {...}}`` in the first log dir."""

    def __init__(self, log_dir: Path) -> None:
        self.path = Path(log_dir) / FILE_NAME
        self._data: dict[str, dict[str, dict[str, str]]] | None = None

    def _load(self) -> dict[str, dict[str, dict[str, str]]]:
        if self._data is None:
            try:
                self._data = json.loads(self.path.read_text())
            except FileNotFoundError:
                self._data = {}
        return self._data

    async def get(self, entity_type: str, name: str) -> dict[str, str]:
        return dict(self._load().get(entity_type, {}).get(name, {}))

    async def set(self, entity_type: str, name: str, config: dict[str, str]) -> None:
        data = self._load()
        entities = data.setdefault(entity_type, {})
        if config:
            entities[name] = dict(config)
        else:
            entities.pop(name, None)
        write_atomic(self.path, json.dumps(data, indent=1, sort_keys=True).encode())

    async def list(self, entity_type: str) -> dict[str, dict[str, str]]:
        return {k: dict(v) for k, v in self._load().get(entity_type, {}).items()}

    async def users_with_clients(self) -> list[str]:
        out = []
        for key, entities in self._load().items():
            parts = key.split("/")
            if len(parts) == 3 and parts[0] == USERS and parts[2] == CLIENTS and entities:
                out.append(desanitize(parts[1]))
        return sorted(out)


def sanitize(name: str) -> str:
    """Kafka's Sanitizer: a user or client id as a znode name (URL-encoded, ``*`` and
    space as %2A and %20), so ``CN=a,O=b`` or ``a/b`` fit in one path element.
    ``<default>`` stays as it is: that is the default entity's znode."""
    if name == DEFAULT:
        return name
    return quote(name, safe="").replace("~", "%7E").replace("*", "%2A")


def desanitize(name: str) -> str:
    return unquote(name)


def _path(entity_type: str, name: str) -> str:
    """``/config/<type>/<name>``; the type may be a nested ``users/<user>/clients``."""
    if "/" in entity_type:
        user_type, user, child = entity_type.split("/")
        parent = zd.config_entity_path(user_type, user)
        return f"{parent}/{zd.config_entity_path(child, sanitize(name))[len(zd.CONFIG_PATH) + 1 :]}"
    return zd.config_entity_path(entity_type, sanitize(name))


class ZkEntityConfigs:
    """Cluster mode: Kafka's ZooKeeper layout (AdminZkClient.changeConfigs)."""

    def __init__(self, client: ZkClient) -> None:
        self.client = client

    async def get(self, entity_type: str, name: str) -> dict[str, str]:
        path = _path(entity_type, name)
        got = await self.client.get_or_none(path)
        return zd.decode_entity_config(got[0], path) if got else {}

    async def set(self, entity_type: str, name: str, config: dict[str, str]) -> None:
        path = _path(entity_type, name)
        data = zd.encode_entity_config(config)
        try:
            await self.client.set(path, data)
        except ZkNoNodeError:
            await self.client.ensure_path(path.rsplit("/", 1)[0])
            try:
                await self.client.create(path, data)
            except ZkNodeExistsError:
                await self.client.set(path, data)
        await self.client.ensure_path(zd.CONFIG_CHANGES_PATH)
        await self.client.create(
            zd.config_change_path(),
            zd.encode_config_change(f"{entity_type}/{sanitize(name)}"),
            sequential=True,
        )

    async def list(self, entity_type: str) -> dict[str, dict[str, str]]:
        try:
            names = await self.client.get_children(f"{zd.CONFIG_PATH}/{entity_type}")
        except ZkNoNodeError:
            return {}
        out = {}
        for znode in sorted(names):
            name = desanitize(znode)
            config = await self.get(entity_type, name)
            if config:
                out[name] = config
        return out

    async def users_with_clients(self) -> list[str]:
        try:
            users = await self.client.get_children(f"{zd.CONFIG_PATH}/{USERS}")
        except ZkNoNodeError:
            return []
        out = []
        for user in sorted(users):
            try:
                if await self.client.get_children(f"{zd.CONFIG_PATH}/{USERS}/{user}/{CLIENTS}"):
                    out.append(desanitize(user))
            except ZkNoNodeError:
                continue
        return out
