"""Kafka's SSL principals: the client certificate's subject DN as Java's
X500Principal.getName() (RFC 2253) writes it, mapped through ``ssl.principal.mapping.rules``
(Kafka's SslPrincipalMapper syntax). Invalid rules raise ValueError("Invalid rule: ...")."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_RULE = re.compile(
    r"\s*(?:(DEFAULT)|RULE:((?:\\.|[^\\/])*)/((?:\\.|[^\\/])*)/([LU]?)(.*?)|(.*?))\s*(?:,\s*|$)",
    re.S,
)


@dataclass(frozen=True)
class _Rule:
    default: bool
    pattern: re.Pattern[str] | None = None
    replacement: str = ""
    case: str = ""

    def apply(self, dn: str) -> str | None:
        if self.default:
            return dn
        assert self.pattern is not None
        m = self.pattern.fullmatch(dn)
        if m is None:
            return None
        out = m.expand(self.replacement)
        return out.lower() if self.case == "L" else out.upper() if self.case == "U" else out


class PrincipalMapper:
    """Kafka's SslPrincipalMapper: ``DEFAULT`` keeps the DN; ``RULE:regex/replacement/[LU]``
    maps a DN that the regex matches whole ($1.. are its groups); the first rule that
    applies wins, and a DN no rule applies to fails authentication."""

    def __init__(self, rules: str) -> None:
        self.rules = self._parse(rules)

    @staticmethod
    def _parse(text: str) -> list[_Rule]:
        rules: list[_Rule] = []
        pos, text = 0, text.strip()
        while pos < len(text):
            m = _RULE.match(text, pos)
            if m is None or m.end() == pos:
                raise ValueError(f"Invalid rule: {text[pos:]}")
            pos = m.end()
            if m.group(1):
                rules.append(_Rule(True))
            elif m.group(6) is not None and m.group(2) is None:
                raise ValueError(f"Invalid rule: {m.group(6)}")
            else:
                if m.group(5):
                    raise ValueError(f"Invalid rule: {m.group(0).strip()}")
                pattern = m.group(2).replace("\\/", "/")
                replacement = re.sub(r"\$(\d)", r"\\g<\1>", m.group(3).replace("\\/", "/"))
                try:
                    compiled = re.compile(pattern)
                except re.error as exc:
                    raise ValueError(f"Invalid rule: {pattern}: {exc}") from None
                rules.append(_Rule(False, compiled, replacement, m.group(4)))
        return rules

    def name(self, dn: str) -> str:
        """The principal name of ``dn``; ValueError when no rule applies (Kafka's
        NoMatchingRule, which fails the connection's authentication)."""
        for rule in self.rules:
            out = rule.apply(dn)
            if out is not None:
                return out
        raise ValueError(f"No rules apply to {dn}, rules {self.rules}")


def subject_dn(der: bytes) -> str:
    """The certificate's subject as Java's X500Principal.getName() (RFC 2253) writes it:
    most significant RDN last, the keywords CN C L ST O OU STREET DC UID, and any other
    attribute (emailAddress, ...) as ``<OID>=#<hex of its DER value>``."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    keywords = {
        NameOID.COMMON_NAME: "CN",
        NameOID.COUNTRY_NAME: "C",
        NameOID.LOCALITY_NAME: "L",
        NameOID.STATE_OR_PROVINCE_NAME: "ST",
        NameOID.ORGANIZATION_NAME: "O",
        NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
        NameOID.STREET_ADDRESS: "STREET",
        NameOID.DOMAIN_COMPONENT: "DC",
        NameOID.USER_ID: "UID",
    }
    rdns = []
    for rdn in reversed(x509.load_der_x509_certificate(der).subject.rdns):
        parts = []
        for attr in rdn:
            keyword = keywords.get(attr.oid)
            if keyword is not None:
                parts.append(f"{keyword}={_java_escape(str(attr.value))}")
            else:
                parts.append(f"{attr.oid.dotted_string}=#{_der_value(attr).hex()}")
        rdns.append("+".join(parts))
    return ",".join(rdns)


def _java_escape(value: str) -> str:
    """Java's AVA escaping for RFC 2253: a backslash before each of the characters
    ``,=+<>#;"`` and the backslash itself, and before leading and trailing spaces."""
    out = "".join("\\" + c if c in ',=+<>#;"\\' else c for c in value)
    stripped = out.lstrip(" ")
    lead = len(out) - len(stripped)
    out = "\\ " * lead + stripped
    body = out.rstrip(" ")
    return body + "\\ " * (len(out) - len(body))


def _der_value(attr: Any) -> bytes:
    """DER of a name attribute's value (tag, length, contents), as Java prints it in hex."""
    tag = int(attr._type.value)  # cryptography's _ASN1Type values are the ASN.1 tags
    value = attr.value if isinstance(attr.value, bytes) else str(attr.value)
    if isinstance(value, bytes):
        body = value
    elif tag == 30:  # BMPString
        body = value.encode("utf-16-be")
    elif tag == 28:  # UniversalString
        body = value.encode("utf-32-be")
    else:
        body = value.encode("utf-8")
    n = len(body)
    length = (
        bytes([n])
        if n < 0x80
        else bytes([0x80 | ((n.bit_length() + 7) // 8)])
        + n.to_bytes((n.bit_length() + 7) // 8, "big")
    )
    return bytes([tag]) + length + body
