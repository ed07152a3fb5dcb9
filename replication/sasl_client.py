"""This broker as a SASL client of another broker (replica fetchers, transaction markers).

Kafka's SaslClientAuthenticator with a 4.x peer: SaslHandshake v1 naming the mechanism,
then the mechanism's tokens in SaslAuthenticate v2 requests until the server is done.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import time

from pybroker.config.jaas import SaslClientCredentials
from pybroker.protocol import scram
from pybroker.protocol.client_codec import decode_response, encode_request
from pybroker.protocol.codec import build, request_type
from pybroker.protocol.errors import ErrorCode

_SIZE = struct.Struct(">i")
HANDSHAKE_KEY, AUTHENTICATE_KEY = 17, 36


class SaslClientError(Exception):
    """The peer refused our credentials or the exchange went wrong."""


async def _call(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    api_key: int,
    version: int,
    cid: int,
    client_id: str,
    **fields: object,
) -> object:
    body = build(request_type(api_key, version), **fields)
    writer.write(encode_request(api_key, version, cid, client_id, body))
    await writer.drain()
    (size,) = _SIZE.unpack(await reader.readexactly(4))
    _, response = decode_response(api_key, version, await reader.readexactly(size))
    return response


def unsecured_jws(subject: str, lifetime_s: int) -> str:
    """An unsecured JWS (``alg: none``) as Kafka's OAuthBearerUnsecuredLoginCallbackHandler
    makes one: ``sub``, ``iat`` and ``exp``, no signature."""

    def part(obj: dict[str, object]) -> str:
        raw = json.dumps(obj, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    now = time.time()
    claims = {"sub": subject, "iat": now, "exp": now + lifetime_s}
    return f"{part({'alg': 'none'})}.{part(claims)}."


async def authenticate(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    creds: SaslClientCredentials,
    client_id: str,
) -> None:
    """Run the whole exchange; raises SaslClientError (or a connection error)."""
    hs = await _call(reader, writer, HANDSHAKE_KEY, 1, 0, client_id, mechanism=creds.mechanism)
    if hs.error_code != ErrorCode.none:  # type: ignore[attr-defined]
        raise SaslClientError(
            f"SaslHandshake refused {creds.mechanism}: {hs.error_code!r}"  # type: ignore[attr-defined]
        )
    if creds.mechanism == "PLAIN":
        tokens = [f"\0{creds.username}\0{creds.password}".encode()]
        client = None
    elif creds.mechanism == "OAUTHBEARER":
        token = unsecured_jws(creds.username, int(creds.password or 3600))
        tokens = [f"n,,\x01auth=Bearer {token}\x01\x01".encode()]
        client = None
    else:
        client = scram.ScramClient(creds.mechanism, creds.username, creds.password)
        tokens = [client.first()]
    cid = 1
    while tokens:
        resp = await _call(
            reader, writer, AUTHENTICATE_KEY, 2, cid, client_id, auth_bytes=tokens.pop()
        )
        cid += 1
        if resp.error_code != ErrorCode.none:  # type: ignore[attr-defined]
            raise SaslClientError(resp.error_message or repr(resp.error_code))  # type: ignore[attr-defined]
        if client is None:
            return
        try:
            if cid == 2:
                tokens.append(client.final(bytes(resp.auth_bytes)))  # type: ignore[attr-defined]
            else:
                client.verify_server_final(bytes(resp.auth_bytes))  # type: ignore[attr-defined]
        except scram.ScramError as exc:
            raise SaslClientError(str(exc)) from None
