"""Console login: who may look, checked against the broker's own SASL credentials.

A login is required when any listener uses SASL or an authorizer is configured. The
password is checked by the broker's SASL servers themselves (no second implementation):
PLAIN against each SASL listener's JAAS ``user_<name>`` table (``PlainServer``), SCRAM by
running a full in-memory exchange (``ScramClient`` against ``ScramServer``, which derives
the proof with the stored salt and iterations and compares it in constant time).

Sessions live in memory only: a random 32-byte token in an HttpOnly SameSite=Strict
cookie, stored by its SHA-256 (a lookup cannot leak a token's prefix through timing; the
digest is compared with ``hmac.compare_digest``), expiring SESSION_TTL_S after login. A
failed login answers after connection.failed.authentication.delay.ms, like a failed SASL
handshake.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from pybroker.broker.sasl_mechanisms import PlainServer, SaslFailure, ScramServer
from pybroker.protocol.scram import ScramClient, ScramError

COOKIE = "pybroker_console"
SESSION_TTL_S = 8 * 3600
MAX_SESSIONS = 1000  # the oldest goes first beyond this
MAX_CREDENTIAL_BYTES = 1024
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True, slots=True)
class Session:
    principal: str  # "User:alice"
    digest: bytes
    expires: float  # monotonic seconds


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("ascii", "replace")).digest()


class SessionStore:
    def __init__(
        self, ttl_s: float = SESSION_TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._sessions: dict[bytes, Session] = {}

    def create(self, principal: str) -> str:
        token = secrets.token_urlsafe(32)  # 32 random bytes
        digest = _digest(token)
        self._expire()
        while len(self._sessions) >= MAX_SESSIONS:
            del self._sessions[next(iter(self._sessions))]
        self._sessions[digest] = Session(principal, digest, self.clock() + self.ttl_s)
        return token

    def lookup(self, token: str | None) -> Session | None:
        if not token or len(token) > 128:
            return None
        digest = _digest(token)
        session = self._sessions.get(digest)
        if session is None or not hmac.compare_digest(session.digest, digest):
            return None
        if session.expires <= self.clock():
            del self._sessions[digest]
            return None
        return session

    def end(self, token: str | None) -> None:
        if token:
            self._sessions.pop(_digest(token), None)

    def _expire(self) -> None:
        now = self.clock()
        for digest in [d for d, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[digest]

    def __len__(self) -> int:
        return len(self._sessions)


def cookie_token(header: str | None) -> str | None:
    """The console cookie's value in a Cookie header (None if absent)."""
    if not header:
        return None
    for part in header.split(";"):
        name, eq, value = part.strip().partition("=")
        if eq and name == COOKIE:
            return value
    return None


def parse_form(body: bytes) -> dict[str, str] | None:
    """username/password of an x-www-form-urlencoded body (None when malformed)."""
    try:
        fields = parse_qs(
            body.decode("ascii"), keep_blank_values=True, strict_parsing=False, max_num_fields=8
        )
    except (UnicodeDecodeError, ValueError):
        return None
    out = {}
    for key in ("username", "password"):
        values = fields.get(key)
        if not values or len(values) != 1 or len(values[0]) > MAX_CREDENTIAL_BYTES:
            return None
        out[key] = values[0]
    return out


CredentialLookup = Callable[[str, str], Any]  # (user, mechanism) -> awaitable credential


class PasswordChecker:
    """Checks a user's password against PLAIN JAAS tables and SCRAM credentials."""

    def __init__(
        self,
        plain_users: Iterable[Mapping[str, str]],
        scram_lookup: CredentialLookup | None,
        scram_mechanisms: Iterable[str] = SCRAM_MECHANISMS,
    ) -> None:
        self.plain_users = [dict(u) for u in plain_users if u]
        self.scram_lookup = scram_lookup
        self.scram_mechanisms = tuple(scram_mechanisms)

    async def check(self, username: str, password: str) -> bool:
        if not username or not password:
            return False
        for users in self.plain_users:
            if await _plain_ok(users, username, password):
                return True
        if self.scram_lookup is None:
            return False
        for mechanism in self.scram_mechanisms:
            if await _scram_ok(mechanism, self.scram_lookup, username, password):
                return True
        return False


async def _plain_ok(users: Mapping[str, str], username: str, password: str) -> bool:
    server = PlainServer(users)
    try:
        await server.evaluate(f"\0{username}\0{password}".encode())
    except SaslFailure:
        return False
    return server.complete and server.username == username


async def _scram_ok(mechanism: str, lookup: CredentialLookup, username: str, password: str) -> bool:
    """A whole SCRAM exchange in memory: the server half is the broker's own."""
    server = ScramServer(mechanism, lookup)
    client = ScramClient(mechanism, username, password)
    try:
        server_first = await server.evaluate(client.first())
        # PBKDF2 (4096+ iterations) off the loop: it is the costly step of a login.
        client_final = await asyncio.get_running_loop().run_in_executor(
            None, client.final, server_first
        )
        server_final = await server.evaluate(client_final)
        client.verify_server_final(server_final)
    except (SaslFailure, ScramError, ValueError):
        return False
    return server.complete and server.username == username


def plain_tables(sasl_listeners: Mapping[str, Any]) -> list[dict[str, str]]:
    """The PLAIN users of every SASL listener's JAAS entry."""
    tables = []
    for settings in sasl_listeners.values():
        entry = settings.jaas.get("PLAIN")
        if entry is not None:
            tables.append(entry.plain_users())
    return tables
