"""Rules nodes.count, nodes.unique, nodes.region, nodes.zones."""

from __future__ import annotations

from typing import Any


def _nodes(count: int) -> list[dict[str, Any]]:
    return [
        {"name": f"node-{i}", "address": f"10.0.{i}.11", "zone": f"dc1-{i}"}
        for i in range(1, count + 1)
    ]


def test_base_spec_draws_no_error_or_warning(base, findings):
    assert [f for f in findings(base) if f.severity != "info"] == []


def test_count_two_is_an_error(base, findings, by_rule):
    base["nodes"] = _nodes(2)
    base["rancher"] = {"replicas": 2}
    found = by_rule(findings(base), "nodes.count")
    assert [f.severity for f in found] == ["error"]
    assert "tolerate no failure" in found[0].message
    assert "3" in found[0].fix
    assert found[0].path == "nodes"


def test_count_three_and_five_pass(base, findings, by_rule):
    assert by_rule(findings(base), "nodes.count") == []
    base["nodes"] = _nodes(5)
    assert by_rule(findings(base), "nodes.count") == []


def test_count_even_is_a_warning(base, findings, by_rule):
    base["nodes"] = _nodes(4)
    found = by_rule(findings(base), "nodes.count")
    assert [f.severity for f in found] == ["warning"]
    assert "3 or 5" in found[0].fix


def test_count_over_seven_is_a_warning(base, findings, by_rule):
    base["nodes"] = _nodes(9)
    found = by_rule(findings(base), "nodes.count")
    assert [f.severity for f in found] == ["warning"]
    assert "more than 7" in found[0].message


def test_duplicate_name_is_an_error(base, findings, by_rule):
    base["nodes"][2]["name"] = "node-1"
    found = by_rule(findings(base), "nodes.unique")
    assert [(f.severity, f.path) for f in found] == [("error", "nodes[2].name")]


def test_duplicate_address_is_an_error(base, findings, by_rule):
    base["nodes"][1]["address"] = "10.0.1.11"
    found = by_rule(findings(base), "nodes.unique")
    assert [(f.severity, f.path) for f in found] == [("error", "nodes[1].address")]


def test_unique_nodes_pass(base, findings, by_rule):
    assert by_rule(findings(base), "nodes.unique") == []


def test_node_region_outside_spec_region_is_an_error(base, findings, by_rule):
    base["nodes"][0]["region"] = "dc2"
    found = by_rule(findings(base), "nodes.region")
    assert [(f.severity, f.path) for f in found] == [("error", "nodes[0].region")]
    assert "dc1" in found[0].message


def test_aws_zone_outside_region_is_an_error(base, findings, by_rule):
    base["region"] = "us-east-1"
    for node, zone in zip(base["nodes"], ["us-east-1a", "us-east-1b", "eu-west-1a"], strict=True):
        node["zone"] = zone
    found = by_rule(findings(base), "nodes.region")
    assert [(f.severity, f.path) for f in found] == [("error", "nodes[2].zone")]


def test_aws_zones_inside_region_pass(base, findings, by_rule):
    base["region"] = "us-gov-west-1"
    for node, zone in zip(
        base["nodes"], ["us-gov-west-1a", "us-gov-west-1b", "us-gov-west-1c"], strict=True
    ):
        node["zone"] = zone
    assert by_rule(findings(base), "nodes.region") == []


def test_nodes_in_two_regions_without_spec_region_is_an_error(base, findings, by_rule):
    del base["region"]
    base["nodes"][0]["region"] = "east"
    base["nodes"][1]["region"] = "east"
    base["nodes"][2]["region"] = "west"
    found = by_rule(findings(base), "nodes.region")
    assert [(f.severity, f.path) for f in found] == [("error", "nodes[2].region")]


def test_all_in_one_zone_is_a_warning(base, findings, by_rule):
    for node in base["nodes"]:
        node["zone"] = "dc1-a"
    found = by_rule(findings(base), "nodes.zones")
    assert [f.severity for f in found] == ["warning"]
    assert "dc1-a" in found[0].message


def test_spread_or_unknown_zones_pass(base, findings, by_rule):
    assert by_rule(findings(base), "nodes.zones") == []
    for node in base["nodes"]:
        node.pop("zone")
    assert by_rule(findings(base), "nodes.zones") == []
