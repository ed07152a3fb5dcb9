"""broker/tls.py: Kafka's SSL settings to an SSLContext, principal mapping rules, and the
start-up errors for bad TLS configuration (real certificates made with openssl)."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from pybroker.broker.tls import (
    DEFAULTS,
    TlsConfigError,
    build_listener,
    client_context,
    dynamic_ssl_listener,
    listener_settings,
    normalize_pem,
    openssl_cipher_name,
    server_context,
)
from pybroker.broker.tls_principal import PrincipalMapper, subject_dn
from tests.support.tls_certs import CLIENT_DN, PASSWORD, CertSet, make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertSet:
    return make_certs(tmp_path_factory.mktemp("certs"))


BROKEN_PEM = "-----BEGIN CERTIFICATE-----AAAA-----END CERTIFICATE-----"


def settings(**kw: str) -> dict[str, str]:
    return {**DEFAULTS, **{k.replace("_", "."): v for k, v in kw.items()}}


# ------------------------------------------------------------------ principal mapping


@pytest.mark.parametrize(
    ("rules", "dn", "expected"),
    [
        ("DEFAULT", "CN=alice,OU=clients,O=pybroker,C=US", "CN=alice,OU=clients,O=pybroker,C=US"),
        ("RULE:^CN=(.*?),OU=(.*?),O=.*$/$1@$2/", "CN=alice,OU=clients,O=p,C=US", "alice@clients"),
        ("RULE:^CN=(.*?),OU=.*$/$1/U", "CN=alice,OU=clients,O=p", "ALICE"),
        ("RULE:^CN=(.*?),OU=.*$/$1/L", "CN=ALICE,OU=clients,O=p", "alice"),
        # First rule that matches wins; DEFAULT after a non-matching rule keeps the DN.
        ("RULE:^CN=(.*?),OU=admins.*$/$1/, DEFAULT", "CN=bob,OU=clients", "CN=bob,OU=clients"),
        ("RULE:^CN=(.*?),OU=admins.*$/$1/,RULE:^CN=(.*?),.*$/x-$1/", "CN=bob,OU=c", "x-bob"),
        # An escaped slash in the pattern and the replacement.
        (r"RULE:^CN=(.*?)\/(.*?),.*$/$1\/$2/", "CN=a/b,O=x", "a/b"),
        # A rule matches the whole DN or not at all (Java's Matcher.matches).
        ("RULE:CN=alice/x/,DEFAULT", "CN=alice,O=p", "CN=alice,O=p"),
    ],
)
def test_mapping_rules_as_kafka_applies_them(rules: str, dn: str, expected: str) -> None:
    assert PrincipalMapper(rules).name(dn) == expected


def test_no_matching_rule_fails() -> None:
    with pytest.raises(ValueError, match="No rules apply"):
        PrincipalMapper("RULE:^CN=admin,.*$/admin/").name("CN=alice,O=p")


@pytest.mark.parametrize("rules", ["RULE:^CN=(.*)/$1", "NONSENSE", "RULE:^CN=(.*/$1/", "DEFAULT,x"])
def test_invalid_rules_refuse(rules: str) -> None:
    with pytest.raises(ValueError, match="Invalid rule"):
        PrincipalMapper(rules)


def test_subject_dn_is_rfc2253(certs: CertSet) -> None:
    der = ssl.PEM_cert_to_DER_cert(certs.client_cert.read_text())
    assert subject_dn(der) == CLIENT_DN


# ------------------------------------------------------------------ settings


def test_listener_prefix_wins_over_the_plain_key() -> None:
    raw = {
        "ssl.client.auth": "requested",
        "listener.name.internal.ssl.client.auth": "required",
        "ssl.keystore.location": "/a",
    }
    s = listener_settings(raw, "INTERNAL")
    assert s["ssl.client.auth"] == "required"
    assert s["ssl.keystore.location"] == "/a"
    assert s["ssl.enabled.protocols"] == "TLSv1.2,TLSv1.3"
    assert listener_settings(raw, "OTHER")["ssl.client.auth"] == "requested"


def test_sasl_ssl_takes_client_auth_only_from_the_listener_prefix(certs: CertSet) -> None:
    raw = {
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": str(certs.broker_p12),
        "ssl.keystore.password": PASSWORD,
        "ssl.client.auth": "required",
    }
    assert build_listener(raw, "SSL", "SSL").context.verify_mode == ssl.CERT_REQUIRED
    assert build_listener(raw, "SASL_SSL", "SASL_SSL").context.verify_mode == ssl.CERT_NONE


@pytest.mark.parametrize(
    ("java", "openssl"),
    [
        ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256"),
        ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384"),
        ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-RSA-CHACHA20-POLY1305"),
        ("TLS_RSA_WITH_AES_128_CBC_SHA", "AES128-SHA"),
        ("TLS_AES_128_GCM_SHA256", None),
        ("ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256"),
    ],
)
def test_java_cipher_names_become_openssl_names(java: str, openssl: str | None) -> None:
    assert openssl_cipher_name(java) == openssl


def test_pem_without_newlines_is_rewrapped(certs: CertSet) -> None:
    text = certs.broker_cert.read_text()
    assert normalize_pem(" ".join(text.splitlines())) == text


# ------------------------------------------------------------------ contexts


def test_contexts_of_every_store_shape(certs: CertSet) -> None:
    p12 = server_context(
        settings(
            ssl_keystore_type="PKCS12",
            ssl_keystore_location=str(certs.broker_p12),
            ssl_keystore_password=PASSWORD,
            ssl_truststore_type="PKCS12",
            ssl_truststore_location=str(certs.ca_p12),
            ssl_truststore_password=PASSWORD,
            ssl_client_auth="required",
        )
    )
    assert p12.verify_mode == ssl.CERT_REQUIRED
    assert [c["subject"] for c in p12.get_ca_certs()] == [((("commonName", "pybroker-test-ca"),),)]
    assert p12.minimum_version == ssl.TLSVersion.TLSv1_2
    pem = server_context(
        settings(
            ssl_keystore_type="PEM",
            ssl_keystore_location=str(certs.broker_pem_store),
            ssl_key_password=PASSWORD,
            ssl_enabled_protocols="TLSv1.3",
            ssl_client_auth="requested",
        )
    )
    assert pem.verify_mode == ssl.CERT_OPTIONAL
    assert pem.minimum_version == ssl.TLSVersion.TLSv1_3
    client = client_context(
        settings(
            ssl_keystore_type="PEM",
            ssl_keystore_key=certs.broker_key.read_text(),
            ssl_keystore_certificate_chain=certs.broker_cert.read_text(),
            ssl_truststore_type="PEM",
            ssl_truststore_certificates=certs.ca_cert.read_text(),
        )
    )
    assert client.check_hostname and client.verify_mode == ssl.CERT_REQUIRED
    no_host_check = client_context(
        settings(
            ssl_truststore_type="PEM",
            ssl_truststore_location=str(certs.ca_cert),
            ssl_endpoint_identification_algorithm="",
        )
    )
    assert not no_host_check.check_hostname


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({}, "no key store configured"),
        ({"ssl_keystore_location": "/nonexistent.p12", "ssl_keystore_password": "x"}, "Failed"),
        ({"ssl_keystore_location": "@P12", "ssl_keystore_password": "bad"}, "password is wrong"),
        ({"ssl_keystore_location": "@P12"}, "key store password is not specified"),
        (
            {"ssl_keystore_type": "PEM", "ssl_keystore_location": "@PEM", "ssl_key_password": "no"},
            "ssl.key.password) is wrong",
        ),
        (
            {
                "ssl_keystore_type": "PEM",
                "ssl_keystore_location": "@PEM",
                "ssl_keystore_password": PASSWORD,
            },
            "password cannot be specified with PEM",
        ),
        (
            {
                "ssl_keystore_type": "PKCS12",
                "ssl_keystore_key": "k",
                "ssl_keystore_certificate_chain": "c",
            },
            "only for PEM",
        ),
        (
            {
                "ssl_keystore_location": "@P12",
                "ssl_keystore_password": PASSWORD,
                "ssl_client_auth": "x",
            },
            "ssl.client.auth",
        ),
        (
            {
                "ssl_keystore_location": "@P12",
                "ssl_keystore_password": PASSWORD,
                "ssl_enabled_protocols": "SSLv3",
            },
            "ssl.enabled.protocols",
        ),
        (
            {
                "ssl_keystore_location": "@P12",
                "ssl_keystore_password": PASSWORD,
                "ssl_cipher_suites": "TLS_NO_SUCH_WITH_NOTHING",
            },
            "ssl.cipher.suites",
        ),
        (
            {
                "ssl_keystore_location": "@P12",
                "ssl_keystore_password": PASSWORD,
                "ssl_keystore_type": "BKS",
            },
            "supports the key store types",
        ),
        (
            {
                "ssl_keystore_location": "@P12",
                "ssl_keystore_password": PASSWORD,
                "ssl_client_auth": "required",
                "ssl_truststore_type": "PEM",
                "ssl_truststore_certificates": BROKEN_PEM,
            },
            "Failed to load SSL truststore",
        ),
    ],
)
def test_bad_settings_refuse_with_one_clear_message(
    certs: CertSet, kw: dict[str, str], message: str
) -> None:
    paths = {"@P12": str(certs.broker_p12), "@PEM": str(certs.broker_pem_store)}
    kw = {k: paths.get(v, v) for k, v in kw.items()}
    with pytest.raises(TlsConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        server_context(settings(**kw))
    assert "\n" not in str(e.value)


def test_listener_error_names_the_listener(certs: CertSet) -> None:
    with pytest.raises(TlsConfigError, match="^Invalid SSL configuration for listener SECURE: "):
        build_listener({"ssl.keystore.location": str(Path("/nonexistent"))}, "SECURE", "SSL")


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("listener.name.ssl.ssl.keystore.location", ("SSL", "ssl.keystore.location")),
        ("listener.name.internal.ssl.truststore.type", ("INTERNAL", "ssl.truststore.type")),
        ("listener.name.ssl.ssl.client.auth", None),  # not reconfigurable in Kafka
        ("ssl.keystore.location", None),  # only with the listener prefix
        ("listener.name.ssl.sasl.enabled.mechanisms", None),
    ],
)
def test_reconfigurable_keys(key: str, expected: tuple[str, str] | None) -> None:
    assert dynamic_ssl_listener(key) == expected


JAVA_DN = """
import java.io.FileInputStream;
import java.security.cert.*;
public class Dn { public static void main(String[] a) throws Exception {
  for (String path : a) {
    X509Certificate c = (X509Certificate) CertificateFactory.getInstance("X.509")
        .generateCertificate(new FileInputStream(path));
    System.out.println(c.getSubjectX500Principal().getName());
  }
}}
"""


def test_subject_dn_matches_java_x500_principal(tmp_path: Path) -> None:
    """Java is the oracle for RFC 2253 (Kafka's principal is X500Principal.getName()):
    escaped commas, multi-valued RDNs, and an attribute Java has no keyword for."""
    subjects = [
        "/C=US/ST=CA/O=Acme, Inc./OU=eng+UID=u1/CN=bob/emailAddress=b@x.io",
        "/DC=org/DC=example/CN=svc #1/street=1 Main St",
        "/CN=\u00e9t\u00e9/O=caf\u00e9",
        '/CN= a=b<c>d;e"f\\\\g\\+h #i /O=#x',
        "/CN=  two lead/O=trail  /OU=\\,x",
    ]
    paths = []
    for i, subject in enumerate(subjects):
        path = tmp_path / f"c{i}.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", str(tmp_path / f"k{i}"), "-out", str(path), "-days", "1",
             "-utf8", "-subj", subject],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        paths.append(path)
    (tmp_path / "Dn.java").write_text(JAVA_DN)
    java = subprocess.run(
        ["java", str(tmp_path / "Dn.java"), *map(str, paths)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    ours = [subject_dn(ssl.PEM_cert_to_DER_cert(p.read_text())) for p in paths]
    assert ours == java.stdout.splitlines()


def _keytool(*args: str) -> None:
    subprocess.run(["keytool", *args], check=True, capture_output=True, timeout=120)


def test_java_made_stores(tmp_path: Path) -> None:
    """Stores made by keytool, as Kafka users have them: PKCS12 key and trust stores load
    (also with Kafka's default type JKS); a real JKS store is refused in one clear line."""
    p12, jks, crt, trust = (str(tmp_path / n) for n in ("b.p12", "b.jks", "b.crt", "t.p12"))
    common = ["-storepass", "changeit", "-alias", "b", "-dname", "CN=localhost", "-keyalg", "EC"]
    _keytool("-genkeypair", "-keystore", p12, "-storetype", "PKCS12", *common, "-validity", "2")
    _keytool("-genkeypair", "-keystore", jks, "-storetype", "JKS", "-keypass", "changeit",
             *common, "-validity", "2")  # fmt: skip
    _keytool("-exportcert", "-keystore", p12, "-storepass", "changeit", "-alias", "b",
             "-rfc", "-file", crt)  # fmt: skip
    _keytool("-importcert", "-noprompt", "-keystore", trust, "-storetype", "PKCS12",
             "-storepass", "changeit", "-alias", "ca", "-file", crt)  # fmt: skip
    for store_type in ("PKCS12", "JKS"):
        ctx = server_context(
            settings(
                ssl_keystore_type=store_type,
                ssl_keystore_location=p12,
                ssl_keystore_password="changeit",
                ssl_truststore_type=store_type,
                ssl_truststore_location=trust,
                ssl_truststore_password="changeit",
                ssl_client_auth="required",
            )
        )
        assert ctx.cert_store_stats()["x509"] == 1
    with pytest.raises(TlsConfigError, match="a JKS store cannot be read") as e:
        server_context(settings(ssl_keystore_location=jks, ssl_keystore_password="changeit"))
    assert "\n" not in str(e.value)


def test_invalid_rules_refuse_start_up(certs: CertSet) -> None:
    raw = {
        "ssl.keystore.location": str(certs.broker_p12),
        "ssl.keystore.password": PASSWORD,
        "ssl.principal.mapping.rules": "RULE:^CN=(.*)/$1",
    }
    with pytest.raises(TlsConfigError, match="^Invalid SSL configuration for listener SSL: Inv"):
        build_listener(raw, "SSL", "SSL")
