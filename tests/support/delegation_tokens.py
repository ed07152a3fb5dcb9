"""Test helpers for delegation tokens (KIP-48): requests, decoding, token logins.

Kafka answers ``-1`` in the timestamp fields of a refused token request, which kio's
datetime reader refuses ("Cannot parse negative timestamp"); ``token_request`` decodes the
responses with a copy of kio's class whose timestamps are plain int64 milliseconds.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import functools
from typing import Any

from kio.static.primitive import i64

from pybroker.protocol import scram
from tests.support.wire import KafkaWire, request_module, response_module

CREATE, RENEW, EXPIRE, DESCRIBE = 38, 39, 40, 41
_CLASS_NAMES = {
    CREATE: "CreateDelegationToken",
    RENEW: "RenewDelegationToken",
    EXPIRE: "ExpireDelegationToken",
    DESCRIBE: "DescribeDelegationToken",
}


@functools.cache
def int_timestamps(cls: type) -> type:
    """``cls`` with its datetime_i64 fields read as int64."""
    fields = []
    for f in dataclasses.fields(cls):
        meta, typ = dict(f.metadata), f.type
        if meta.get("kafka_type") == "datetime_i64":
            meta["kafka_type"], typ = "int64", i64
        fields.append((f.name, typ, dataclasses.field(metadata=meta)))
    keep = ("__type__", "__version__", "__flexible__", "__api_key__", "__header_schema__")
    return dataclasses.make_dataclass(
        cls.__name__,
        fields,
        namespace={k: getattr(cls, k) for k in keep},
        frozen=True,
        slots=True,
        kw_only=True,
    )


def response_class(api_key: int, version: int) -> type:
    name = _CLASS_NAMES[api_key] + "Response"
    return int_timestamps(getattr(response_module(api_key, version), name))


def build_request(api_key: int, version: int, **fields: Any) -> Any:
    from pybroker.protocol.codec import build

    module = request_module(api_key, version)
    return build(getattr(module, _CLASS_NAMES[api_key] + "Request"), **fields)


def token_request(w: KafkaWire, request: Any) -> Any:
    """Send a token API request; the response body with int timestamps."""
    cid = w.send(request)
    cls = response_class(int(type(request).__api_key__), int(type(request).__version__))
    return w.recv(cls, cid).body


def create(version: int = 3, owner: str | None = None, renewers: tuple[str, ...] = (), **kw: Any):
    otype, _, oname = (owner or "").partition(":")
    fields: dict[str, Any] = dict(
        owner_principal_type=otype or None,
        owner_principal_name=oname or None,
        renewers=[
            dict(principal_type=r.partition(":")[0], principal_name=r.partition(":")[2])
            for r in renewers
        ],
        max_lifetime=datetime.timedelta(milliseconds=kw.pop("max_lifetime_ms", -1)),
    )
    return build_request(CREATE, version, **fields)


def renew(hmac: bytes, period_ms: int = -1, version: int = 2) -> Any:
    return build_request(
        RENEW, version, hmac=hmac, renew_period=datetime.timedelta(milliseconds=period_ms)
    )


def expire(hmac: bytes, period_ms: int = -1, version: int = 2) -> Any:
    return build_request(
        EXPIRE, version, hmac=hmac, expiry_time_period=datetime.timedelta(milliseconds=period_ms)
    )


def describe(owners: list[str] | None = None, version: int = 3) -> Any:
    value = (
        None
        if owners is None
        else [
            dict(principal_type=o.partition(":")[0], principal_name=o.partition(":")[2])
            for o in owners
        ]
    )
    return build_request(DESCRIBE, version, owners=value)


def scram_login(w: KafkaWire, mechanism: str, user: str, password: str, token: bool = False) -> Any:
    """SaslHandshake v1 + SaslAuthenticate v2 (twice): the last SaslAuthenticate response."""
    w.request(request_module(17, 1).SaslHandshakeRequest(mechanism=mechanism))
    client = scram.ScramClient(mechanism, user, password, {"tokenauth": "true"} if token else None)
    auth = request_module(36, 2).SaslAuthenticateRequest
    first = w.request(auth(auth_bytes=client.first()))
    if first.error_code != 0:
        return first
    return w.request(auth(auth_bytes=client.final(bytes(first.auth_bytes))))


def token_login(w: KafkaWire, token_id: str, hmac: bytes, mechanism: str = "SCRAM-SHA-256") -> Any:
    return scram_login(w, mechanism, token_id, base64.b64encode(hmac).decode(), token=True)


def add_scram_user(port: int, name: str, password: str, mechanism: str = "SCRAM-SHA-256") -> None:
    """AlterUserScramCredentials over ``port`` (PLAINTEXT), as kafka-configs does."""
    import secrets

    salt = secrets.token_bytes(16)
    req = request_module(51, 0).AlterUserScramCredentialsRequest
    from pybroker.protocol.codec import build

    with KafkaWire(port=port) as w:
        resp = w.request(
            build(
                req,
                deletions=[],
                upsertions=[
                    dict(
                        name=name,
                        mechanism=scram.MECHANISMS[mechanism][3],
                        iterations=4096,
                        salt=salt,
                        salted_password=scram.salted_password(mechanism, password, salt, 4096),
                    )
                ],
            )
        )
    assert [r.error_code for r in resp.results] == [0], resp
