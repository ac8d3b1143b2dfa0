"""The lab CA and the material on disk, verified with the real `openssl` binary."""

from __future__ import annotations

import stat
import subprocess
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from tests.lab.conftest import HOSTNAME, lab_spec, write_spec

from rke2ha.errors import UsageError
from rke2ha.lab.ca import LabCA, LabCAError
from rke2ha.lab.material import LabPki, ensure_lab_material, health_token_file
from rke2ha.specfile import load_spec


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def openssl_verify(ca: Path, cert: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", "verify", "-CAfile", str(ca), *flags, str(cert)],
        capture_output=True,
        text=True,
        timeout=10,
    )


def test_ca_is_an_ec_p256_root_for_ten_years() -> None:
    ca = LabCA.create()
    assert isinstance(ca.key, ec.EllipticCurvePrivateKey) and ca.key.curve.name == "secp256r1"
    constraints = ca.cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = ca.cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    lifetime = ca.cert.not_valid_after_utc - ca.cert.not_valid_before_utc
    assert timedelta(days=3649) < lifetime <= timedelta(days=3651)
    assert ca.cert.issuer == ca.cert.subject
    assert "PRIVATE" not in repr(ca)


def test_leaf_verifies_against_the_ca_with_openssl(tmp_path: Path) -> None:
    ca = LabCA.create()
    ca.save(tmp_path / "ca.crt", tmp_path / "ca.key")
    leaf = ca.issue([HOSTNAME, "10.99.0.1", "127.0.40.7", HOSTNAME])
    leaf.save(tmp_path / "leaf.crt", tmp_path / "leaf.key")
    assert mode(tmp_path / "ca.key") == 0o600 and mode(tmp_path / "leaf.key") == 0o600
    assert leaf.dns_names == [HOSTNAME]
    assert [str(ip) for ip in leaf.ip_addresses] == ["10.99.0.1", "127.0.40.7"]
    eku = leaf.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    ok = openssl_verify(
        tmp_path / "ca.crt", tmp_path / "leaf.crt", "-purpose", "sslserver",
        "-verify_hostname", HOSTNAME,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    ip_ok = openssl_verify(tmp_path / "ca.crt", tmp_path / "leaf.crt", "-verify_ip", "127.0.40.7")
    assert ip_ok.returncode == 0, ip_ok.stderr
    wrong = openssl_verify(
        tmp_path / "ca.crt", tmp_path / "leaf.crt", "-verify_hostname", "other.example.com"
    )
    assert wrong.returncode != 0 and "hostname mismatch" in wrong.stdout + wrong.stderr
    stranger = LabCA.create()
    stranger.save(tmp_path / "other-ca.crt", tmp_path / "other-ca.key")
    assert openssl_verify(tmp_path / "other-ca.crt", tmp_path / "leaf.crt").returncode != 0
    assert ca.issued(leaf.cert) and not stranger.issued(leaf.cert)


def test_expired_and_short_lived_certificates(tmp_path: Path) -> None:
    ca = LabCA.create()
    ca.save(tmp_path / "ca.crt", tmp_path / "ca.key")
    now = datetime.now(UTC)
    expired = ca.issue(
        [HOSTNAME], not_before=now - timedelta(days=30), not_after=now - timedelta(days=1)
    )
    expired.save(tmp_path / "expired.crt", tmp_path / "expired.key")
    result = openssl_verify(tmp_path / "ca.crt", tmp_path / "expired.crt")
    assert result.returncode != 0 and "expired" in result.stdout + result.stderr
    short = ca.issue([HOSTNAME], valid_for=timedelta(days=7))
    left = short.cert.not_valid_after_utc - now
    assert timedelta(days=6) < left < timedelta(days=7)
    with pytest.raises(UsageError, match="before it starts"):
        ca.issue([HOSTNAME], not_before=now, not_after=now - timedelta(seconds=1))
    with pytest.raises(UsageError, match="at least one"):
        ca.issue([])


def test_load_round_trip_and_mismatched_key(tmp_path: Path) -> None:
    ca = LabCA.create()
    ca.save(tmp_path / "ca.crt", tmp_path / "ca.key")
    loaded = LabCA.load(tmp_path / "ca.crt", tmp_path / "ca.key")
    assert loaded.cert == ca.cert
    LabCA.create().save(tmp_path / "b.crt", tmp_path / "b.key")
    with pytest.raises(LabCAError, match="does not belong"):
        LabCA.load(tmp_path / "ca.crt", tmp_path / "b.key")
    (tmp_path / "junk.crt").write_text("not pem")
    with pytest.raises(LabCAError, match="not a PEM certificate"):
        LabCA.load(tmp_path / "junk.crt", tmp_path / "ca.key")
    with pytest.raises(UsageError, match="not found"):
        LabCA.load(tmp_path / "missing.crt", tmp_path / "ca.key")


def _spec_file(tmp_path: Path, **overrides: object) -> Path:
    return write_spec(
        tmp_path, lab_spec(["127.0.40.11", "127.0.40.12", "127.0.40.13"], **overrides)
    )


def test_material_is_created_once_and_reused(tmp_path: Path) -> None:
    spec = load_spec(_spec_file(tmp_path))
    first = ensure_lab_material(spec)
    pki = first.pki
    assert pki.directory == tmp_path / ".rke2ha" / "lab" / "pki"
    assert mode(pki.ca_key) == 0o600 and mode(pki.ingress_key) == 0o600
    assert mode(pki.node_key("node-2")) == 0o600 and mode(first.health_token_file) == 0o600
    before = {p: p.read_bytes() for p in pki.directory.rglob("*") if p.is_file()}
    token = first.health_token_file.read_text()
    second = ensure_lab_material(spec)
    assert {p: p.read_bytes() for p in pki.directory.rglob("*") if p.is_file()} == before
    assert second.health_token_file.read_text() == token
    node_cert = x509.load_pem_x509_certificate(pki.node_cert("node-2").read_bytes())
    san = node_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"node-2", HOSTNAME, "localhost", "kubernetes.default.svc"} <= set(
        san.get_values_for_type(x509.DNSName)
    )
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {
        "127.0.40.12",
        "127.0.40.10",  # the load balancer address from lab.subnet (tls-san)
        "127.0.0.1",
    }
    for name in ("node-1", "node-3"):
        result = openssl_verify(pki.ca_cert, pki.node_cert(name), "-verify_ip", "127.0.40.10")
        assert result.returncode == 0, result.stderr


