"""Where checks connect: spec addresses, port offset, DNS server choice, tokens (no I/O)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rke2ha.check.target import CheckOptions, Endpoint, build_target, load_target, parse_host_port
from rke2ha.errors import InvalidError, UsageError
from rke2ha.secretfiles import write_secret
from rke2ha.spec import Spec


def lab_spec(**load_balancer: Any) -> Spec:
    return Spec.model_validate(
        {
            "name": "lab",
            "hostname": "rancher.lab.test",
            "provider": "lab",
            "nodes": [{"name": f"node-{i}"} for i in (1, 2, 3)],
            "load_balancer": load_balancer,
            "dns": {"provider": "builtin", "zone": "lab.test"},
            "lab": {"subnet": "127.0.60.0/24", "port_offset": 21000},
        }
    )


def test_offset_moves_every_lb_node_and_admin_port() -> None:
    target = build_target(lab_spec(), CheckOptions(port_offset=21000))
    assert target.lb(443) == Endpoint("127.0.60.10", 21443)
    assert target.node(target.nodes[1], 9345) == Endpoint("127.0.60.12", 30345)
    assert target.dns.server == Endpoint("127.0.60.53", 21053)
    assert target.lb_admin == Endpoint("127.0.60.10", 29404)


def test_node_ports_follow_the_health_plan_per_layer() -> None:
    assert build_target(lab_spec(), CheckOptions()).node_ports == (80, 443, 6443, 9345)
    layer7 = build_target(lab_spec(layer=7), CheckOptions())
    assert layer7.node_ports == (80, 6443, 9345)
    assert layer7.backend_ports[443] == 80


def test_readyz_without_token_accepts_401_and_with_token_only_200(tmp_path: Path) -> None:
    spec = lab_spec()
    anonymous = build_target(spec, CheckOptions())
    assert anonymous.readyz.ok_statuses == (200, 401)
    token = tmp_path / "token"
    write_secret(token, b"s3cret\n")
    with_token = load_target(spec, CheckOptions(token_file=token))
    assert with_token.readyz.ok_statuses == (200,)
    assert with_token.readyz_token == "s3cret" and with_token.rancher_token == "s3cret"
    assert "s3cret" not in repr(with_token)


def test_spec_health_token_is_for_readyz_only(tmp_path: Path) -> None:
    token = tmp_path / "health"
    write_secret(token, b"h3alth\n")
    spec = lab_spec(health={"token_file": str(token)})
    target = load_target(spec, CheckOptions())
    assert target.readyz_token == "h3alth" and target.rancher_token is None
    assert target.readyz.ok_statuses == (200,)


def test_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("x")
    token.chmod(0o644)
    with pytest.raises(InvalidError, match="chmod 600"):
        load_target(lab_spec(), CheckOptions(token_file=token))
    with pytest.raises(UsageError, match="not found"):
        load_target(lab_spec(), CheckOptions(token_file=tmp_path / "missing"))


def test_dns_server_flag_wins_and_is_parsed() -> None:
    target = build_target(lab_spec(), CheckOptions(dns_server="127.0.0.5:5353"))
    assert target.dns.server == Endpoint("127.0.0.5", 5353)
    assert target.dns.server_source == "--dns-server"
    assert target.dns.kind == "A" and target.dns.expected == ("127.0.60.10",)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.53", Endpoint("10.0.0.53", 53)),
        ("ns.example.com:5353", Endpoint("ns.example.com", 5353)),
        ("[::1]:5353", Endpoint("::1", 5353)),
        ("::1", Endpoint("::1", 53)),
    ],
)
def test_host_port_forms(text: str, expected: Endpoint) -> None:
    assert parse_host_port(text, 53, "--dns-server") == expected


@pytest.mark.parametrize("text", ["host:0", "host:70000", "host:x", ":53"])
def test_bad_host_port_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match="--dns-server"):
        parse_host_port(text, 53, "--dns-server")


def test_existing_provider_without_builtin_dns_uses_the_system_resolver() -> None:
    spec = Spec.model_validate(
        {
            "name": "rancher",
            "hostname": "rancher.example.com",
            "provider": "existing",
            "nodes": [{"name": "n1", "address": "10.0.1.11"}],
            "load_balancer": {"address": "10.0.0.10"},
            "dns": {"provider": "manual", "zone": "example.com"},
        }
    )
    target = build_target(spec, CheckOptions())
    assert target.dns.server is None and target.dns.server_source == "system resolver"
    assert not target.is_lab


def test_fixes_name_the_spec_file_that_was_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    from rke2ha.specfile import load_spec

    monkeypatch.chdir(tmp_path)
    document = lab_spec().model_dump(mode="json", exclude_none=True)
    (tmp_path / "lab.yaml").write_text(yaml.safe_dump(document))
    target = build_target(load_spec("lab.yaml"), CheckOptions())
    assert target.command("lab", "restart", "node-2").endswith(
        "rke2ha lab restart node-2 -f lab.yaml"
    )
    # A spec built in code has no file: the placeholder stays.
    assert build_target(lab_spec(), CheckOptions()).command("lab", "thaw", "n").endswith("-f FILE")
