"""Create/Renew/Expire/DescribeDelegationToken (38-41) vs Kafka 4.1.

On the shared PLAINTEXT pair every version is refused (DELEGATION_TOKEN_REQUEST_NOT_ALLOWED:
tokens need an authenticated channel). On a pair started here with SASL_PLAINTEXT (SCRAM)
listeners and ``delegation.token.secret.key`` set, the token life cycle and its error paths
run on both brokers as the same SCRAM users. Token ids, HMACs and absolute timestamps
differ from broker to broker: timestamps are compared as offsets (expiry and max from the
issue time, renewals from the request time, to the second).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pybroker.broker.delegation_tokens import create_hmac
from tests.differential.helpers import Cases
from tests.support import delegation_tokens as dt
from tests.support.broker import BrokerProcess, free_port
from tests.support.differential import CLOSED, record_behaviour, record_comparison
from tests.support.kafka_ref import KafkaReference
from tests.support.wire import ConnectionClosed, KafkaWire

SCRAM_JAAS = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
SECRET = "diff-token-secret"
USERS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}
MECH = "SCRAM-SHA-256"
TOKEN_FIELDS = ("token_id", "hmac")
VERSIONS = {dt.CREATE: (1, 2, 3), dt.RENEW: (1, 2), dt.EXPIRE: (1, 2), dt.DESCRIBE: (1, 2, 3)}


def requests_at(version: int, key: int) -> Any:
    if key == dt.CREATE:
        return dt.create(version, renewers=("User:bob",))
    if key == dt.RENEW:
        return dt.renew(b"\x01" * 64, version=version)
    if key == dt.EXPIRE:
        return dt.expire(b"\x01" * 64, version=version)
    return dt.describe(None, version)


def test_token_requests_on_plaintext(
    differential_brokers: tuple[BrokerProcess, KafkaReference],
) -> None:
    ours, kafka = differential_brokers
    cases = Cases(None)  # type: ignore[arg-type]  # answers decoded here
    for key, versions in VERSIONS.items():
        for v in versions:
            request = requests_at(v, key)
            answers = []
            for port in (ours.port, kafka.port):
                with KafkaWire(port=port) as w:
                    answers.append(dt.token_request(w, request))
            cases.add(record_comparison(f"token-plaintext-{key}-v{v}", request, *answers))
    cases.check()


# ------------------------------------------------------------------ on SASL listeners


class TokenPair:
    def __init__(self, sasl: dict[str, int], plain: dict[str, int]) -> None:
        self.sasl = sasl
        self.plain = plain


def settings(ports: dict[str, int], secret: str | None) -> dict[str, str]:
    out = {
        "listeners": ",".join(f"{n}://127.0.0.1:{p}" for n, p in ports.items()),
        "sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512",
        "listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config": SCRAM_JAAS,
        "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config": SCRAM_JAAS,
    }
    if secret is not None:
        out["delegation.token.secret.key"] = secret
    return out


@pytest.fixture(scope="module")
def token_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenPair]:
    yield from start_pair(tmp_path_factory.mktemp("diff-tokens"), SECRET)


def start_pair(root: Path, secret: str | None) -> Iterator[TokenPair]:
    ours = BrokerProcess(root / "ours" / "data")
    ours_sasl = free_port()
    ours_settings = settings({"PLAINTEXT": ours.port, "SASL_PLAINTEXT": ours_sasl}, secret)
    ours.overrides.update({**ours_settings, "advertised.listeners": ours_settings["listeners"]})
    kafka = KafkaReference(root / "kafka" / "data")
    kafka_sasl = free_port()
    kafka.overrides = {
        **settings(
            {
                "PLAINTEXT": kafka.port,
                "CONTROLLER": kafka.controller_port,
                "SASL_PLAINTEXT": kafka_sasl,
            },
            secret,
        ),
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{kafka.port},"
        f"SASL_PLAINTEXT://127.0.0.1:{kafka_sasl}",
        "listener.security.protocol.map": (
            "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT"
        ),
    }
    ours.start()
    try:
        kafka.start()
        try:
            pair = TokenPair(
                {"ours": ours_sasl, "kafka": kafka_sasl},
                {"ours": ours.port, "kafka": kafka.port},
            )
            for port in pair.plain.values():
                for user, password in USERS.items():
                    dt.add_scram_user(port, user, password, MECH)
            yield pair
        finally:
            kafka.stop()
    finally:
        ours.stop()


def offsets(plain: Any, base: int | None = None) -> Any:
    """Timestamps as whole seconds from the issue time (or ``base``); -1 and 0 stay."""

    def rel(value: Any, origin: int) -> Any:
        if not isinstance(value, int) or value <= 0:
            return value
        return round((value - origin) / 1000)

    if isinstance(plain, list):
        return [offsets(p, base) for p in plain]
    if not isinstance(plain, dict):
        return plain
    out = {k: offsets(v, base) for k, v in plain.items()}
    issue = plain.get("issue_timestamp")
    origin = base if base is not None else issue
    if isinstance(origin, int) and origin > 0:
        for key in ("issue_timestamp", "expiry_timestamp", "max_timestamp"):
            if key in plain:
                out[key] = rel(plain[key], origin)
    return out


class Side:
    """One broker's connections as each user, and its tokens by label."""

    def __init__(self, sasl_port: int) -> None:
        self.port = sasl_port
        self.conns: dict[str, KafkaWire] = {}
        self.tokens: dict[str, Any] = {}

    def as_user(self, user: str) -> KafkaWire:
        if user not in self.conns:
            w = KafkaWire(port=self.port)
            assert dt.scram_login(w, MECH, user, USERS[user]).error_code == 0
            self.conns[user] = w
        return self.conns[user]

    def close(self) -> None:
        for w in self.conns.values():
            w.close()


