"""Material of the secured local stack: a throwaway CA and server certificates, one password per role.

Generated at every start (``cryptography``, no openssl/keytool), written with owner-only permissions under
the stack's work directory, and handed to clients as files: a role's secrets go into a directory in the
``CLICKCASH_SECRETS_DIR`` layout, so a shell or a test uses the role with
``CLICKCASH_SECRETS_DIR=<dir>`` and never sees a password on a command line or in the environment.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

BROKER_CN = "clickcash-broker"
"""subject CN of the brokers' certificate: the brokers' own super user (``User:CN=clickcash-broker``) on the
mutual-TLS inter-broker and controller listeners"""
REDIS_ADMIN = "clickcash-stack-admin"
"""the Redis user of the stack itself (starts, flushes between tests); the roles get their own users"""


def _write_private(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass(frozen=True)
class TlsMaterial:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    server_keystore: Path
    """key + certificate in one PEM file (Kafka's ``ssl.keystore.type=PEM``)"""


def make_tls(directory: Path, *, valid_days: int = 2) -> TlsMaterial:
    """A CA and one server certificate (CN ``clickcash-broker``; SAN localhost and 127.0.0.1), usable as
    server and as client certificate (the brokers' mutual TLS between themselves)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "clickcash local CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, BROKER_CN)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=valid_days))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    return TlsMaterial(
        ca_cert=_write_private(directory / "ca.pem", ca_pem),
        server_cert=_write_private(directory / "server.pem", cert_pem),
        server_key=_write_private(directory / "server.key", _key_pem(key)),
        server_keystore=_write_private(directory / "server-keystore.pem", _key_pem(key) + cert_pem),
    )


@dataclass(frozen=True)
class Credentials:
    """One Kafka SCRAM user and one Redis ACL user per role (the same name; separate passwords)."""

    principals: dict[str, str]
    kafka_passwords: dict[str, str]
    redis_passwords: dict[str, str]
    redis_admin_password: str

    @classmethod
    def generate(cls, principals: dict[str, str]) -> Credentials:
        return cls(
            dict(principals),
            {role: secrets.token_urlsafe(24) for role in principals},
            {role: secrets.token_urlsafe(24) for role in principals},
            secrets.token_urlsafe(24),
        )

    def __repr__(self) -> str:  # the passwords never reach a log line through a repr
        return f"Credentials(principals={self.principals!r})"

    def write_secrets_dirs(self, directory: Path) -> dict[str, Path]:
        """One ``CLICKCASH_SECRETS_DIR`` per role: its Kafka and Redis passwords as files (mode 0600)."""
        out = {}
        for role in self.principals:
            d = directory / role
            d.mkdir(parents=True, exist_ok=True, mode=0o700)
            _write_private(d / "CLICKCASH_KAFKA__SASL_PASSWORD", self.kafka_passwords[role].encode())
            _write_private(d / "CLICKCASH_REDIS__PASSWORD", self.redis_passwords[role].encode())
            out[role] = d
        return out


def role_settings(
    role: str, creds: Credentials, tls: TlsMaterial, bootstrap_servers: str, redis_url: str
) -> dict[str, Any]:
    """Non-secret settings overrides of a role on the secured stack (passwords: its secrets dir)."""
    return {
        "kafka": {
            "bootstrap_servers": bootstrap_servers,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": creds.principals[role],
            "ssl_ca_location": str(tls.ca_cert),
        },
        "redis": {"url": redis_url, "username": creds.principals[role], "ssl_ca_certs": str(tls.ca_cert)},
    }
