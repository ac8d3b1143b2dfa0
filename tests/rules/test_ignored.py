"""Rule provider.ignored: a field set in the spec that its provider does not act on."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.rules.shapes import as_aws, as_lab

from rke2ha.rules.validation import validate_file

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _ignored(findings, by_rule, data):
    return [(f.severity, f.path) for f in by_rule(findings(data), "provider.ignored")]


@pytest.mark.parametrize("shape", [as_aws, as_lab, lambda b: b])
def test_defaults_and_filled_in_values_are_never_reported(base, findings, by_rule, shape):
    # The lab fills in load_balancer.address and node addresses, every provider
    # rke2.anonymous_health and rancher.tls_source: none of it was the user's doing.
    assert _ignored(findings, by_rule, shape(base)) == []


def test_rke2_version_with_existing_is_a_warning_with_the_real_place(base, findings, by_rule):
    base["rke2"]["version"] = "v1.33.6+rke2r1"
    # existing uses it only when rke2ha installs RKE2: rule rke2.install says so.
    assert by_rule(findings(base), "provider.ignored") == []
    found = by_rule(findings(base), "rke2.install")
    assert [(f.severity, f.path) for f in found] == [("warning", "rke2.version")]
    assert "provider existing does not use it" in found[0].message
    assert found[0].fix.startswith("remove rke2.version; ")
    assert "INSTALL_RKE2_VERSION" in found[0].fix


def test_rke2_version_with_aws_points_to_aws_rke2_version(base, findings, by_rule):
    as_aws(base)["rke2"] = {"version": "v1.33.6+rke2r1"}
    found = by_rule(findings(base), "provider.ignored")
    assert [f.path for f in found] == ["rke2.version"]
    assert "aws.rke2_version" in found[0].fix


def test_rke2_version_in_the_lab_is_used(base, findings, by_rule):
    as_lab(base)["rke2"]["version"] = "v1.33.6+rke2r1"
    assert _ignored(findings, by_rule, base) == []


def test_lab_ignores_rancher_install_settings(base, findings, by_rule):
    as_lab(base)["rancher"] = {"replicas": 5, "version": "2.10.1", "tls_source": "rancher"}
    # tls_source is used by the lab (its Rancher stand-in honours tls=external).
    assert _ignored(findings, by_rule, base) == [
        ("warning", "rancher.replicas"),
        ("warning", "rancher.version"),
    ]


def test_an_ignored_block_is_reported_once_not_per_field(base, findings, by_rule):
    as_lab(base)["load_balancer"]["pair"] = {"primary": "10.0.0.1", "standby": "10.0.0.2"}
    assert _ignored(findings, by_rule, base) == [("warning", "load_balancer.pair")]


def test_list_items_are_named_by_index(base, findings, by_rule):
    as_aws(base)["load_balancer"]["admin"] = "127.0.0.1:9000"
    base["load_balancer"]["idle_timeout"] = "2h"
    assert _ignored(findings, by_rule, base) == [
        ("warning", "load_balancer.admin"),
        ("warning", "load_balancer.idle_timeout"),
    ]


def test_health_token_with_aws_suggests_anonymous_health(base, findings, by_rule):
    as_aws(base)["load_balancer"]["health"] = {"token_file": "token"}
    found = by_rule(findings(base), "provider.ignored")
    assert [f.path for f in found] == ["load_balancer.health.token_file"]
    assert "rke2.anonymous_health" in found[0].fix


@pytest.mark.parametrize(
    ("shape", "block", "value", "path"),
    [
        (lambda b: b, "aws", {"region": "dc1", "ami": "ami-1", "rke2_version": "v1"}, "aws"),
        (lambda b: b, "lab", {"subnet": "127.0.10.0/24"}, "lab"),
        (as_lab, "aws", {"region": "dc1", "ami": "ami-1", "rke2_version": "v1"}, "aws"),
    ],
)
def test_what_rule_provider_refuses_is_not_reported_twice(
    base, findings, by_rule, shape, block, value, path
):
    shape(base)[block] = value
    found = findings(base)
    assert [(f.severity, f.path) for f in by_rule(found, "provider")] == [("error", path)]
    assert by_rule(found, "provider.ignored") == []


def test_node_address_with_aws_is_only_the_provider_error(base, findings, by_rule):
    as_aws(base)["nodes"][1]["address"] = "10.0.0.5"
    found = findings(base)
    assert [f.path for f in by_rule(found, "provider")] == ["nodes[1].address"]
    assert by_rule(found, "provider.ignored") == []


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_set_nothing_their_provider_ignores(path):
    assert [f.path for f in validate_file(path).findings if f.id == "provider.ignored"] == []


def test_validate_names_the_line_and_exits_0(run_cli, tmp_path):
    text = (EXAMPLES / "existing-l4.yaml").read_text()
    text = text.replace(
        "rke2:\n  anonymous_health: true\n",
        "rke2:\n  anonymous_health: true\n  version: v1.33.6+rke2r1\n",
    )
    (tmp_path / "secrets").mkdir()
    key = tmp_path / "secrets" / "tsig.secret"
    key.write_bytes((EXAMPLES / "secrets" / "tsig.secret").read_bytes())
    key.chmod(0o600)
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    line = text.splitlines().index("  version: v1.33.6+rke2r1") + 1
    result = run_cli("validate", "-f", str(spec))
    assert result.code == 0, result.err
    assert f"warning rke2.install  rke2.version ({spec}:{line})" in result.out


def test_lab_draws_no_replica_count_warning(base, findings, by_rule):
    # Nothing installs Rancher in the lab, so rule rancher.replicas has nothing to say.
    as_lab(base)["nodes"] = base["nodes"][:1]
    assert by_rule(findings(base), "rancher.replicas") == []
    base["provider"] = "existing"
    base["nodes"] = [{"name": "node-1", "address": "10.0.1.11", "zone": "z0"}]
    base["load_balancer"]["address"] = "10.0.0.10"
    assert [f.path for f in by_rule(findings(base), "rancher.replicas")] == ["rancher.replicas"]


def test_a_default_set_again_is_not_reported(base, findings, by_rule):
    as_lab(base)["rancher"] = {"replicas": 3, "cert_manager_version": "v1.16.2"}
    base["rke2"] = {"version": None, "cni": "canal", "anonymous_health": True}
    base["load_balancer"]["pair"] = None
    assert _ignored(findings, by_rule, base) == []


@pytest.mark.parametrize("shape", [as_aws, as_lab, lambda b: b])
def test_a_full_dump_of_a_spec_draws_nothing(base, findings, by_rule, make_spec, shape):
    # Programs write specs with every field (e.g. the copy the built-in load balancer gets).
    dumped = make_spec(shape(base)).model_dump(mode="json")
    assert _ignored(findings, by_rule, dumped) == []
