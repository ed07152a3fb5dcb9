"""Delegation token rules (broker.delegation_tokens) over the local store, and SCRAM with
``tokenauth=true`` against the credentials a token yields."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import uuid
from pathlib import Path

import pytest

from pybroker.broker.delegation_tokens import DelegationTokenManager, create_hmac, new_token_id
from pybroker.broker.sasl_mechanisms import SaslFailure, ScramServer
from pybroker.protocol import scram
from pybroker.protocol.errors import ErrorCode
from pybroker.replication.token_store import LocalTokenStore, TokenInfo

DAY, WEEK = 86_400_000, 7 * 86_400_000


def manager(tmp_path: Path, secret: str | None = "k") -> DelegationTokenManager:
    return DelegationTokenManager(secret, WEEK, DAY, LocalTokenStore(tmp_path))


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_token_ids_are_kafka_uuids() -> None:
    ids = {new_token_id() for _ in range(500)}
    assert len(ids) == 500
    for tid in ids:
        assert len(tid) == 22 and not tid.startswith("-")
        raw = base64.urlsafe_b64decode(tid + "==")
        assert uuid.UUID(bytes=raw).version == 4


def test_hmac_is_hmac_sha512_of_the_id() -> None:
    mac = create_hmac("tok", "secret-key")
    assert len(mac) == 64
    assert mac == hmac.new(b"secret-key", b"tok", hashlib.sha512).digest()
    assert mac != create_hmac("tok", "other-key")


def test_create_caps_lifetimes_and_stores_kafka_json(tmp_path: Path) -> None:
    m = manager(tmp_path)
    token, mac = run(m.create("User:alice", "User:admin", ["User:bob"], -1))
    assert token.max_ms - token.issue_ms == WEEK
    assert token.expiry_ms - token.issue_ms == DAY
    assert mac == create_hmac(token.token_id, "k")
    short, _ = run(m.create("User:alice", "User:alice", [], 1000))
    assert short.max_ms - short.issue_ms == 1000 == short.expiry_ms - short.issue_ms
    longer, _ = run(m.create("User:alice", "User:alice", [], 10 * WEEK))
    assert longer.max_ms - longer.issue_ms == WEEK
    stored = json.loads((tmp_path / "pybroker-delegation-tokens.json").read_text())
    assert stored[token.token_id] == {
        "version": 3,
        "owner": "User%3Aalice",
        "tokenRequester": "User%3Aadmin",
        "renewers": ["User%3Abob"],
        "issueTimestamp": token.issue_ms,
        "maxTimestamp": token.max_ms,
        "expiryTimestamp": token.expiry_ms,
        "tokenId": token.token_id,
    }
    assert TokenInfo.from_json(stored[token.token_id]) == token


def test_renew_and_expire_rules(tmp_path: Path) -> None:
    m = manager(tmp_path)
    token, mac = run(m.create("User:alice", "User:admin", ["User:bob"], -1))
    # Only the owner and the renewers (not the requester) may renew or expire.
    assert run(m.renew("User:admin", mac, 1000)) == (ErrorCode.delegation_token_owner_mismatch, 0)
    assert run(m.renew("User:x", b"nope", 1000)) == (ErrorCode.delegation_token_not_found, 0)
    code, expiry = run(m.renew("User:bob", mac, 5000))
    assert code == ErrorCode.none and 0 < expiry - token.issue_ms < 5000 + 1000
    code, expiry = run(m.renew("User:alice", mac, 10 * DAY))  # capped at the default
    assert code == ErrorCode.none and expiry - token.issue_ms <= DAY + 1000
    code, expiry = run(m.expire("User:alice", mac, 0))  # expires now: then EXPIRED
    assert code == ErrorCode.none
    run(asyncio.sleep(0.01))
    assert run(m.renew("User:alice", mac, 1000)) == (ErrorCode.delegation_token_expired, 0)
    other, other_mac = run(m.create("User:alice", "User:alice", [], -1))
    code, _ = run(m.expire("User:bob", other_mac, -1))
    assert code == ErrorCode.delegation_token_owner_mismatch
    code, _ = run(m.expire("User:alice", other_mac, -1))  # negative: removed at once
    assert code == ErrorCode.none
    assert run(m.store.get(other.token_id)) is None  # type: ignore[union-attr]
    # The expiry check removes the expired token too.
    run(m.expire_tokens())
    assert run(m.store.list()) == []  # type: ignore[union-attr]


def test_disabled_without_secret(tmp_path: Path) -> None:
    m = manager(tmp_path, secret=None)
    assert not m.enabled
    assert run(m.renew("User:a", b"x", 1)) == (ErrorCode.delegation_token_auth_disabled, 0)
    assert run(m.expire("User:a", b"x", 1)) == (ErrorCode.delegation_token_auth_disabled, 0)
    assert run(m.credential("any", "SCRAM-SHA-256")) is None


def test_describe_filter(tmp_path: Path) -> None:
    m = manager(tmp_path)
    a, _ = run(m.create("User:alice", "User:alice", ["User:bob"], -1))
    c, _ = run(m.create("User:carol", "User:admin", [], -1))

    def seen(principal: str, owners: list[str] | None, tok: bool = False, usr: bool = False):
        got = run(m.describe(principal, owners, lambda _t: tok, lambda _o: usr))
        return {t.token_id for t, _ in got}

    assert seen("User:alice", None) == {a.token_id}
    assert seen("User:bob", None) == {a.token_id}  # renewer
    assert seen("User:admin", None) == {c.token_id}  # requester (KIP-373)
    assert seen("User:eve", None) == set()
    assert seen("User:eve", None, tok=True) == {a.token_id, c.token_id}  # DESCRIBE on token
    assert seen("User:eve", None, usr=True) == {a.token_id, c.token_id}  # DESCRIBE_TOKENS
    assert seen("User:eve", ["User:carol"], usr=True) == {c.token_id}
    assert seen("User:alice", ["User:bob"]) == {a.token_id}  # owners match renewers too


def scram_auth(server: ScramServer, client: scram.ScramClient) -> bytes:
    first = run(server.evaluate(client.first()))
    return run(server.evaluate(client.final(first)))


def test_scram_tokenauth(tmp_path: Path) -> None:
    m = manager(tmp_path)
    token, mac = run(m.create("User:alice", "User:alice", [], -1))
    password = base64.b64encode(mac).decode()

    async def no_users(name: str, mech: str) -> None:
        return None

    for mech in scram.MECHANISMS:
        server = ScramServer(mech, no_users, token_lookup=m.credential)
        client = scram.ScramClient(mech, token.token_id, password, {"tokenauth": "true"})
        client.verify_server_final(scram_auth(server, client))
        assert server.complete and server.username == "alice" and server.token_authenticated
        assert server.credential_expiry_ms == token.expiry_ms
        # Without the extension the token id is just an unknown user.
        plain = ScramServer(mech, no_users, token_lookup=m.credential)
        with pytest.raises(SaslFailure):
            scram_auth(plain, scram.ScramClient(mech, token.token_id, password))
        # A wrong HMAC fails.
        wrong = ScramServer(mech, no_users, token_lookup=m.credential)
        bad = scram.ScramClient(mech, token.token_id, "AAAA", {"tokenauth": "true"})
        with pytest.raises(SaslFailure):
            scram_auth(wrong, bad)
