"""Rules lb.ports, lb.engine_layer, lb.on_node, lb.dedicated, lb.health, lb.pair,
lb.send_proxy."""

from __future__ import annotations

import pytest


def test_missing_80_or_443_is_an_error(base, findings, by_rule):
    base["load_balancer"]["ports"] = [443, 6443, 9345]
    found = by_rule(findings(base), "lb.ports")
    assert [(f.severity, f.path) for f in found] == [("error", "load_balancer.ports")]
    assert "add 80" in found[0].fix


def test_missing_6443_or_9345_is_a_warning(base, findings, by_rule):
    base["load_balancer"]["ports"] = [80, 443]
    found = by_rule(findings(base), "lb.ports")
    assert [f.severity for f in found] == ["warning", "warning"]
    assert {"add 6443 to load_balancer.ports", "add 9345 to load_balancer.ports"} == {
        f.fix for f in found
    }


def test_duplicate_port_is_an_error(base, findings, by_rule):
    base["load_balancer"]["ports"] = [80, 443, 6443, 9345, 443]
    found = by_rule(findings(base), "lb.ports")
    assert [(f.severity, f.path) for f in found] == [("error", "load_balancer.ports[4]")]


def test_default_ports_pass(base, findings, by_rule):
    assert by_rule(findings(base), "lb.ports") == []


def test_aws_nlb_at_layer_7_is_an_error(base, findings, by_rule):
    base["load_balancer"].update(engine="aws-nlb", layer=7)
    found = by_rule(findings(base), "lb.engine_layer")
    assert [(f.severity, f.path) for f in found] == [("error", "load_balancer.layer")]


@pytest.mark.parametrize(("engine", "layer"), [("aws-nlb", 4), ("haproxy", 7), ("nginx", 7)])
def test_engine_that_can_do_the_layer_passes(base, findings, by_rule, engine, layer):
    base["load_balancer"].update(engine=engine, layer=layer)
    assert by_rule(findings(base), "lb.engine_layer") == []


def test_lb_on_a_node_is_an_error(base, findings, by_rule):
    base["load_balancer"]["address"] = "10.0.2.11"
    found = by_rule(findings(base), "lb.on_node")
    assert [(f.severity, f.path) for f in found] == [("error", "load_balancer.address")]
    assert "node-2" in found[0].message


def test_lb_pair_host_on_a_node_is_an_error(base, findings, by_rule):
    base["load_balancer"]["pair"] = {"primary": "10.0.0.8", "standby": "10.0.3.11"}
    found = by_rule(findings(base), "lb.on_node")
    assert [(f.severity, f.path) for f in found] == [("error", "load_balancer.pair.standby")]


def test_lb_off_the_nodes_passes(base, findings, by_rule):
    assert by_rule(findings(base), "lb.on_node") == []


def test_shared_lb_is_a_warning(base, findings, by_rule):
    base["load_balancer"]["shared_with"] = ["grafana.example.com"]
    found = by_rule(findings(base), "lb.dedicated")
    assert [(f.severity, f.path) for f in found] == [("warning", "load_balancer.shared_with")]
    assert "websocket" in found[0].message


def test_dedicated_lb_passes(base, findings, by_rule):
    assert by_rule(findings(base), "lb.dedicated") == []


def test_slow_detection_is_a_warning(base, findings, by_rule):
    base["load_balancer"]["health"] = {"interval": "10s", "fall": 3, "timeout": "5s"}
    found = by_rule(findings(base), "lb.health")
    assert [(f.severity, f.path) for f in found] == [("warning", "load_balancer.health")]
    assert "35s" in found[0].message


def test_detection_of_exactly_30s_passes(base, findings, by_rule):
    base["load_balancer"]["health"] = {"interval": "10s", "fall": 2, "timeout": "10s"}
    assert by_rule(findings(base), "lb.health") == []


def test_readyz_200_only_without_token_or_anonymous_is_an_error(base, findings, by_rule):
    base["rke2"]["anonymous_health"] = False
    base["load_balancer"]["health"] = {"readyz_status": [200]}
    found = by_rule(findings(base), "lb.health")
    assert [(f.severity, f.path) for f in found] == [
        ("error", "load_balancer.health.readyz_status")
    ]
    assert "401" in found[0].message
    assert "token_file" in found[0].fix


