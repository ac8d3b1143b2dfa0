"""Rule lb.layer7_tls, with real certificates and keys written to tmp files."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def _layer7(base, cert=None, key=None):
    base["load_balancer"].update(layer=7, engine="nginx")
    if cert is not None:
        base["load_balancer"]["tls"] = {"cert": str(cert), "key": str(key)}
    return base


def _errors(found):
    return [(f.severity, f.path) for f in found]


def test_valid_certificate_passes(base, findings, by_rule, make_cert):
    cert, key = make_cert()
    assert by_rule(findings(_layer7(base, cert, key)), "lb.layer7_tls") == []


def test_relative_paths_are_read_beside_the_spec(base, findings, by_rule, make_cert):
    make_cert()
    assert by_rule(findings(_layer7(base, "tls.crt", "tls.key")), "lb.layer7_tls") == []


def test_layer7_without_certificate_is_an_error(base, findings, by_rule):
    found = by_rule(findings(_layer7(base)), "lb.layer7_tls")
    assert _errors(found) == [("error", "load_balancer.tls")]


def test_layer7_with_rancher_terminating_tls_is_an_error(base, findings, by_rule, make_cert):
    cert, key = make_cert()
    _layer7(base, cert, key)["rancher"] = {"tls_source": "rancher"}
    found = by_rule(findings(base), "lb.layer7_tls")
    assert _errors(found) == [("error", "rancher.tls_source")]
    assert "external" in found[0].fix


def test_external_tls_at_layer4_is_an_error(base, findings, by_rule):
    base["rancher"] = {"tls_source": "external"}
    found = by_rule(findings(base), "lb.layer7_tls")
    assert _errors(found) == [("error", "rancher.tls_source")]


def test_layer4_default_passes_and_ignored_tls_is_a_warning(base, findings, by_rule, make_cert):
    assert by_rule(findings(base), "lb.layer7_tls") == []
    cert, key = make_cert()
    base["load_balancer"]["tls"] = {"cert": str(cert), "key": str(key)}
    assert _errors(by_rule(findings(base), "lb.layer7_tls")) == [("warning", "load_balancer.tls")]


def test_missing_certificate_file_is_an_error(base, findings, by_rule, tmp_path):
    found = by_rule(
        findings(_layer7(base, tmp_path / "no.crt", tmp_path / "no.key")), "lb.layer7_tls"
    )
    assert _errors(found) == [("error", "load_balancer.tls")]
    assert "no.crt" in found[0].message


def test_file_that_is_not_pem_is_an_error(base, findings, by_rule, make_cert, tmp_path):
    _, key = make_cert()
    (tmp_path / "junk.crt").write_text("hello\n")
    found = by_rule(findings(_layer7(base, tmp_path / "junk.crt", key)), "lb.layer7_tls")
    assert _errors(found) == [("error", "load_balancer.tls")]
    assert "not a PEM certificate" in found[0].message


def test_key_of_another_certificate_is_an_error(base, findings, by_rule, make_cert):
    cert, key = make_cert(wrong_key=True)
    found = by_rule(findings(_layer7(base, cert, key)), "lb.layer7_tls")
    assert _errors(found) == [("error", "load_balancer.tls.key")]
    assert "does not belong" in found[0].message


def test_sans_not_covering_the_hostname_is_an_error(base, findings, by_rule, make_cert):
    cert, key = make_cert(names=("other.example.com", "*.rancher.example.com"))
    found = by_rule(findings(_layer7(base, cert, key)), "lb.layer7_tls")
    assert _errors(found) == [("error", "load_balancer.tls.cert")]
    assert "other.example.com" in found[0].message


def test_wildcard_covering_the_hostname_passes(base, findings, by_rule, make_cert):
    cert, key = make_cert(names=("*.example.com",))
    assert by_rule(findings(_layer7(base, cert, key)), "lb.layer7_tls") == []


def test_expired_certificate_is_an_error(base, findings, by_rule, make_cert):
    cert, key = make_cert(days=-1, start_days=-100)
    found = by_rule(findings(_layer7(base, cert, key)), "lb.layer7_tls")
    assert _errors(found) == [("error", "load_balancer.tls.cert")]
    assert "expired" in found[0].message


def test_certificate_expiring_soon_is_a_warning(base, findings, by_rule, make_cert):
    cert, key = make_cert(days=10)
    found = by_rule(findings(_layer7(base, cert, key)), "lb.layer7_tls")
    assert _errors(found) == [("warning", "load_balancer.tls.cert")]
    assert "10 days" in found[0].message


def test_certificate_not_yet_valid_is_an_error(base, findings, by_rule, make_cert):
    cert, key = make_cert(start_days=5)
    found = by_rule(findings(_layer7(base, cert, key)), "lb.layer7_tls")
    assert _errors(found) == [("error", "load_balancer.tls.cert")]


def test_key_readable_by_others_is_an_error(base, findings, by_rule, make_cert):
    # An error, as `render` and `up` refuse to read such a key.
    cert, key = make_cert()
    key.chmod(0o644)
    found = by_rule(findings(_layer7(base, cert, key)), "lb.layer7_tls")
    assert _errors(found) == [("error", "load_balancer.tls.key")]
    assert "chmod 600" in found[0].fix


def test_chain_in_wrong_order_is_a_warning(base, findings, by_rule, make_cert, tmp_path):
    cert, key = make_cert()
    other, _ = make_cert(names=("ca.example.com",), prefix="other")
    (tmp_path / "chain.crt").write_bytes(cert.read_bytes() + other.read_bytes())
    found = by_rule(findings(_layer7(base, tmp_path / "chain.crt", key)), "lb.layer7_tls")
    assert _errors(found) == [("warning", "load_balancer.tls.cert")]
    assert "not issued by" in found[0].message


def test_encrypted_key_is_an_error_that_shows_no_key(base, findings, by_rule, make_cert, tmp_path):
    cert, _ = make_cert()
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pass"),
    )
    (tmp_path / "enc.key").write_bytes(pem)
    found = by_rule(findings(_layer7(base, cert, tmp_path / "enc.key")), "lb.layer7_tls")
    assert _errors(found) == [("error", "load_balancer.tls")]
    assert "encrypted" in found[0].message
    assert "BEGIN" not in found[0].message and pem.decode()[40:80] not in found[0].message


def _lab(base):
    base.update(provider="lab", region="local")
    base["nodes"] = [{"name": n, "zone": f"local-{z}"} for n, z in zip("abc", "abc", strict=True)]
    base["dns"] = {"provider": "builtin", "zone": "example.com", "record": "A"}
    base["load_balancer"]["engine"] = "builtin"
    return base


def test_lab_certificate_not_made_yet_is_an_info(base, findings, by_rule, tmp_path):
    """`rke2ha up` issues the lab's own certificate; before that, its absence is no error."""
    own = ".rke2ha/lab/pki"
    spec = _layer7(_lab(base), f"{own}/ingress.crt", f"{own}/ingress.key")
    spec["load_balancer"]["engine"] = "builtin"
    found = by_rule(findings(spec), "lb.layer7_tls")
    assert _errors(found) == [("info", "load_balancer.tls")]
    assert "rke2ha up" in found[0].message


def test_lab_with_a_missing_certificate_elsewhere_is_an_error(base, findings, by_rule, tmp_path):
    spec = _layer7(_lab(base), tmp_path / "no.crt", tmp_path / "no.key")
    spec["load_balancer"]["engine"] = "builtin"
    assert _errors(by_rule(findings(spec), "lb.layer7_tls")) == [("error", "load_balancer.tls")]


def test_lab_certificate_once_made_is_checked_like_any_other(
    base, findings, by_rule, make_cert, tmp_path
):
    own = tmp_path / ".rke2ha" / "lab" / "pki"
    own.mkdir(parents=True)
    cert, key = make_cert(names=["other.example.net"])
    (own / "ingress.crt").write_bytes(cert.read_bytes())
    (own / "ingress.key").write_bytes(key.read_bytes())
    spec = _layer7(_lab(base), own / "ingress.crt", own / "ingress.key")
    spec["load_balancer"]["engine"] = "builtin"
    found = by_rule(findings(spec), "lb.layer7_tls")
    assert ("error", "load_balancer.tls.cert") in _errors(found)  # does not cover the hostname
