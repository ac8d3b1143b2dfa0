"""A CA the user brings and trusts on the workstation (SSL_CERT_FILE), placed on the first
server before it starts: RKE2 uses CA certificates and keys it finds in
/var/lib/rancher/rke2/server/tls at the first start instead of making its own
(docs.rke2.io/security/certificates, "Using Custom CA Certificates"; a real RKE2 wants the
whole set there — client, server, request-header and etcd CAs — the stand-in uses the
server CA only). The stand-in signs Rancher's certificate with that CA (standing in for
Rancher's own CA), so `up` and `check` verify the chain against the user's trust, as they
would against a private CA the user's machines already trust."""

from __future__ import annotations

import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from tests.support.machines import Machine

TLS_DIR = "/var/lib/rancher/rke2/server/tls"
_CA_USAGE = x509.KeyUsage(
    digital_signature=True, content_commitment=False, key_encipherment=False,
    data_encipherment=False, key_agreement=False, key_cert_sign=True,
    crl_sign=True, encipher_only=False, decipher_only=False,
)  # fmt: skip


def make_ca(folder: Path) -> tuple[Path, Path]:
    """(certificate, key) of a new self-signed EC P-256 CA (the key type RKE2's CAs have)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rke2ha-up-live user CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_CA_USAGE, critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "user-ca.pem", folder / "user-ca.key"
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


def place(machine: Machine, cert: Path, key: Path) -> None:
    """The CA where the first server looks for it (root, 0600), before it ever starts."""
    for source, name in ((cert, "server-ca.crt"), (key, "server-ca.key")):
        machine.sh(
            f"install -d -m 0700 {TLS_DIR} && umask 077 && cat > {TLS_DIR}/{name}",
            input=source.read_text(),
            check=True,
        )
