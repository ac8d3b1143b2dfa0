"""`providers.aws.desired` and the user data builder: pure, from a spec."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from tests.aws.conftest import SPEC

from rke2ha.errors import InvalidError
from rke2ha.providers.aws.desired import (
    Network,
    Subnet,
    desired_resources,
    health_check,
    health_notes,
    ingress_rules,
    place_nodes,
)
from rke2ha.providers.aws.nodeconfig import node_boot
from rke2ha.providers.aws.userdata import build_user_data
from rke2ha.spec import Spec
from rke2ha.specfile import load_spec

NETWORK = Network(
    "vpc-1",
    "172.31.0.0/16",
    (
        Subnet("subnet-a", "us-east-1a", True),
        Subnet("subnet-a2", "us-east-1a", False),
        Subnet("subnet-b", "us-east-1b", True),
        Subnet("subnet-c", "us-east-1c", True),
    ),
)


def _spec(tmp_path: Path, *, anonymous: bool = True, extra: str = "", cni: str = "") -> Spec:
    text = SPEC.format(
        hostname="rancher.example.com",
        region="us-east-1",
        zone="example.com",
        ami="ami-1",
        anonymous=str(anonymous).lower(),
        extra=extra,
    )
    if cni:
        text = text.replace("  anonymous_health:", f"  cni: {cni}\n  anonymous_health:")
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return load_spec(path)


def test_health_checks_per_port(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    assert (health_check(spec, 80).protocol, health_check(spec, 80).port) == ("HTTP", 80)
    assert health_check(spec, 443).path == "/healthz"
    for port in (6443, 9345):
        check = health_check(spec, port)
        assert (check.protocol, check.port, check.path, check.matcher) == (
            "HTTPS",
            6443,
            "/readyz",
            "200",
        )
    closed = _spec(tmp_path, anonymous=False)
    assert health_check(closed, 9345).matcher == "200,401"
    assert any("readiness is unknown" in n for n in health_notes(closed))


def test_thresholds_are_kept_within_nlb_limits(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    spec.load_balancer.health.interval = 1.0
    spec.load_balancer.health.timeout = 1.0
    spec.load_balancer.health.rise = 1
    spec.load_balancer.health.fall = 50
    check = health_check(spec, 6443)
    assert (check.interval, check.timeout, check.healthy, check.unhealthy) == (5, 2, 2, 10)
    notes = health_notes(spec)
    assert any("interval 1s -> 5s" in n for n in notes)


@pytest.mark.parametrize(
    ("cni", "expected"),
    [
        ("canal", ["udp 8472-8472 from self", "tcp 9099-9099 from self"]),
        ("calico", ["tcp 179-179 from self", "udp 4789-4789 from self"]),
        ("cilium", ["tcp 4240-4240 from self"]),
    ],
)
def test_security_rules(tmp_path: Path, cni: str, expected: list[str]) -> None:
    rules = ingress_rules(_spec(tmp_path, cni=cni), NETWORK)
    for rule in [
        "tcp 9345-9345 from self",
        "tcp 2379-2381 from self",
        "tcp 30000-32767 from self",
        "tcp 10250-10250 from self",
        "tcp 443-443 from 203.0.113.0/24",
        "tcp 9345-9345 from 203.0.113.0/24",
        "tcp 6443-6443 from 172.31.0.0/16",
        *expected,
    ]:
        assert rule in rules
    assert not any("from 0.0.0.0/0" in r for r in rules)


def test_nodes_get_distinct_zones_and_too_few_zones_fail(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    placement = place_nodes(spec, NETWORK)
    assert {s.zone for s in placement.values()} == {"us-east-1a", "us-east-1b", "us-east-1c"}
    assert placement["node-1"].id == "subnet-a"  # the default subnet of the zone
    two = Network("vpc-2", "10.0.0.0/16", NETWORK.subnets[:3])
    with pytest.raises(InvalidError, match=r"2 availability zone\(s\)"):
        place_nodes(spec, two)


def test_desired_resources_are_complete(tmp_path: Path) -> None:
    addresses = [d.address for d in desired_resources(_spec(tmp_path), NETWORK)]
    assert len(addresses) == 21
    assert addresses[-1] == "dns_record.hostname"
    assert {f"listener.{p}" for p in (80, 443, 6443, 9345)} <= set(addresses)


def test_user_data_never_holds_the_token_and_is_valid_bash(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    token = "s3cr3t-token-value-0123456789"
    for node, previous in (("node-1", None), ("node-2", "172.31.0.10")):
        boot = node_boot(spec, node, nlb_dns_name="x.elb.amazonaws.com", previous_server=previous)
        script = build_user_data(boot, secrets_not_allowed=(token,))
        assert token not in script
        assert "token-file:" in script and "\ntoken:" not in script
        checked = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
    with pytest.raises(InvalidError, match="secret"):
        build_user_data(boot, secrets_not_allowed=("x.elb.amazonaws.com",))