def test_token_life_cycle(token_pair: TokenPair) -> None:
    cases = Cases(None)  # type: ignore[arg-type]
    sides = {name: Side(port) for name, port in token_pair.sasl.items()}

    def both(case: str, user: str, make: Any, relative_to_now: bool = False) -> list[Any]:
        """Send ``make(side)`` as ``user`` on both brokers and record the comparison."""
        got, sent = {}, None
        for name, side in sides.items():
            sent = make(side)
            start = int(time.time() * 1000)
            got[name] = dt.token_request(side.as_user(user), sent)
            base = start if relative_to_now else None
            got[name + "-base"] = base
        bases = (got["ours-base"], got["kafka-base"])
        vals = iter(bases)

        def transform(plain: Any) -> Any:
            return offsets(plain, next(vals))

        cases.add(
            record_comparison(
                case,
                sent,
                got["ours"],
                got["kafka"],
                volatile=TOKEN_FIELDS,
                unordered=("tokens", "renewers"),
                transform=transform if relative_to_now else offsets,
            )
        )
        return [got["ours"], got["kafka"]]

    try:
        for v in VERSIONS[dt.CREATE]:
            made = both(
                f"token-create-v{v}", "alice", lambda s, v=v: dt.create(v, renewers=("User:bob",))
            )
            for (name, side), resp in zip(sides.items(), made, strict=True):
                assert resp.error_code == 0, (name, resp)
                # Both HMACs are HmacSHA512(secret, token id); ids are 22-char base64url UUIDs.
                assert resp.hmac == create_hmac(resp.token_id, SECRET), name
                assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", resp.token_id), name
                side.tokens[f"v{v}"] = resp
        both(
            "token-create-capped-lifetime",
            "alice",
            lambda s: dt.create(max_lifetime_ms=3_600_000),
        )
        both("token-create-for-other-owner", "alice", lambda s: dt.create(owner="User:carol"))
        both(
            "token-create-group-renewer",
            "alice",
            lambda s: dt.create(renewers=("Group:g",)),
        )
        # Kafka's brokers learn tokens from the metadata log: give them a moment.
        time.sleep(1.5)
        for v in VERSIONS[dt.DESCRIBE]:
            both(f"token-describe-all-v{v}", "alice", lambda s, v=v: dt.describe(None, v))
        both("token-describe-empty-owners", "alice", lambda s: dt.describe([]))
        both("token-describe-owner-alice", "bob", lambda s: dt.describe(["User:alice"]))
        both("token-describe-owner-nobody", "alice", lambda s: dt.describe(["User:nobody"]))
        both("token-describe-as-carol", "carol", lambda s: dt.describe(None))
        for v in VERSIONS[dt.RENEW]:
            both(
                f"token-renew-by-renewer-v{v}",
                "bob",
                lambda s, v=v: dt.renew(s.tokens["v3"].hmac, 60_000, v),
                relative_to_now=True,
            )
        both(
            "token-renew-default-period",
            "alice",
            lambda s: dt.renew(s.tokens["v3"].hmac, -1),
            relative_to_now=True,
        )
        both("token-renew-by-stranger", "carol", lambda s: dt.renew(s.tokens["v3"].hmac, 60_000))
        both("token-renew-unknown-hmac", "alice", lambda s: dt.renew(b"\x02" * 64))
        for v in VERSIONS[dt.EXPIRE]:
            both(
                f"token-expire-later-v{v}",
                "alice",
                lambda s, v=v: dt.expire(s.tokens["v2"].hmac, 120_000, v),
                relative_to_now=True,
            )
        both("token-expire-by-stranger", "carol", lambda s: dt.expire(s.tokens["v2"].hmac, 1))
        both("token-expire-unknown-hmac", "bob", lambda s: dt.expire(b"\x03" * 64))
        token_logins(cases, sides, "token-login-live", "v1")
        token_connection_requests(cases, sides)
        both(
            "token-expire-now",
            "bob",
            lambda s: dt.expire(s.tokens["v1"].hmac, -1),
            relative_to_now=True,
        )
        both("token-renew-after-expire", "alice", lambda s: dt.renew(s.tokens["v1"].hmac, 1000))
        token_logins(cases, sides, "token-login-expired", "v1")
        time.sleep(1.5)
        both("token-describe-after-expire", "alice", lambda s: dt.describe(["User:alice"]))
    finally:
        for side in sides.values():
            side.close()
    cases.check()