def test_readyz_200_only_with_anonymous_health_passes(base, findings, by_rule):
    base["load_balancer"]["health"] = {"readyz_status": [200]}
    assert by_rule(findings(base), "lb.health") == []


def test_readyz_200_only_with_a_private_token_passes(base, findings, by_rule, tmp_path):
    (tmp_path / "health.token").write_text("secret-token\n")
    (tmp_path / "health.token").chmod(0o600)
    base["rke2"]["anonymous_health"] = False
    base["load_balancer"]["health"] = {"readyz_status": [200], "token_file": "health.token"}
    assert by_rule(findings(base), "lb.health") == []


def test_readyz_without_200_is_an_error(base, findings, by_rule):
    base["load_balancer"]["health"] = {"readyz_status": [401]}
    found = by_rule(findings(base), "lb.health")
    assert [(f.severity, f.path) for f in found] == [
        ("error", "load_balancer.health.readyz_status")
    ]


def test_readyz_default_without_token_passes(base, findings, by_rule):
    base["rke2"]["anonymous_health"] = False
    assert by_rule(findings(base), "lb.health") == []


def test_missing_token_file_is_an_error(base, findings, by_rule):
    base["load_balancer"]["health"] = {"token_file": "nope.token"}
    found = by_rule(findings(base), "lb.health")
    assert [(f.severity, f.path) for f in found] == [("error", "load_balancer.health.token_file")]


def test_token_file_readable_by_others_is_an_error(base, findings, by_rule, tmp_path):
    (tmp_path / "health.token").write_text("secret-token\n")
    (tmp_path / "health.token").chmod(0o644)
    base["load_balancer"]["health"] = {"token_file": "health.token"}
    found = by_rule(findings(base), "lb.health")
    assert [(f.severity, f.path) for f in found] == [("error", "load_balancer.health.token_file")]
    assert "chmod 600" in found[0].fix
    assert "secret-token" not in found[0].message + found[0].fix


def test_pair_of_one_host_is_an_error(base, findings, by_rule):
    base["load_balancer"]["pair"] = {"primary": "10.0.0.8", "standby": "10.0.0.8"}
    found = by_rule(findings(base), "lb.pair")
    assert [(f.severity, f.path) for f in found] == [("error", "load_balancer.pair.standby")]


def test_vip_equal_to_a_pair_host_is_an_error(base, findings, by_rule):
    base["load_balancer"]["pair"] = {"primary": "10.0.0.10", "standby": "10.0.0.9"}
    found = by_rule(findings(base), "lb.pair")
    assert [(f.severity, f.path) for f in found] == [("error", "load_balancer.address")]


def test_proper_pair_passes(base, findings, by_rule):
    base["load_balancer"]["pair"] = {"primary": "10.0.0.8", "standby": "10.0.0.9"}
    assert by_rule(findings(base), "lb.pair") == []


def test_send_proxy_at_layer_4_names_the_ingress_config_to_install(base, findings, by_rule):
    base["load_balancer"]["send_proxy"] = True
    found = by_rule(findings(base), "lb.send_proxy")
    assert [(f.severity, f.path) for f in found] == [("info", "load_balancer.send_proxy")]
    assert "rancher/ingress-helmchartconfig.yaml" in found[0].fix
    assert 'use-proxy-protocol: "true"' in found[0].fix
    assert "health checks included" in found[0].message


def test_send_proxy_with_traefik_names_its_trusted_ips(base, findings, by_rule):
    base["load_balancer"]["send_proxy"] = True
    base["ingress"] = "traefik"
    (found,) = by_rule(findings(base), "lb.send_proxy")
    assert "proxyProtocol.trustedIPs" in found.fix


def test_send_proxy_at_layer_7_is_an_error(base, findings, by_rule):
    base["load_balancer"].update(send_proxy=True, layer=7)
    found = by_rule(findings(base), "lb.send_proxy")
    assert [(f.severity, f.path) for f in found] == [("error", "load_balancer.send_proxy")]


def test_no_send_proxy_no_finding(base, findings, by_rule):
    assert by_rule(findings(base), "lb.send_proxy") == []