def test_changed_spec_reissues_leaves_but_keeps_the_ca(tmp_path: Path) -> None:
    spec_file = _spec_file(tmp_path)
    pki = ensure_lab_material(load_spec(spec_file)).pki
    ca_before, ingress_before = pki.ca_cert.read_bytes(), pki.ingress_cert.read_bytes()
    spec_file.write_text(
        yaml.safe_dump(
            lab_spec(
                ["127.0.40.11", "127.0.40.12", "127.0.40.13"],
                hostname="rancher2.lab.rke2ha.test",
            )
        )
    )
    ensure_lab_material(load_spec(spec_file))
    assert pki.ca_cert.read_bytes() == ca_before
    assert pki.ingress_cert.read_bytes() != ingress_before
    result = openssl_verify(
        pki.ca_cert, pki.ingress_cert, "-verify_hostname", "rancher2.lab.rke2ha.test"
    )
    assert result.returncode == 0, result.stderr


def test_an_expiring_leaf_is_renewed(tmp_path: Path) -> None:
    spec = load_spec(_spec_file(tmp_path))
    pki = ensure_lab_material(spec).pki
    ca = LabCA.load(pki.ca_cert, pki.ca_key)
    now = datetime.now(UTC)
    ca.issue([HOSTNAME, "127.0.40.10"], not_before=now - timedelta(days=60), not_after=now).save(
        pki.ingress_cert, pki.ingress_key
    )
    planted = pki.ingress_cert.read_bytes()
    ensure_lab_material(spec, renew=False)  # the node emulator's call: serve what is there
    assert pki.ingress_cert.read_bytes() == planted
    ensure_lab_material(spec)  # `up`: renew
    renewed = x509.load_pem_x509_certificate(pki.ingress_cert.read_bytes())
    assert renewed.not_valid_after_utc > now + timedelta(days=300)


def test_concurrent_callers_share_one_ca(tmp_path: Path) -> None:
    spec = load_spec(_spec_file(tmp_path))
    pki_dir = tmp_path / "shared-pki"
    errors: list[BaseException] = []

    def prepare() -> None:
        try:
            ensure_lab_material(spec, pki_dir)
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=prepare) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    pki = LabPki(pki_dir)
    for name in ("node-1", "node-2", "node-3"):
        assert openssl_verify(pki.ca_cert, pki.node_cert(name)).returncode == 0


def test_health_token_file_follows_the_spec(tmp_path: Path) -> None:
    default = load_spec(_spec_file(tmp_path))
    assert health_token_file(default) == tmp_path / ".rke2ha" / "secrets" / "lab-health-token"
    named = load_spec(
        _spec_file(tmp_path, load_balancer={"health": {"token_file": "tokens/health"}})
    )
    assert health_token_file(named) == tmp_path / "tokens" / "health"