def token_logins(cases: Cases, sides: dict[str, Side], case: str, label: str) -> None:
    """SCRAM with tokenauth=true: each broker's own token, both mechanisms."""
    for mech in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
        seen = {}
        for name, side in sides.items():
            token = side.tokens[label]
            with KafkaWire(port=side.port) as w:
                try:
                    resp = dt.token_login(w, token.token_id, token.hmac, mech)
                    seen[name] = (int(resp.error_code), resp.error_message)
                except ConnectionClosed:
                    seen[name] = CLOSED
        cases.add(record_behaviour(f"{case}-{mech.lower()}", 36, 2, seen["ours"], seen["kafka"]))


def token_connection_requests(cases: Cases, sides: dict[str, Side]) -> None:
    """A connection authenticated by a token may not touch tokens."""
    requests = {
        "create": dt.create(),
        "renew": None,
        "expire": None,
        "describe": dt.describe(None),
    }
    for label, fixed in requests.items():
        got = {}
        sent = fixed
        for name, side in sides.items():
            token = side.tokens["v3"]
            if fixed is None:
                sent = (dt.renew if label == "renew" else dt.expire)(token.hmac, 1000)
            with KafkaWire(port=side.port) as w:
                assert dt.token_login(w, token.token_id, token.hmac).error_code == 0
                got[name] = dt.token_request(w, sent)
        cases.add(
            record_comparison(
                f"token-from-token-connection-{label}",
                sent,
                got["ours"],
                got["kafka"],
                volatile=TOKEN_FIELDS,
            )
        )


def test_tokens_disabled_without_a_secret_key(tmp_path_factory: pytest.TempPathFactory) -> None:
    """SASL channels, no ``delegation.token.secret.key``: every API says AUTH_DISABLED."""
    cases = Cases(None)  # type: ignore[arg-type]
    for pair in start_pair(tmp_path_factory.mktemp("diff-tokens-off"), None):
        sides = {name: Side(port) for name, port in pair.sasl.items()}
        try:
            for key, versions in VERSIONS.items():
                for v in versions:
                    request = requests_at(v, key)
                    got = [dt.token_request(s.as_user("alice"), request) for s in sides.values()]
                    cases.add(record_comparison(f"token-disabled-{key}-v{v}", request, *got))
        finally:
            for side in sides.values():
                side.close()
    cases.check()
