"""The tlsfiles library: loading, key match, RFC 6125 matching, expiry, SSL context."""

from __future__ import annotations

from datetime import timedelta

import pytest

from rke2ha.errors import UsageError
from rke2ha.tlsfiles import TlsFileError, hostname_matches, load_tls_files

from .conftest import NOW


@pytest.mark.parametrize(
    ("pattern", "hostname", "expected"),
    [
        ("rancher.example.com", "rancher.example.com", True),
        ("Rancher.Example.COM", "rancher.example.com", True),
        ("rancher.example.com.", "rancher.example.com", True),
        ("*.example.com", "rancher.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "a.rancher.example.com", False),
        ("r*.example.com", "rancher.example.com", False),
        ("*.com", "example.com", False),
        ("rancher.*.com", "rancher.example.com", False),
        ("other.example.com", "rancher.example.com", False),
        ("*.example.com", ".example.com", False),
    ],
)
def test_hostname_matches_rfc6125(pattern, hostname, expected):
    assert hostname_matches(pattern, hostname) is expected


def test_material_answers_questions(make_cert):
    cert, key = make_cert(names=("rancher.example.com", "10.0.0.10"), days=20)
    material = load_tls_files(cert, key)
    assert material.key_matches()
    assert material.dns_names == ("rancher.example.com",)
    assert material.ip_addresses == ("10.0.0.10",)
    assert material.covers("rancher.example.com")
    assert material.covers("10.0.0.10")
    assert not material.covers("10.0.0.11")
    assert material.days_left(NOW) == pytest.approx(20)
    assert not material.is_expired(NOW)
    assert material.is_expired(NOW + timedelta(days=21))
    assert material.chain_problems() == []


def test_certificate_without_san_covers_nothing(make_cert):
    cert, key = make_cert(names=())
    material = load_tls_files(cert, key)
    assert material.subject_alt_names == ()
    assert not material.covers("x")


def test_missing_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        load_tls_files(tmp_path / "a.crt", tmp_path / "a.key")


def test_key_file_with_a_certificate_is_a_tls_error(make_cert):
    cert, _ = make_cert()
    with pytest.raises(TlsFileError, match="not a PEM private key"):
        load_tls_files(cert, cert)
