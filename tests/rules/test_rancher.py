"""Rules rancher.replicas and rancher.letsencrypt."""

from __future__ import annotations


def test_more_replicas_than_nodes_is_a_warning(base, findings, by_rule):
    base["rancher"] = {"replicas": 5}
    found = by_rule(findings(base), "rancher.replicas")
    assert [(f.severity, f.path) for f in found] == [("warning", "rancher.replicas")]


def test_one_replica_is_a_warning(base, findings, by_rule):
    base["rancher"] = {"replicas": 1}
    found = by_rule(findings(base), "rancher.replicas")
    assert [(f.severity, f.path) for f in found] == [("warning", "rancher.replicas")]


def test_one_replica_per_node_passes(base, findings, by_rule):
    base["rancher"] = {"replicas": 3}
    assert by_rule(findings(base), "rancher.replicas") == []


def test_letsencrypt_without_email_is_an_error(base, findings, by_rule):
    base["rancher"] = {"tls_source": "letsEncrypt"}
    found = by_rule(findings(base), "rancher.letsencrypt")
    assert [(f.severity, f.path) for f in found] == [("error", "rancher.letsencrypt_email")]


def test_letsencrypt_with_email_passes(base, findings, by_rule):
    base["rancher"] = {"tls_source": "letsEncrypt", "letsencrypt_email": "ops@example.com"}
    assert by_rule(findings(base), "rancher.letsencrypt") == []
