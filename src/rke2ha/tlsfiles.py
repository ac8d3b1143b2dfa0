"""A TLS certificate chain and its private key read from PEM files, and what they cover.

Used wherever rke2ha holds the certificate for the Rancher hostname: `validate` (rule
`lb.layer7_tls`), the layer-7 load balancer (which serves it) and `check` (which compares
it with what is served). This module only reads files and answers questions about their
content: does the key belong to the certificate, do the SANs cover a hostname, how long
until it expires. It never prints key material.

Hostname matching follows RFC 6125 §6.4 the way browsers and Go's crypto/tls do it:
only subjectAltName entries count (the subject CN is ignored, RFC 6125 §6.4.4 and
CA/Browser Forum practice); a wildcard is allowed only as the whole left-most label and
matches exactly one label (`*.example.com` covers `a.example.com`, not `example.com` nor
`a.b.example.com`); partial wildcards such as `f*.example.com` are not honoured.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from rke2ha.errors import InvalidError, UsageError

_SECONDS_PER_DAY = 86_400.0


class TlsFileError(InvalidError):
    """A certificate or key file that cannot be used; the message names the file and fix."""


@dataclass(frozen=True)
class TlsMaterial:
    """A certificate chain (leaf first) and the private key that goes with the leaf."""

    cert_path: Path
    key_path: Path
    chain: tuple[x509.Certificate, ...]
    key: PrivateKeyTypes

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def not_before(self) -> datetime:
        return self.leaf.not_valid_before_utc

    @property
    def not_after(self) -> datetime:
        return self.leaf.not_valid_after_utc

    @property
    def dns_names(self) -> tuple[str, ...]:
        return tuple(_san(self.leaf).get_values_for_type(x509.DNSName))

    @property
    def ip_addresses(self) -> tuple[str, ...]:
        return tuple(str(ip) for ip in _san(self.leaf).get_values_for_type(x509.IPAddress))

    @property
    def subject_alt_names(self) -> tuple[str, ...]:
        """Every DNS and IP SAN, for messages (`rancher.example.com, 10.0.0.10`)."""
        return self.dns_names + self.ip_addresses

    def key_matches(self) -> bool:
        """True when the private key is the one whose public half the leaf certifies."""
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        der = serialization.Encoding.DER
        try:
            certified = self.leaf.public_key().public_bytes(der, spki)
            held = self.key.public_key().public_bytes(der, spki)
        except (UnsupportedAlgorithm, ValueError):
            return False  # a key type we cannot compare is not one we can serve
        return certified == held

    def covers(self, hostname: str) -> bool:
        """True when a SAN of the leaf matches `hostname` (RFC 6125, see module docstring)."""
        try:
            address = ipaddress.ip_address(hostname)
        except ValueError:
            return any(hostname_matches(name, hostname) for name in self.dns_names)
        return any(ipaddress.ip_address(ip) == address for ip in self.ip_addresses)

    def days_left(self, now: datetime | None = None) -> float:
        """Days until the leaf expires (negative once it has)."""
        moment = now or datetime.now(UTC)
        return (self.not_after - moment).total_seconds() / _SECONDS_PER_DAY

    def is_expired(self, now: datetime | None = None) -> bool:
        return self.days_left(now) <= 0

    def is_not_yet_valid(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(UTC)) < self.not_before

    def chain_problems(self) -> list[str]:
        """Why the chain is out of order: each certificate must be issued by the next one."""
        problems = []
        for index, (cert, issuer) in enumerate(zip(self.chain, self.chain[1:], strict=False)):
            try:
                cert.verify_directly_issued_by(issuer)
            except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
                problems.append(
                    f"certificate {index + 1} ({cert.subject.rfc4514_string()}) is not issued "
                    f"by certificate {index + 2} ({issuer.subject.rfc4514_string()})"
                )
        return problems


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, x509.DuplicateExtension, ValueError):
        # Absent or malformed: either way the certificate names no host we can trust.
        return x509.SubjectAlternativeName([])


def hostname_matches(pattern: str, hostname: str) -> bool:
    """Does the SAN dNSName `pattern` cover `hostname`? (RFC 6125 §6.4.3, no partials)."""
    pattern_labels = pattern.rstrip(".").lower().split(".")
    host_labels = hostname.rstrip(".").lower().split(".")
    if len(pattern_labels) != len(host_labels) or not all(host_labels):
        return False
    first, *rest = pattern_labels
    # A wildcard needs at least two labels after it: `*.com` must never match.
    if first == "*" and len(rest) >= 2:
        return rest == host_labels[1:]
    if "*" in pattern:
        return False
    return pattern_labels == host_labels


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UsageError(
            f"{path}: {what} file not found; check the path (in the spec, or the flag)"
        ) from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, not a {what} file") from None
    except OSError as err:
        raise UsageError(f"{path}: cannot read {what} file: {err.strerror}") from None


def load_certificate_chain(path: Path) -> tuple[x509.Certificate, ...]:
    """Every certificate of a PEM file, in file order (leaf first, then intermediates)."""
    data = _read(path, "certificate")
    try:
        chain = tuple(x509.load_pem_x509_certificates(data))
    except ValueError:
        raise TlsFileError(
            f"{path}: not a PEM certificate (expected '-----BEGIN CERTIFICATE-----' blocks)"
        ) from None
    if not chain:
        raise TlsFileError(f"{path}: holds no PEM certificate")
    return chain


def load_private_key(path: Path) -> PrivateKeyTypes:
    """The unencrypted PEM private key in `path`; errors never include key material."""
    data = _read(path, "key")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise TlsFileError(
            f"{path}: the key is encrypted; store it unencrypted with mode 0600 "
            f"(openssl pkey -in {path} -out {path}.plain)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise TlsFileError(
            f"{path}: not a PEM private key (expected '-----BEGIN PRIVATE KEY-----')"
        ) from None


def load_tls_files(cert_path: Path, key_path: Path) -> TlsMaterial:
    """Read a PEM chain and key. Raises UsageError (unreadable) or TlsFileError (not PEM)."""
    return TlsMaterial(
        cert_path=cert_path,
        key_path=key_path,
        chain=load_certificate_chain(cert_path),
        key=load_private_key(key_path),
    )
