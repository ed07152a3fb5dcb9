"""Where delegation tokens (KIP-48) live: the local metadata store or ZooKeeper.

Only the token's information is stored, never its HMAC: every broker recomputes the HMAC
from the shared ``delegation.token.secret.key``, as Kafka does. Cluster mode uses Kafka's
ZooKeeper layout (DelegationTokenManagerZk): ``/delegation_token/tokens/<tokenId>`` holds
``{"version":3,"owner":"User%3Aalice","tokenRequester":...,"renewers":[...],
"issueTimestamp":..,"maxTimestamp":..,"expiryTimestamp":..,"tokenId":".."}`` (principals
sanitized), and each change is announced by a ``/delegation_token/token_changes/
token_change_<seq>`` znode whose data is the token id. Reads go to the store every time, so
a token created through any broker authenticates on every broker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pybroker.replication.entity_configs import desanitize, sanitize
from pybroker.replication.zk_client import ZkClient, ZkNodeExistsError, ZkNoNodeError
from pybroker.storage.fileio import write_atomic

FILE_NAME = "pybroker-delegation-tokens.json"
TOKEN_ROOT = "/delegation_token"
TOKENS_PATH = f"{TOKEN_ROOT}/tokens"
TOKEN_CHANGES_PATH = f"{TOKEN_ROOT}/token_changes"
TOKEN_CHANGE_PREFIX = "token_change_"
VERSION = 3


@dataclass
class TokenInfo:
    """Kafka's TokenInformation; principals as ``Type:name`` strings."""

    token_id: str
    owner: str
    requester: str
    renewers: list[str] = field(default_factory=list)
    issue_ms: int = 0
    max_ms: int = 0
    expiry_ms: int = 0

    def owner_or_renewer(self, principal: str) -> bool:
        """TokenInformation.ownerOrRenewer (KIP-373: the requester counts too)."""
        return principal in (self.owner, self.requester) or principal in self.renewers

    def expired(self, now: int) -> bool:
        return self.max_ms < now or self.expiry_ms < now

    def to_json(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "owner": sanitize(self.owner),
            "tokenRequester": sanitize(self.requester),
            "renewers": [sanitize(r) for r in self.renewers],
            "issueTimestamp": self.issue_ms,
            "maxTimestamp": self.max_ms,
            "expiryTimestamp": self.expiry_ms,
            "tokenId": self.token_id,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> TokenInfo:
        version = int(obj["version"])
        if not 0 < version <= VERSION:
            raise ValueError(f"unsupported delegation token version {version}")
        owner = desanitize(obj["owner"])
        return cls(
            token_id=obj["tokenId"],
            owner=owner,
            requester=desanitize(obj["tokenRequester"]) if version >= 3 else owner,
            renewers=[desanitize(r) for r in obj["renewers"]],
            issue_ms=int(obj["issueTimestamp"]),
            max_ms=int(obj["maxTimestamp"]),
            expiry_ms=int(obj["expiryTimestamp"]),
        )


class TokenStore(Protocol):
    async def get(self, token_id: str) -> TokenInfo | None: ...

    async def list(self) -> list[TokenInfo]: ...

    async def put(self, token: TokenInfo) -> None: ...

    async def remove(self, token_id: str) -> None: ...


class LocalTokenStore:
    """Single node: ``{"<tokenId>": {Kafka's JSON}}`` in the first log dir."""

    def __init__(self, log_dir: Path) -> None:
        self.path = Path(log_dir) / FILE_NAME
        self._data: dict[str, dict[str, Any]] | None = None

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._data is None:
            try:
                self._data = json.loads(self.path.read_text())
            except FileNotFoundError:
                self._data = {}
        return self._data

    def _save(self) -> None:
        write_atomic(self.path, json.dumps(self._load(), indent=1, sort_keys=True).encode())

    async def get(self, token_id: str) -> TokenInfo | None:
        raw = self._load().get(token_id)
        return TokenInfo.from_json(raw) if raw else None

    async def list(self) -> list[TokenInfo]:
        return [TokenInfo.from_json(v) for v in self._load().values()]

    async def put(self, token: TokenInfo) -> None:
        self._load()[token.token_id] = token.to_json()
        self._save()

    async def remove(self, token_id: str) -> None:
        if self._load().pop(token_id, None) is not None:
            self._save()


class ZkTokenStore:
    """Cluster mode: Kafka's znodes, with a change notification per write."""

    def __init__(self, client: ZkClient) -> None:
        self.client = client

    async def get(self, token_id: str) -> TokenInfo | None:
        got = await self.client.get_or_none(f"{TOKENS_PATH}/{token_id}")
        if not got or not got[0]:
            return None
        return TokenInfo.from_json(json.loads(got[0]))

    async def list(self) -> list[TokenInfo]:
        try:
            ids = await self.client.get_children(TOKENS_PATH)
        except ZkNoNodeError:
            return []
        out = []
        for token_id in sorted(ids):
            token = await self.get(token_id)
            if token is not None:
                out.append(token)
        return out

    async def put(self, token: TokenInfo) -> None:
        path = f"{TOKENS_PATH}/{token.token_id}"
        data = json.dumps(token.to_json(), separators=(",", ":")).encode()
        try:
            await self.client.set(path, data)
        except ZkNoNodeError:
            await self.client.ensure_path(TOKENS_PATH)
            try:
                await self.client.create(path, data)
            except ZkNodeExistsError:
                await self.client.set(path, data)
        await self._notify(token.token_id)

    async def remove(self, token_id: str) -> None:
        try:
            await self.client.delete(f"{TOKENS_PATH}/{token_id}")
        except ZkNoNodeError:
            return
        await self._notify(token_id)

    async def _notify(self, token_id: str) -> None:
        await self.client.ensure_path(TOKEN_CHANGES_PATH)
        await self.client.create(
            f"{TOKEN_CHANGES_PATH}/{TOKEN_CHANGE_PREFIX}", token_id.encode(), sequential=True
        )
