"""Rule provider: each provider's blocks present, complete, and no other provider's."""

from __future__ import annotations

import pytest
from tests.rules.shapes import as_aws, as_lab


def _paths(found):
    return [(f.severity, f.path) for f in found]


@pytest.mark.parametrize("shape", [as_aws, as_lab, lambda b: b])
def test_complete_specs_pass(base, findings, by_rule, shape):
    assert by_rule(findings(shape(base)), "provider") == []


def test_aws_without_aws_block_is_an_error(base, findings, by_rule):
    as_aws(base).pop("aws")
    assert _paths(by_rule(findings(base), "provider")) == [("error", "aws")]


def test_aws_region_mismatch_is_an_error(base, findings, by_rule):
    as_aws(base)["aws"]["region"] = "us-west-2"
    assert _paths(by_rule(findings(base), "provider")) == [("error", "aws.region")]


def test_aws_bad_cidr_is_an_error(base, findings, by_rule):
    as_aws(base)["aws"]["allowed_cidrs"] = ["10.0.0.0/8", "office"]
    assert _paths(by_rule(findings(base), "provider")) == [("error", "aws.allowed_cidrs[1]")]


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "::/0"])
def test_aws_api_and_registration_open_to_the_internet_is_a_warning(base, findings, by_rule, cidr):
    as_aws(base)["aws"]["allowed_cidrs"] = ["203.0.113.0/24", cidr]
    found = by_rule(findings(base), "provider")
    assert _paths(found) == [("warning", "aws.allowed_cidrs[1]")]
    assert "6443 and 9345" in found[0].message


def test_aws_everyone_on_rancher_ports_only_passes(base, findings, by_rule):
    as_aws(base)["aws"]["allowed_cidrs"] = ["0.0.0.0/0"]
    base["load_balancer"]["ports"] = [80, 443]
    assert by_rule(findings(base), "provider") == []


def test_aws_with_another_engine_is_an_error(base, findings, by_rule):
    as_aws(base)["load_balancer"]["engine"] = "haproxy"
    assert _paths(by_rule(findings(base), "provider")) == [("error", "load_balancer.engine")]


def test_aws_with_given_addresses_is_an_error(base, findings, by_rule):
    as_aws(base)["nodes"][1]["address"] = "10.0.0.5"
    base["load_balancer"]["address"] = "10.0.0.9"
    assert _paths(by_rule(findings(base), "provider")) == [
        ("error", "load_balancer.address"),
        ("error", "nodes[1].address"),
    ]


def test_aws_with_keepalived_pair_is_an_error(base, findings, by_rule):
    as_aws(base)["load_balancer"]["pair"] = {"primary": "a", "standby": "b"}
    assert ("error", "load_balancer.pair") in _paths(by_rule(findings(base), "provider"))


def test_existing_without_addresses_is_an_error(base, findings, by_rule):
    del base["nodes"][0]["address"]
    del base["load_balancer"]["address"]
    assert _paths(by_rule(findings(base), "provider")) == [
        ("error", "load_balancer.address"),
        ("error", "nodes[0].address"),
    ]


def test_existing_with_aws_nlb_is_an_error(base, findings, by_rule):
    base["load_balancer"]["engine"] = "aws-nlb"
    assert _paths(by_rule(findings(base), "provider")) == [("error", "load_balancer.engine")]


@pytest.mark.parametrize(
    ("block", "value", "path"),
    [
        ("aws", {"region": "dc1", "ami": "ami-1", "rke2_version": "v1"}, "aws"),
        ("lab", {"subnet": "127.0.10.0/24"}, "lab"),
    ],
)
def test_other_providers_block_is_an_error(base, findings, by_rule, block, value, path):
    base[block] = value
    assert _paths(by_rule(findings(base), "provider")) == [("error", path)]


@pytest.mark.parametrize(
    ("block", "value"),
    [
        ("route53", {"hosted_zone_id": "Z1"}),
        ("rfc2136", {"server": "10.0.0.53", "key_name": "k.", "key_file": "k"}),
    ],
)
def test_other_dns_providers_block_is_an_error(base, findings, by_rule, block, value):
    base["dns"][block] = value
    assert _paths(by_rule(findings(base), "provider")) == [("error", f"dns.{block}")]


def test_lab_with_aws_nlb_is_an_error(base, findings, by_rule):
    as_lab(base)["load_balancer"]["engine"] = "aws-nlb"
    assert _paths(by_rule(findings(base), "provider")) == [("error", "load_balancer.engine")]


def test_lab_address_outside_subnet_is_an_error(base, findings, by_rule):
    as_lab(base)["nodes"][2]["address"] = "127.0.99.13"
    assert _paths(by_rule(findings(base), "provider")) == [("error", "nodes[2].address")]


def test_lab_address_inside_subnet_passes(base, findings, by_rule):
    as_lab(base)["nodes"][2]["address"] = "127.0.10.99"
    assert by_rule(findings(base), "provider") == []


def test_lab_cannot_publish_to_route53(base, findings, by_rule):
    as_lab(base)["dns"]["provider"] = "route53"
    assert _paths(by_rule(findings(base), "provider")) == [("error", "dns.provider")]


def test_lab_rfc2136_server_must_be_loopback(base, findings, by_rule, tmp_path):
    (tmp_path / "tsig").write_text("c2VjcmV0\n")
    (tmp_path / "tsig").chmod(0o600)
    block = {"server": "192.0.2.53", "key_name": "k.", "key_file": "tsig"}
    as_lab(base)["dns"].update(provider="rfc2136", rfc2136=block)
    assert _paths(by_rule(findings(base), "provider")) == [("error", "dns.rfc2136.server")]
    block["server"] = "127.0.21.53"
    assert by_rule(findings(base), "provider") == []


def test_rfc2136_without_block_is_an_error(base, findings, by_rule):
    base["dns"]["provider"] = "rfc2136"
    assert _paths(by_rule(findings(base), "provider")) == [("error", "dns.rfc2136")]


def _rfc2136(base, key_file="tsig.secret"):
    block = {"server": "10.0.0.53", "key_name": "k.", "key_file": key_file}
    base["dns"].update(provider="rfc2136", rfc2136=block)
    return base


def test_rfc2136_missing_key_file_is_an_error(base, findings, by_rule):
    found = by_rule(findings(_rfc2136(base)), "provider")
    assert _paths(found) == [("error", "dns.rfc2136.key_file")]
    assert "tsig-keygen" in found[0].fix


def test_rfc2136_key_file_readable_by_others_is_an_error(base, findings, by_rule, tmp_path):
    # An error, as `plan` and `up` refuse to read such a key.
    (tmp_path / "tsig.secret").write_text("c2VjcmV0\n")
    (tmp_path / "tsig.secret").chmod(0o640)
    found = by_rule(findings(_rfc2136(base)), "provider")
    assert _paths(found) == [("error", "dns.rfc2136.key_file")]
    assert "640" in found[0].message
    assert "c2VjcmV0" not in found[0].message + found[0].fix


def test_rfc2136_private_key_file_passes(base, findings, by_rule, tmp_path):
    (tmp_path / "tsig.secret").write_text("c2VjcmV0\n")
    (tmp_path / "tsig.secret").chmod(0o600)
    assert by_rule(findings(_rfc2136(base)), "provider") == []
