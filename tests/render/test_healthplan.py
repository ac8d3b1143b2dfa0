"""The shared health plan: the ingress check reaches the catch-all server (no Rancher Host),
per ingress controller; Rancher's own /ping is a separate probe that decides no rotation."""

from __future__ import annotations

from tests.render.helpers import SpecFactory

from rke2ha.healthplan import ingress_probe, port_health, rancher_ping_probe
from rke2ha.providers.aws.desired import health_check


def test_ingress_nginx_healthz_on_80_without_the_rancher_host(specs: SpecFactory) -> None:
    spec = specs.load({})
    for port in (80, 443):
        (probe,) = port_health(spec, port).probes
        assert (probe.scheme, probe.port, probe.path) == ("http", 80, "/healthz")
        assert probe.host_header is None and probe.ok_statuses == (200,)
        assert not probe.send_proxy
        assert spec.hostname not in port_health(spec, port).why


def test_traefik_answers_404_on_web_because_ping_is_on_its_own_entry_point(
    specs: SpecFactory,
) -> None:
    probe = ingress_probe(specs.load({"ingress": "traefik"}))
    assert (probe.port, probe.path, probe.host_header) == (80, "/ping", None)
    assert probe.ok_statuses == (200, 404)


def test_a_custom_health_path_must_answer_200(specs: SpecFactory) -> None:
    spec = specs.load({"ingress": "traefik", "load_balancer": {"health": {"path": "/ready"}}})
    assert ingress_probe(spec).ok_statuses == (200,)


def test_rancher_ping_is_its_own_probe_and_in_no_port_rule(specs: SpecFactory) -> None:
    spec = specs.load({})
    ping = rancher_ping_probe(spec)
    assert (ping.scheme, ping.port, ping.path, ping.expect_body) == ("https", 443, "/ping", "pong")
    assert ping.host_header == spec.hostname
    rotation = [p for port in spec.load_balancer.ports for p in port_health(spec, port).probes]
    assert ping not in rotation
    assert all(p.host_header != spec.hostname for p in rotation)


def test_send_proxy_makes_the_ingress_probes_speak_proxy_at_layer_4(specs: SpecFactory) -> None:
    spec = specs.load({"load_balancer": {"send_proxy": True}})
    assert all(p.send_proxy for port in (80, 443) for p in port_health(spec, port).probes)
    assert not any(p.send_proxy for port in (6443, 9345) for p in port_health(spec, port).probes)


def test_aws_target_group_follows_the_plan(specs: SpecFactory) -> None:
    nginx = health_check(specs.load({}), 443)
    assert (nginx.port, nginx.path, nginx.matcher) == (80, "/healthz", "200")
    traefik = health_check(specs.load({"ingress": "traefik"}), 80)
    assert (traefik.path, traefik.matcher) == ("/ping", "200,404")
