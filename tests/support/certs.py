"""Self-signed test certificates made with `cryptography`, written as PEM (key mode 0600)."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


def write_self_signed(
    cert_path: Path,
    key_path: Path,
    hostname: str,
    *,
    ip: str | None = None,
    ca: bool = False,
    backdate: datetime.timedelta = datetime.timedelta(hours=1),
    valid_for: datetime.timedelta = datetime.timedelta(days=30),
    rsa_bits: int | None = None,
) -> tuple[Path, Path]:
    """An EC P-256 certificate with CN and DNS SAN `hostname` (and IP SAN `ip`).

    `ca` adds a critical BasicConstraints CA:TRUE, which lets the certificate serve as its
    own trust anchor (a client given it as the CA file then verifies the server).
    `rsa_bits`: an RSA key of that size instead (e.g. 1024, which OpenSSL refuses to serve)."""
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey = (
        ec.generate_private_key(ec.SECP256R1())
        if rsa_bits is None
        else rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    )
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(hostname)]
    if ip:
        sans.append(x509.IPAddress(ipaddress.ip_address(ip)))
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - backdate)
        .not_valid_after(now + valid_for)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=True, path_length=None), critical=True
        )
    cert = builder.sign(key, hashes.SHA256())
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path
