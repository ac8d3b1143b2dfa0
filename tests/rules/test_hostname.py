"""Rules hostname.fqdn, hostname.final, hostname.in_zone."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("hostname", "words"),
    [
        ("10.0.0.1", "IP address"),
        ("rancher", "single label"),
        ("*.example.com", "wildcard"),
        ("Rancher.example.com", "lowercase"),
        ("rancher_1.example.com", "label"),
        ("rancher.example.com.", "dot"),
        ("-rancher.example.com", "label"),
        ("ränch.example.com", "xn--"),
        ("rancher.example.123", "numeric"),
        ("a" * 64 + ".example.com", "label"),
    ],
)
def test_bad_hostname_is_an_error(base, findings, by_rule, hostname, words):
    base["hostname"] = hostname
    found = by_rule(findings(base), "hostname.fqdn")
    assert [(f.severity, f.path) for f in found] == [("error", "hostname")]
    assert words in found[0].message + found[0].fix


@pytest.mark.parametrize("hostname", ["rancher.example.com", "a-b.c9.example.com", "example.com"])
def test_good_hostname_passes(base, findings, by_rule, hostname):
    base["hostname"] = hostname
    assert by_rule(findings(base), "hostname.fqdn") == []


def test_final_is_always_an_info(base, findings, by_rule):
    found = by_rule(findings(base), "hostname.final")
    assert [f.severity for f in found] == ["info"]
    assert "cannot be changed" in found[0].message


def test_hostname_outside_zone_is_an_error(base, findings, by_rule):
    base["dns"]["zone"] = "example.org"
    found = by_rule(findings(base), "hostname.in_zone")
    assert [(f.severity, f.path) for f in found] == [("error", "dns.zone")]
    assert "example.com" in found[0].fix


def test_hostname_inside_zone_or_at_apex_passes(base, findings, by_rule):
    assert by_rule(findings(base), "hostname.in_zone") == []
    base["dns"]["zone"] = "rancher.example.com"
    assert by_rule(findings(base), "hostname.in_zone") == []


def test_suffix_that_is_not_a_label_boundary_is_outside(base, findings, by_rule):
    base["hostname"] = "rancher.myexample.com"
    assert len(by_rule(findings(base), "hostname.in_zone", "error")) == 1


def test_invalid_hostname_is_reported_once(base, findings, by_rule):
    base["hostname"] = "rancher"
    found = findings(base)
    assert by_rule(found, "hostname.in_zone") == []
    assert len(by_rule(found, "hostname.fqdn")) == 1
