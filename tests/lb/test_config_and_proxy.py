"""LbConfig from the spec (through healthplan) and from flags; PROXY v2; check verdicts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rke2ha.errors import UsageError
from rke2ha.lb.checks import build_request, judge
from rke2ha.lb.config import (
    L7Flags,
    Probe,
    check_privileges,
    from_flags,
    from_spec,
    parse_health,
)
from rke2ha.lb.proxyproto import parse_proxy_v2, proxy_v2_header, proxy_v2_local_header
from rke2ha.lb.reload import plan_reload
from rke2ha.specfile import load_spec

SPEC = """
name: lbtest
hostname: rancher.example.test
provider: existing
nodes:
  - {name: n1, address: 127.0.30.11}
  - {name: n2, address: 127.0.30.12}
load_balancer: {address: 127.0.30.10, ports: [80, 443, 6443, 9345]%s}
dns: {zone: example.test}
"""


def _spec(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "rke2ha.yaml"
    path.write_text(SPEC % extra)
    return path


def test_spec_frontends_follow_the_health_plan(tmp_path: Path) -> None:
    config = from_spec(load_spec(_spec(tmp_path)), port_offset=20000)
    by_port = {f.port: f for f in config.frontends}
    assert set(by_port) == {20080, 20443, 26443, 29345}
    ingress = by_port[20443].health.probes
    # no Rancher Host: the checker sends the node's address and reaches the catch-all server
    assert ingress == (Probe("http", 20080, "/healthz", None, (200,)),)
    assert [b.key for b in by_port[20443].backends] == ["127.0.30.11:20443", "127.0.30.12:20443"]
    (readyz,) = by_port[26443].health.probes
    assert readyz.kind == "https" and readyz.ok_statuses == (200, 401)
    ping, readyz2 = by_port[29345].health.probes
    assert (ping.port, ping.path, ping.expect_body) == (29345, "/ping", "pong")
    assert readyz2 == readyz


def test_token_file_makes_readyz_strict_and_is_not_printed(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cr3t\n")
    token.chmod(0o600)
    config = from_spec(load_spec(_spec(tmp_path, ", health: {token_file: token}")))
    (readyz,) = config.frontends[2].health.probes
    assert readyz.ok_statuses == (200,) and readyz.token == "s3cr3t"
    assert "s3cr3t" not in repr(config)
    assert b"Authorization: Bearer s3cr3t" in build_request("127.0.30.11", 6443, readyz)


def test_judge() -> None:
    readyz = Probe("https", 6443, "/readyz", None, (200, 401))
    assert judge(readyz, 401, b"").ok and "readiness unknown" in judge(readyz, 401, b"").reason
    assert not judge(readyz, 503, b"").ok
    ping = Probe("https", 9345, "/ping", None, (200,), "pong")
    assert judge(ping, 200, b"pong\n").ok
    assert not judge(ping, 200, b"nope").ok


@pytest.mark.parametrize(
    "text", ["http", "http:healthz", "ftp:/x", "http:/x@0", "http:/x@99999", "tcp:/x"]
)
def test_bad_health_flag(text: str) -> None:
    with pytest.raises(UsageError, match="--health"):
        parse_health(text, None)


def test_flags_and_privileges(monkeypatch: pytest.MonkeyPatch) -> None:
    config = from_flags(
        listen="127.0.30.10:80", backends=["127.0.30.11:80"], health="https:/readyz@6443"
    )
    assert config.frontends[0].health.probes[0] == Probe("https", 6443, "/readyz")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(UsageError, match="--port-offset"):
        check_privileges(config)


def test_reload_plan() -> None:
    old = from_flags(listen="127.0.30.10:80", backends=["127.0.30.11:80", "127.0.30.12:80"])
    new = from_flags(listen="127.0.30.10:80", backends=["127.0.30.12:80", "127.0.30.13:80"])
    plan = plan_reload(old, new)
    (change,) = plan.changed
    assert [b.key for b in change.joined] == ["127.0.30.13:80"]
    assert [b.key for b in change.leaving] == ["127.0.30.11:80"]
    assert not change.health_changed and not change.settings_changed
    assert plan_reload(old, old).empty


def test_proxy_v2_roundtrip() -> None:
    header = proxy_v2_header(("127.0.30.99", 40000), ("127.0.30.10", 443))
    assert len(header) == 16 + 12
    assert parse_proxy_v2(header + b"GET") == (("127.0.30.99", 40000), ("127.0.30.10", 443), 28)
    six = proxy_v2_header(("::1", 1), ("::1", 2))
    assert parse_proxy_v2(six)[0] == ("::1", 1)


def test_health_checks_send_a_local_proxy_header() -> None:
    # PROXY v2 §2.2: LOCAL (0x20) is for connections the proxy makes itself, e.g. health
    # checks; no addresses follow. HAProxy's checks send exactly these 16 bytes.
    header = proxy_v2_local_header()
    assert header == b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"
    assert parse_proxy_v2(header + b"GET") == (("", 0), ("", 0), 16)


def test_spec_send_proxy_reaches_only_the_ingress_ports(tmp_path: Path) -> None:
    config = from_spec(load_spec(_spec(tmp_path, ", send_proxy: true")), port_offset=20000)
    by_port = {f.port: f for f in config.frontends}
    assert by_port[20080].send_proxy and by_port[20443].send_proxy
    assert by_port[20443].health.probes[0].send_proxy
    # the apiserver and the supervisor cannot read a PROXY header
    assert not by_port[26443].send_proxy and not by_port[29345].send_proxy
    assert not any(p.send_proxy for p in by_port[26443].health.probes)


def test_flags_and_spec_share_every_default(tmp_path: Path) -> None:
    """One config type at both layers: a spec without load balancer settings and flags
    without options give the same limits, timeouts, admin address and redirect."""
    from tests.support.certs import write_self_signed

    write_self_signed(tmp_path / "tls.crt", tmp_path / "tls.key", "rancher.example.test")
    tls = f", layer: 7, tls: {{cert: {tmp_path / 'tls.crt'}, key: {tmp_path / 'tls.key'}}}"
    spec = from_spec(load_spec(_spec(tmp_path, tls)))
    flags = from_flags(
        listen="127.0.30.10:443",
        backends=["127.0.30.11:80"],
        l7=L7Flags(cert=tmp_path / "tls.crt", key=tmp_path / "tls.key", hostname="x"),
    )
    layer4 = from_flags(listen="127.0.30.10:6443", backends=["127.0.30.11:6443"])
    by_kind = {f.kind: f for f in spec.frontends}
    assert {f.kind for f in spec.frontends} == {"https", "redirect", "tcp"}
    for ours, theirs in (
        (flags.frontends[0], by_kind["https"]),
        (layer4.frontends[0], by_kind["tcp"]),
    ):
        for name in ("connect_timeout", "idle_timeout", "max_connections", "retries", "balance"):
            assert getattr(ours, name) == getattr(theirs, name), name
        assert (ours.health.interval, ours.health.rise) == (
            theirs.health.interval,
            theirs.health.rise,
        )
    for config in (flags, layer4):
        assert (config.admin, config.drain_timeout) == (spec.admin, spec.drain_timeout)
    assert flags.l7 is not None and spec.l7 is not None
    assert flags.l7.redirect_code == spec.l7.redirect_code
    assert flags.l7.header_timeout == spec.l7.header_timeout
    assert layer4.l7 is None and by_kind["https"].idle_timeout == 1800.0  # http_timeout
