"""Every address-like spec field takes an IP or an RFC 1123 host name, nothing else.

An address goes into haproxy.cfg, nginx.conf, keepalived.conf and the zone file as text: a
line break in it would add lines to those files. The schema refuses it, naming the field
and the value, before any renderer sees it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from rke2ha.addresses import address_problem
from rke2ha.errors import InvalidError, UsageError
from rke2ha.initspec import parse_node
from rke2ha.render.haproxy import render_haproxy
from rke2ha.render.nginx import render_nginx
from rke2ha.specfile import SpecSchemaError, load_spec

INJECTION = "10.0.2.11\n    server evil 6.6.6.6:80 check"


def _spec(**load_balancer: Any) -> dict[str, Any]:
    return {
        "name": "rancher",
        "hostname": "rancher.example.com",
        "provider": "existing",
        "nodes": [
            {"name": "s1", "address": "10.0.1.11"},
            {"name": "s2", "address": "10.0.2.11"},
            {"name": "s3", "address": "10.0.3.11"},
        ],
        "load_balancer": {"engine": "haproxy", "address": "10.0.0.10", **load_balancer},
        "dns": {"provider": "manual", "zone": "example.com"},
    }


def _problems(tmp_path: Path, document: dict[str, Any]) -> list[str]:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(document))
    with pytest.raises(SpecSchemaError) as caught:
        load_spec(path)
    return [f"{p.path}: {p.message}" for p in caught.value.problems]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("10.0.2.300", "not a valid IPv4 address"),
        ("node 2!", "space"),
        ("10.0.2.11 ", "space"),
        (INJECTION, "line break"),
        ("10.0.0.10:80", "a port does not belong here; give the address alone (10.0.0.10)"),
        ("https://n1.example/", "not a URL"),
        ("fd00::zz", "not a valid IPv6 address"),
        ("[fd00::1]", "without brackets"),
        ("bad_label.example", "'bad_label'"),
        ("-x.example", "'-x'"),
        ("", "empty"),
    ],
)
def test_address_problem_names_what_is_wrong(text: str, words: str) -> None:
    problem = address_problem(text)
    assert problem is not None and words in problem


@pytest.mark.parametrize(
    "text", ["10.0.1.11", "fd00::11", "n1.corp.example", "n1.corp.example.", "node-1", "1x.example"]
)
def test_addresses_and_host_names_pass(text: str) -> None:
    assert address_problem(text) is None


def test_node_address_error_names_field_and_value(tmp_path: Path) -> None:
    document = _spec()
    document["nodes"][1]["address"] = "10.0.2.300"
    assert _problems(tmp_path, document) == [
        "nodes[1].address: '10.0.2.300' is not an IPv4/IPv6 address or DNS name: it is not a "
        "valid IPv4 address (four numbers 0-255 separated by dots)"
    ]


@pytest.mark.parametrize(
    ("field", "document_change"),
    [
        ("load_balancer.address", lambda d: d["load_balancer"].update(address=INJECTION)),
        (
            "load_balancer.extra_addresses[0]",
            lambda d: d["load_balancer"].update(extra_addresses=[INJECTION]),
        ),
        ("nodes[0].ssh.host", lambda d: d["nodes"][0].update(ssh={"host": INJECTION})),
        ("nodes[0].ssh.jump_host", lambda d: d["nodes"][0].update(ssh={"jump_host": INJECTION})),
        (
            "nodes[0].ssh.jump_host",
            lambda d: d["nodes"][0].update(ssh={"jump_host": "ops@bastion.example:99999"}),
        ),
        (
            "load_balancer.hosts[0].address",
            lambda d: d["load_balancer"].update(hosts=[{"name": "lb1", "address": INJECTION}]),
        ),
        (
            "load_balancer.pair.primary",
            lambda d: d["load_balancer"].update(pair={"primary": INJECTION, "standby": "10.0.0.2"}),
        ),
        (
            "load_balancer.pair.interface",
            lambda d: d["load_balancer"].update(
                pair={"primary": "10.0.0.1", "standby": "10.0.0.2", "interface": "eth0\n  x"}
            ),
        ),
        ("load_balancer.health.path", lambda d: d["load_balancer"].update(health={"path": "/h z"})),
        ("dns.target", lambda d: d["dns"].update(target=INJECTION)),
        ("dns.builtin", lambda d: d["dns"].update(builtin={"listen": "10.0.0.300:53"})),
        ("dns.builtin", lambda d: d["dns"].update(builtin={"axfr_allow": [INJECTION]})),
        ("dns.builtin", lambda d: d["dns"].update(builtin={"axfr_allow": ["ns2.example"]})),
        (
            "dns.rfc2136.server",
            lambda d: d["dns"].update(
                rfc2136={"server": INJECTION, "key_name": "k.", "key_file": "k"}
            ),
        ),
    ],
)
def test_every_address_field_is_checked(tmp_path: Path, field: str, document_change) -> None:
    document = _spec()
    document_change(document)
    problems = _problems(tmp_path, document)
    assert len(problems) == 1 and problems[0].startswith(f"{field}: "), problems


def test_injection_is_refused_before_haproxy_or_nginx_render(tmp_path: Path) -> None:
    # A spec that fails the schema never becomes a Spec, so no engine config is written
    # from it; a valid one renders exactly one server line per node.
    bad = _spec()
    bad["nodes"][1]["address"] = INJECTION
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(InvalidError, match=r"nodes\[1\]\.address"):
        load_spec(path)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(_spec()))
    spec = load_spec(good)
    for text in (render_haproxy(spec, "good.yaml"), render_nginx(spec, "good.yaml")):
        assert "6.6.6.6" not in text
        assert text.count("10.0.2.11:443") == 1


def test_init_node_uses_the_same_check() -> None:
    with pytest.raises(UsageError, match=r"'10\.0\.0\.300' is not an IPv4/IPv6 address"):
        parse_node("a=10.0.0.300")
    assert parse_node("a=10.0.0.30").address == "10.0.0.30"


@pytest.mark.parametrize(
    ("address", "message"),
    [
        (
            "10.0.0.10:80",
            "'10.0.0.10:80' is not an IPv4/IPv6 address or DNS name: a port does not belong "
            "here; give the address alone (10.0.0.10)",
        ),
        (
            "10.0.0.300",
            "'10.0.0.300' is not an IPv4/IPv6 address or DNS name: it is not a valid IPv4 "
            "address (four numbers 0-255 separated by dots)",
        ),
    ],
)
def test_load_balancer_address_with_port_or_bad_ip(tmp_path: Path, address: str, message) -> None:
    document = _spec(address=address)
    assert _problems(tmp_path, document) == [f"load_balancer.address: {message}"]


@pytest.mark.parametrize(
    "jump", ["bastion.example", "ops@10.0.0.5:2222", "[fd00::5]:22", "fd00::5"]
)
def test_jump_hosts_pass(tmp_path: Path, jump: str) -> None:
    document = _spec()
    document["nodes"][0]["ssh"] = {"jump_host": jump}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(document))
    assert load_spec(path).nodes[0].ssh.jump_host == jump
