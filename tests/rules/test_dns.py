"""Rules dns.cname_apex and dns.record_target."""

from __future__ import annotations


def _cname(base, target="lb.example.net"):
    base["dns"]["record"] = "CNAME"
    if target is not None:
        base["dns"]["target"] = target
    return base


def test_cname_at_apex_is_an_error(base, findings, by_rule):
    _cname(base)
    base["dns"]["zone"] = "rancher.example.com"
    found = by_rule(findings(base), "dns.cname_apex")
    assert [(f.severity, f.path) for f in found] == [("error", "dns.record")]
    assert "record: A" in found[0].fix


def test_cname_below_apex_and_a_at_apex_pass(base, findings, by_rule):
    assert by_rule(findings(_cname(base)), "dns.cname_apex") == []
    base["dns"] = {"provider": "manual", "zone": "rancher.example.com", "record": "A"}
    assert by_rule(findings(base), "dns.cname_apex") == []


def test_a_record_to_a_hostname_is_an_error(base, findings, by_rule):
    base["load_balancer"]["address"] = "lb.example.net"
    found = by_rule(findings(base), "dns.record_target")
    assert [(f.severity, f.path) for f in found] == [("error", "load_balancer.address")]
    assert "CNAME" in found[0].fix


def test_a_record_to_ipv6_is_an_error(base, findings, by_rule):
    base["load_balancer"]["extra_addresses"] = ["2001:db8::10"]
    found = by_rule(findings(base), "dns.record_target")
    assert [(f.severity, f.path) for f in found] == [("error", "load_balancer.extra_addresses[0]")]
    assert "AAAA" in found[0].message


def test_a_record_to_ips_passes(base, findings, by_rule):
    base["load_balancer"]["extra_addresses"] = ["10.0.0.20"]
    assert by_rule(findings(base), "dns.record_target") == []


def test_a_record_to_aws_nlb_is_an_alias(base, findings, by_rule):
    base.update(provider="aws", region="us-east-1")
    base["nodes"] = [{"name": f"n{i}", "zone": f"us-east-1{z}"} for i, z in enumerate("abc")]
    base["load_balancer"] = {"engine": "aws-nlb"}
    base["aws"] = {"region": "us-east-1", "ami": "ami-1", "rke2_version": "v1.33.6+rke2r1"}
    found = findings(base)
    assert by_rule(found, "dns.record_target") == []
    assert [f for f in found if f.severity == "error"] == []


def test_cname_to_an_ip_is_an_error(base, findings, by_rule):
    _cname(base, target=None)
    found = by_rule(findings(base), "dns.record_target")
    assert [(f.severity, f.path) for f in found] == [("error", "load_balancer.address")]


def test_cname_to_a_hostname_passes(base, findings, by_rule):
    assert by_rule(findings(_cname(base)), "dns.record_target") == []


def test_cname_to_itself_is_an_error(base, findings, by_rule):
    _cname(base, target="rancher.example.com")
    found = by_rule(findings(base), "dns.record_target")
    assert [(f.severity, f.path) for f in found] == [("error", "dns.target")]
    assert "loop" in found[0].message


def test_cname_cannot_carry_extra_addresses(base, findings, by_rule):
    _cname(base)
    base["load_balancer"]["extra_addresses"] = ["10.0.0.20"]
    found = by_rule(findings(base), "dns.record_target")
    assert [(f.severity, f.path) for f in found] == [("error", "load_balancer.extra_addresses")]


def test_target_with_a_record_is_a_warning(base, findings, by_rule):
    base["dns"]["target"] = "lb.example.net"
    found = by_rule(findings(base), "dns.record_target")
    assert [(f.severity, f.path) for f in found] == [("warning", "dns.target")]
