"""The lab certificate authority: one EC P-256 root that signs every lab certificate.

A lab serves TLS on 443 (the Rancher hostname), 6443 and 9345 like a real RKE2 node, and
clients verify it with `--cacert ca.crt`, so the lab needs its own root. The CA is created
once and loaded again by every later `up`, so a CA file a user copied stays valid.

Leaf certificates are TLS server certificates (serverAuth) whose subjectAltName lists the
DNS names and IP addresses they are valid for; the subject CN is informational only
(RFC 6125 §6.4.4). `issue` accepts explicit validity bounds so tests can make an
already-expired or a short-lived certificate for the checks that must catch them.

Private keys are written with `secretfiles.write_secret` (mode 0600) and never printed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rke2ha.errors import InvalidError, UsageError
from rke2ha.secretfiles import write_secret

CA_VALIDITY = timedelta(days=3650)
LEAF_VALIDITY = timedelta(days=365)
# Backdate `notBefore` a little: a client whose clock runs slightly behind must not see
# a certificate that is "not yet valid" right after `up`.
CLOCK_SKEW = timedelta(minutes=5)
CA_COMMON_NAME = "rke2ha lab CA"
CA_ORGANIZATION = "rke2ha lab"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class LabCAError(InvalidError):
    """A CA or certificate file that exists but cannot be used; the message says why."""


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write_public(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(content)
    tmp.chmod(0o644)
    tmp.replace(path)


def split_names(names: Iterable[str]) -> tuple[list[str], list[IPAddress]]:
    """Sort SAN entries into DNS names and IP addresses (an entry that parses as an IP is one).

    Duplicates are dropped and order kept, so the SAN reads the way the caller listed it.
    """
    dns_names: list[str] = []
    addresses: list[IPAddress] = []
    for name in names:
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            lowered = name.rstrip(".").lower()
            if lowered and lowered not in dns_names:
                dns_names.append(lowered)
            continue
        if address not in addresses:
            addresses.append(address)
    return dns_names, addresses


@dataclass(frozen=True)
class IssuedCertificate:
    """A leaf certificate and its private key, as issued by the lab CA."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey = field(repr=False)

    @property
    def cert_pem(self) -> bytes:
        return _cert_pem(self.cert)

    @property
    def dns_names(self) -> list[str]:
        return list(_san(self.cert).get_values_for_type(x509.DNSName))

    @property
    def ip_addresses(self) -> list[IPAddress]:
        values = _san(self.cert).get_values_for_type(x509.IPAddress)
        return [value for value in values if isinstance(value, IPAddress)]

    def save(self, cert_path: Path, key_path: Path) -> None:
        """Write the certificate (0644) and the key (0600, atomically) as PEM."""
        write_secret(key_path, _key_pem(self.key))
        _write_public(cert_path, self.cert_pem)


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return x509.SubjectAlternativeName([])


@dataclass(frozen=True)
class LabCA:
    """The lab's root certificate and key. Create it once, then `load` it every time."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey = field(repr=False)

    @classmethod
    def create(
        cls,
        *,
        common_name: str = CA_COMMON_NAME,
        now: datetime | None = None,
        valid_for: timedelta = CA_VALIDITY,
    ) -> LabCA:
        """A new self-signed CA: EC P-256, CA:TRUE (pathlen 0), keyCertSign and cRLSign."""
        key = _new_key()
        start = (now or datetime.now(UTC)) - CLOCK_SKEW
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, CA_ORGANIZATION),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )
        public = key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + valid_for)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, cert_path: Path, key_path: Path) -> LabCA:
        """Read a CA written by `save`. Errors name the file, never the key material."""
        try:
            cert_data = cert_path.read_bytes()
            key_data = key_path.read_bytes()
        except FileNotFoundError as err:
            raise UsageError(
                f"{err.filename}: lab CA file not found; remove the CA folder to create a new CA"
            ) from None
        except OSError as err:
            raise UsageError(f"{err.filename}: cannot read lab CA file: {err.strerror}") from None
        try:
            cert = x509.load_pem_x509_certificate(cert_data)
        except ValueError:
            raise LabCAError(f"{cert_path}: not a PEM certificate") from None
        try:
            key = serialization.load_pem_private_key(key_data, password=None)
        except (TypeError, ValueError):
            raise LabCAError(f"{key_path}: not an unencrypted PEM private key") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise LabCAError(f"{key_path}: the lab CA key must be an EC key")
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        der = serialization.Encoding.DER
        if cert.public_key().public_bytes(der, spki) != key.public_key().public_bytes(der, spki):
            raise LabCAError(
                f"{key_path}: the key does not belong to {cert_path}; "
                "remove both to create a new lab CA"
            )
        return cls(cert, key)

    @property
    def cert_pem(self) -> bytes:
        return _cert_pem(self.cert)

    def save(self, cert_path: Path, key_path: Path) -> None:
        """Write the CA certificate (0644, safe to hand out) and key (0600)."""
        write_secret(key_path, _key_pem(self.key))
        _write_public(cert_path, self.cert_pem)

    def is_valid(self, now: datetime | None = None) -> bool:
        moment = now or datetime.now(UTC)
        return self.cert.not_valid_before_utc <= moment < self.cert.not_valid_after_utc

    def issued(self, cert: x509.Certificate) -> bool:
        """True when this CA signed `cert`."""
        try:
            cert.verify_directly_issued_by(self.cert)
        except Exception:  # InvalidSignature, ValueError, TypeError: all mean "not ours"
            return False
        return True

    def issue(
        self,
        names: Iterable[str],
        *,
        common_name: str | None = None,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        valid_for: timedelta = LEAF_VALIDITY,
    ) -> IssuedCertificate:
        """A TLS server certificate for `names` (DNS names and IP addresses, mixed).

        Validity runs from `not_before` (default: now minus clock skew) to `not_after`
        (default: `not_before + valid_for`). Both may lie in the past: an expired
        certificate is what the `tls.certificate` check has to catch.
        """
        dns_names, addresses = split_names(names)
        if not dns_names and not addresses:
            raise UsageError("a lab certificate needs at least one DNS name or IP address")
        start = not_before or datetime.now(UTC) - CLOCK_SKEW
        end = not_after or start + valid_for
        if end <= start:
            raise UsageError(f"certificate validity ends ({end}) before it starts ({start})")
        key = _new_key()
        public = key.public_key()
        subject_cn = common_name or (dns_names[0] if dns_names else str(addresses[0]))
        sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
        sans += [x509.IPAddress(address) for address in addresses]
        ca_public = self.key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_cn)]))
            .issuer_name(self.cert.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        return IssuedCertificate(cert, key)


def load_certificate(path: Path) -> x509.Certificate | None:
    """The PEM certificate in `path`, or None when it is missing or unreadable as PEM."""
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None
