"""Client quota entities over the config-entity store, in Kafka's ZooKeeper layout.

A quota entity is a set of (type, name) pairs, ``user`` and/or ``client-id`` (or ``ip``),
a None name meaning the default. They live where Kafka's ZooKeeper mode kept them:
``/config/users/<user>``, ``/config/clients/<client-id>``,
``/config/users/<user>/clients/<client-id>``, ``/config/ips/<ip>``, defaults as
``<default>``, values as strings. User entities share their znode with SCRAM credentials,
so every write here is read-modify-write of the quota keys only.
"""

from __future__ import annotations

from pybroker.replication.entity_configs import (
    CLIENTS,
    DEFAULT,
    IPS,
    USERS,
    EntityConfigStore,
    nested_type,
)

USER = "user"
CLIENT_ID = "client-id"
IP = "ip"
ENTITY_TYPES = (USER, CLIENT_ID, IP)

# QuotaConfig's keys and ConfigDef types (long / double / int).
USER_CLIENT_KEYS = {
    "producer_byte_rate": "long",
    "consumer_byte_rate": "long",
    "request_percentage": "double",
    "controller_mutation_rate": "double",
}
IP_KEYS = {"connection_creation_rate": "int"}
ALL_KEYS = {**USER_CLIENT_KEYS, **IP_KEYS}

Entity = frozenset[tuple[str, str | None]]


def entity(**parts: str | None) -> Entity:
    """``entity(user="alice", client_id=None)`` -> {("user","alice"),("client-id",None)}."""
    return frozenset((k.replace("_", "-"), v) for k, v in parts.items())


def _stored(name: str | None) -> str:
    return DEFAULT if name is None else name


def _name(stored: str) -> str | None:
    return None if stored == DEFAULT else stored


def location(ent: Entity) -> tuple[str, str]:
    """(entity type, name) in the config-entity store for a validated entity."""
    parts = dict(ent)
    if IP in parts:
        return IPS, _stored(parts[IP])
    if USER in parts and CLIENT_ID in parts:
        return nested_type(_stored(parts[USER])), _stored(parts[CLIENT_ID])
    if USER in parts:
        return USERS, _stored(parts[USER])
    return CLIENTS, _stored(parts[CLIENT_ID])


def _quota_values(config: dict[str, str]) -> dict[str, float]:
    out = {}
    for key, value in config.items():
        if key in ALL_KEYS:
            try:
                out[key] = float(value)
            except ValueError:
                continue
    return out


async def load_all(store: EntityConfigStore) -> dict[Entity, dict[str, float]]:
    """Every entity with at least one quota."""
    found: dict[Entity, dict[str, float]] = {}

    def add(ent: Entity, config: dict[str, str]) -> None:
        values = _quota_values(config)
        if values:
            found[ent] = values

    for name, config in (await store.list(USERS)).items():
        add(frozenset({(USER, _name(name))}), config)
    for name, config in (await store.list(CLIENTS)).items():
        add(frozenset({(CLIENT_ID, _name(name))}), config)
    for name, config in (await store.list(IPS)).items():
        add(frozenset({(IP, _name(name))}), config)
    for user in await store.users_with_clients():
        for client, config in (await store.list(nested_type(user))).items():
            add(frozenset({(USER, _name(user)), (CLIENT_ID, _name(client))}), config)
    return found


def _format(key: str, value: float) -> str:
    """As kafka-configs writes them: integral types without a fraction."""
    if ALL_KEYS.get(key) in ("long", "int"):
        return str(int(value))
    return repr(float(value))


async def apply(store: EntityConfigStore, ent: Entity, changes: dict[str, float | None]) -> None:
    """Set (value) or remove (None) quota keys of one entity, leaving other keys alone."""
    entity_type, name = location(ent)
    config = await store.get(entity_type, name)
    updated = dict(config)
    for key, value in changes.items():
        if value is None:
            updated.pop(key, None)
        else:
            updated[key] = _format(key, value)
    if updated != config:
        await store.set(entity_type, name, updated)
