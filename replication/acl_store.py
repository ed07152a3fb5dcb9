"""Where ACLs live: a JSON file beside the single node's metadata, or ZooKeeper in a cluster.

ZooKeeper uses Kafka's own layout (kafka.zk.ZkData, AclAuthorizer), so ``zkCli`` and Kafka's
tools read it: each resource pattern is one znode holding its entries,
``/kafka-acl/<Type>/<name>`` for literal patterns and
``/kafka-acl-extended/prefixed/<Type>/<name>`` for prefixed ones, with JSON
``{"version":1,"acls":[{"principal","permissionType","operation","host"}]}``. Each change
also creates a sequential ``acl_changes_`` node under ``/kafka-acl-changes`` (literal:
``TOPIC:name``) or ``/kafka-acl-extended-changes`` (JSON event); every broker watches both
and reloads, so an ACL created through one broker applies on all of them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pybroker.replication.acls import (
    RESOURCE_TYPE_NAMES,
    AccessControlEntry,
    AclBinding,
    AclOperation,
    PatternType,
    PermissionType,
    ResourcePattern,
    camel_name,
    from_camel,
)
from pybroker.replication.zk_client import (
    Subscription,
    ZkBadVersionError,
    ZkClient,
    ZkNodeExistsError,
    ZkNoNodeError,
    ZkNotEmptyError,
)
from pybroker.storage.fileio import write_atomic

log = logging.getLogger(__name__)

FILE_NAME = "pybroker-acls.json"
LITERAL_ACL_PATH = "/kafka-acl"
EXTENDED_ACL_PATH = "/kafka-acl-extended"
LITERAL_CHANGES_PATH = "/kafka-acl-changes"
EXTENDED_CHANGES_PATH = "/kafka-acl-extended-changes"
CHANGE_PREFIX = "acl_changes_"
KEEP_CHANGES = 100
_TYPE_BY_NAME = {name: rtype for rtype, name in RESOURCE_TYPE_NAMES.items()}


# ---------------------------------------------------------------------------- encoding
def encode_entries(entries: Iterable[AccessControlEntry]) -> bytes:
    """AclEntry.toJsonCompatibleMap: Kafka's ACL znode JSON."""
    acls = [
        {
            "principal": e.principal,
            "permissionType": camel_name(e.permission),
            "operation": camel_name(e.operation),
            "host": e.host,
        }
        for e in sorted(entries)
    ]
    return json.dumps({"version": 1, "acls": acls}, separators=(",", ":")).encode()


def decode_entries(data: bytes | None) -> set[AccessControlEntry]:
    if not data:
        return set()
    doc = json.loads(data)
    return {
        AccessControlEntry(
            a["principal"],
            a["host"],
            from_camel(AclOperation, a["operation"]),  # type: ignore[arg-type]
            from_camel(PermissionType, a["permissionType"]),  # type: ignore[arg-type]
        )
        for a in doc.get("acls", [])
    }


def resource_path(pattern: ResourcePattern) -> str:
    """ZkAclStore.path: literal under /kafka-acl, other patterns under /kafka-acl-extended."""
    type_name = RESOURCE_TYPE_NAMES[pattern.resource_type]
    if pattern.pattern_type == PatternType.LITERAL:
        return f"{LITERAL_ACL_PATH}/{type_name}/{pattern.name}"
    return f"{EXTENDED_ACL_PATH}/{pattern.pattern_type.name.lower()}/{type_name}/{pattern.name}"


def change_node(pattern: ResourcePattern) -> tuple[str, bytes]:
    """The notification Kafka writes for a changed resource: (path prefix, data)."""
    if pattern.pattern_type == PatternType.LITERAL:
        data = f"{pattern.resource_type.name}:{pattern.name}".encode()
        return f"{LITERAL_CHANGES_PATH}/{CHANGE_PREFIX}", data
    event = {
        "version": 1,
        "resourceType": pattern.resource_type.name,
        "name": pattern.name,
        "patternType": pattern.pattern_type.name,
    }
    return f"{EXTENDED_CHANGES_PATH}/{CHANGE_PREFIX}", json.dumps(event).encode()


def group_by_pattern(
    bindings: Iterable[AclBinding],
) -> dict[ResourcePattern, set[AccessControlEntry]]:
    out: dict[ResourcePattern, set[AccessControlEntry]] = {}
    for b in bindings:
        out.setdefault(b.pattern, set()).add(b.entry)
    return out


