"""Test certificates made with the ``openssl`` command line: a CA, a broker certificate for
127.0.0.1/localhost and a client certificate, as PEM files, PKCS12 stores and a PEM key
store (key + chain in one file), the shapes Kafka's ssl.keystore.* settings take."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

PASSWORD = "test-secret"
CLIENT_DN = "CN=alice,OU=clients,O=pybroker,C=US"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@dataclass(frozen=True)
class CertSet:
    dir: Path
    ca_cert: Path  # PEM: the trust store of everybody
    broker_cert: Path
    broker_key: Path  # unencrypted PKCS#8
    broker_pem_store: Path  # encrypted key + certificate (ssl.keystore.type=PEM)
    broker_p12: Path  # PKCS12, password PASSWORD
    ca_p12: Path  # PKCS12 trust store (CA certificate only), password PASSWORD
    client_cert: Path
    client_key: Path
    client_p12: Path

    def read(self, path: Path) -> str:
        return path.read_text()


def _sign(d: Path, name: str, subject: str, ext: str) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", f"{name}.key", cwd=d)  # fmt: skip
    _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=d)
    (d / f"{name}.ext").write_text(ext)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-sha256", "-extfile", f"{name}.ext",
             "-out", f"{name}.crt", cwd=d)  # fmt: skip


def make_certs(d: Path, client_subject: str = "/C=US/O=pybroker/OU=clients/CN=alice") -> CertSet:
    """Generate the whole set under ``d`` (seconds: EC keys)."""
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=pybroker-test-ca", cwd=d)  # fmt: skip
    _sign(
        d,
        "broker",
        "/C=US/O=pybroker/CN=localhost",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    _sign(d, "client", client_subject, "extendedKeyUsage=clientAuth\n")
    _openssl("pkcs8", "-topk8", "-in", "broker.key", "-passout", f"pass:{PASSWORD}",
             "-out", "broker.enc.key", cwd=d)  # fmt: skip
    (d / "broker.pem").write_text(
        (d / "broker.enc.key").read_text() + (d / "broker.crt").read_text()
    )
    _openssl("pkcs12", "-export", "-inkey", "broker.key", "-in", "broker.crt",
             "-certfile", "ca.crt", "-name", "broker", "-passout", f"pass:{PASSWORD}",
             "-out", "broker.p12", cwd=d)  # fmt: skip
    _openssl("pkcs12", "-export", "-nokeys", "-in", "ca.crt", "-name", "ca",
             "-passout", f"pass:{PASSWORD}", "-out", "ca.p12", cwd=d)  # fmt: skip
    _openssl("pkcs12", "-export", "-inkey", "client.key", "-in", "client.crt",
             "-name", "client", "-passout", f"pass:{PASSWORD}",
             "-out", "client.p12", cwd=d)  # fmt: skip
    return CertSet(
        d,
        d / "ca.crt",
        d / "broker.crt",
        d / "broker.key",
        d / "broker.pem",
        d / "broker.p12",
        d / "ca.p12",
        d / "client.crt",
        d / "client.key",
        d / "client.p12",
    )


def another_broker_store(
    certs: CertSet, name: str, subject: str = "/C=US/O=pybroker/CN=localhost"
) -> tuple[Path, Path]:
    """A new key and certificate from the same CA (same SANs) as a PKCS12 store: what a
    certificate rotation installs. Returns (store, certificate PEM)."""
    d = certs.dir
    _sign(
        d,
        name,
        subject,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    _openssl("pkcs12", "-export", "-inkey", f"{name}.key", "-in", f"{name}.crt",
             "-certfile", "ca.crt", "-passout", f"pass:{PASSWORD}",
             "-out", f"{name}.p12", cwd=d)  # fmt: skip
    return d / f"{name}.p12", d / f"{name}.crt"
