"""Fixtures for the rule tests: a valid base spec to mutate, and certificates made on the fly."""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rke2ha.rules import Finding, evaluate_with, gather_facts
from rke2ha.spec import Spec
from rke2ha.specfile import spec_from_source
from rke2ha.yamlsource import YamlSource

NOW = datetime(2026, 11, 27, 4, 0, tzinfo=UTC)

BASE: dict[str, Any] = {
    "name": "rancher",
    "hostname": "rancher.example.com",
    "provider": "existing",
    "region": "dc1",
    "nodes": [
        {"name": "node-1", "address": "10.0.1.11", "zone": "dc1-a"},
        {"name": "node-2", "address": "10.0.2.11", "zone": "dc1-b"},
        {"name": "node-3", "address": "10.0.3.11", "zone": "dc1-c"},
    ],
    "load_balancer": {"layer": 4, "engine": "haproxy", "address": "10.0.0.10"},
    # anonymous_health off: on, an existing spec cannot name its RKE2 version, which draws
    # the rke2.anonymous_health warning (tests of it turn it on)
    "rke2": {"anonymous_health": False},
    "dns": {"provider": "manual", "zone": "example.com", "record": "A"},
}


@pytest.fixture
def base() -> dict[str, Any]:
    """A deep copy of a spec that draws no error and no warning."""
    return copy.deepcopy(BASE)


@pytest.fixture
def make_spec(tmp_path: Path) -> Callable[[dict[str, Any]], Spec]:
    """Validate a spec dict as if it were a file in `tmp_path`."""

    def make(data: dict[str, Any]) -> Spec:
        return spec_from_source(YamlSource(data=data, filename="test.yaml"), tmp_path)

    return make


@pytest.fixture
def findings(make_spec: Callable[[dict[str, Any]], Spec]) -> Callable[..., list[Finding]]:
    """All findings for a spec dict (facts read from `tmp_path`, the clock fixed at NOW)."""

    def run(data: dict[str, Any], now: datetime = NOW) -> list[Finding]:
        spec = make_spec(data)
        return evaluate_with(spec, gather_facts(spec, now))

    return run


def of(found: list[Finding], rule_id: str, severity: str | None = None) -> list[Finding]:
    """The findings of one rule (and severity), for assertions."""
    return [f for f in found if f.id == rule_id and (severity is None or f.severity == severity)]


@pytest.fixture
def by_rule() -> Callable[..., list[Finding]]:
    return of


CertMaker = Callable[..., tuple[Path, Path]]


@pytest.fixture
def make_cert(tmp_path: Path) -> CertMaker:
    """Write a self-signed cert + key (mode 0600) to tmp_path; returns (cert, key) paths.

    `names`: DNS SANs (and IPs, written as IP SANs); `days`: validity from NOW (negative
    for an expired one); `wrong_key`: write a key of another pair; `prefix`: file names.
    """

    def make(
        names: tuple[str, ...] = ("rancher.example.com",),
        days: float = 365,
        wrong_key: bool = False,
        prefix: str = "tls",
        start_days: float = -1,
    ) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else "x")])
        sans: list[x509.GeneralName] = []
        for name in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                sans.append(x509.DNSName(name))
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW + timedelta(days=start_days))
            .not_valid_after(NOW + timedelta(days=days))
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(key, hashes.SHA256())
        written_key = ec.generate_private_key(ec.SECP256R1()) if wrong_key else key
        cert_path, key_path = tmp_path / f"{prefix}.crt", tmp_path / f"{prefix}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            written_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_path.chmod(0o600)
        return cert_path, key_path

    return make