# ---------------------------------------------------------------------------- single node
class LocalAclStore:
    """All bindings in one JSON file, rewritten atomically on every change."""

    def __init__(self, log_dir: Path) -> None:
        self.path = Path(log_dir) / FILE_NAME

    def load(self) -> list[AclBinding]:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except ValueError as exc:
            raise RuntimeError(f"ACL file {self.path} is corrupt: {exc}") from exc
        out = []
        for r in doc.get("resources", []):
            pattern = ResourcePattern(
                _TYPE_BY_NAME[r["resourceType"]], r["name"], PatternType[r["patternType"]]
            )
            out += [AclBinding(pattern, e) for e in decode_entries(json.dumps(r).encode())]
        return out

    def save(self, bindings: Iterable[AclBinding]) -> None:
        resources: list[dict[str, Any]] = []
        for pattern, entries in sorted(group_by_pattern(bindings).items()):
            doc = json.loads(encode_entries(entries))
            doc.pop("version")
            doc.update(
                resourceType=RESOURCE_TYPE_NAMES[pattern.resource_type],
                name=pattern.name,
                patternType=pattern.pattern_type.name,
            )
            resources.append(doc)
        write_atomic(self.path, json.dumps({"version": 1, "resources": resources}).encode())


# ---------------------------------------------------------------------------- ZooKeeper
class ZkAclStore:
    """Kafka's ACL znodes; conditional read-modify-write per resource, then a notification."""

    def __init__(self, client: ZkClient) -> None:
        self.client = client
        self._subs: list[Subscription] = []

    async def create_paths(self) -> None:
        for path in (
            LITERAL_ACL_PATH,
            f"{EXTENDED_ACL_PATH}/prefixed",
            LITERAL_CHANGES_PATH,
            EXTENDED_CHANGES_PATH,
        ):
            await self.client.ensure_path(path)
        for name in RESOURCE_TYPE_NAMES.values():
            await self.client.ensure_path(f"{LITERAL_ACL_PATH}/{name}")
            await self.client.ensure_path(f"{EXTENDED_ACL_PATH}/prefixed/{name}")

    async def load(self) -> list[AclBinding]:
        out: list[AclBinding] = []
        roots = [(LITERAL_ACL_PATH, PatternType.LITERAL)]
        roots.append((f"{EXTENDED_ACL_PATH}/prefixed", PatternType.PREFIXED))
        for root, ptype in roots:
            for type_name in await self._children(root):
                rtype = _TYPE_BY_NAME.get(type_name)
                if rtype is None:
                    continue
                for name in await self._children(f"{root}/{type_name}"):
                    got = await self.client.get_or_none(f"{root}/{type_name}/{name}")
                    if got is None:
                        continue
                    pattern = ResourcePattern(rtype, name, ptype)
                    out += [AclBinding(pattern, e) for e in decode_entries(got[0])]
        return out

    async def _children(self, path: str) -> list[str]:
        try:
            return await self.client.get_children(path)
        except ZkNoNodeError:
            return []

    async def change(self, add: Iterable[AclBinding], remove: Iterable[AclBinding]) -> None:
        """Apply additions and removals resource by resource (compare-and-set on each)."""
        adds, removes = group_by_pattern(add), group_by_pattern(remove)
        for pattern in sorted(set(adds) | set(removes)):
            await self._update(pattern, adds.get(pattern, set()), removes.get(pattern, set()))
            prefix, data = change_node(pattern)
            await self.client.create(prefix, data, sequential=True)

    async def _update(
        self,
        pattern: ResourcePattern,
        add: set[AccessControlEntry],
        remove: set[AccessControlEntry],
    ) -> None:
        path = resource_path(pattern)
        while True:
            got = await self.client.get_or_none(path)
            current = decode_entries(got[0]) if got else set()
            wanted = (current | add) - remove
            try:
                if got is None:
                    if not wanted:
                        return
                    await self.client.ensure_path(path.rsplit("/", 1)[0])
                    await self.client.create(path, encode_entries(wanted))
                elif not wanted:
                    await self.client.delete(path, got[1].version)
                elif wanted != current:
                    await self.client.set(path, encode_entries(wanted), got[1].version)
                return
            except (ZkBadVersionError, ZkNodeExistsError, ZkNoNodeError, ZkNotEmptyError):
                continue  # another broker changed it: read again

    def watch(self, on_change: Callable[[list[str]], None]) -> None:
        """Call ``on_change(change paths)`` whenever any broker announces an ACL change."""
        for path in (LITERAL_CHANGES_PATH, EXTENDED_CHANGES_PATH):

            def changed(children: list[str] | None, path: str = path) -> None:
                on_change([f"{path}/{c}" for c in children or ()])

            self._subs.append(self.client.watch_children(path, changed))

    async def purge_changes(self, paths: list[str]) -> None:
        """Drop all but the newest KEEP_CHANGES notifications. Every broker reloads the
        whole tree on any change (and at start), so older ones tell nobody anything; Kafka
        bounds them by age (15 minutes) instead."""
        by_dir: dict[str, list[str]] = {}
        for path in paths:
            by_dir.setdefault(path.rsplit("/", 1)[0], []).append(path)
        for same_dir in by_dir.values():
            for path in sorted(same_dir)[:-KEEP_CHANGES]:
                try:
                    await self.client.delete(path)
                except ZkNoNodeError:
                    pass  # another broker purged it first

    def close(self) -> None:
        for sub in self._subs:
            sub.cancel()
        self._subs.clear()
