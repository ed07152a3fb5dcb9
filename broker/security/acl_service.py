"""The broker's ACLs: the authorizer's contents kept in step with their store.

A single node saves every change to its local file; in a cluster, changes go to
ZooKeeper and every broker (the writer included) reloads when the change notification
appears, as Kafka's AclAuthorizer does. The writer also applies its change at once, so a
client that created an ACL is authorized by it on its next request to the same broker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from pybroker.broker.security.authorizer import Authorizer
from pybroker.replication.acl_store import KEEP_CHANGES, LocalAclStore, ZkAclStore
from pybroker.replication.acls import AclBinding, AclBindingFilter

log = logging.getLogger(__name__)


class AclService:
    def __init__(self, authorizer: Authorizer, store: LocalAclStore | ZkAclStore) -> None:
        self.authorizer = authorizer
        self.store = store
        self._reload: asyncio.Task[None] | None = None
        self._again = False
        self._changes: set[str] = set()  # notification znodes seen, for purging

    async def start(self) -> None:
        if isinstance(self.store, ZkAclStore):
            await self.store.create_paths()
            self.authorizer.replace(await self.store.load())
            self.store.watch(self._schedule_reload)
        else:
            self.authorizer.replace(self.store.load())
        log.info("Authorizer started with %d ACL(s)", len(self.authorizer.bindings()))

    def _schedule_reload(self, changes: list[str]) -> None:
        self._changes.update(changes)
        if self._reload is not None and not self._reload.done():
            self._again = True
            return
        self._reload = asyncio.get_running_loop().create_task(self._reload_loop())

    async def _reload_loop(self) -> None:
        assert isinstance(self.store, ZkAclStore)
        while True:
            self._again = False
            try:
                self.authorizer.replace(await self.store.load())
                if len(self._changes) > 2 * KEEP_CHANGES:
                    changes, self._changes = sorted(self._changes), set()
                    await self.store.purge_changes(changes)
            except Exception:
                log.exception("Reloading ACLs from ZooKeeper failed")
            if not self._again:
                return

    async def create(self, bindings: Iterable[AclBinding]) -> None:
        new = list(bindings)
        await self._write(new, [])

    async def delete(self, filters: list[AclBindingFilter]) -> list[list[AclBinding]]:
        """The bindings each filter matched (all of them removed)."""
        matched = [self.authorizer.matching(f) for f in filters]
        await self._write([], [b for m in matched for b in m])
        return matched

    async def _write(self, add: list[AclBinding], remove: list[AclBinding]) -> None:
        current = set(self.authorizer.bindings())
        updated = (current | set(add)) - set(remove)
        if updated == current:
            return
        if isinstance(self.store, ZkAclStore):
            await self.store.change(add, remove)
        else:
            await asyncio.get_running_loop().run_in_executor(None, self.store.save, updated)
        self.authorizer.replace(updated)

    def close(self) -> None:
        if isinstance(self.store, ZkAclStore):
            self.store.close()
        if self._reload is not None:
            self._reload.cancel()
            self._reload = None
