"""The decisions of every check, on hand-made observations (no sockets, fixed clock)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization

from rke2ha.check import verdicts
from rke2ha.check import verdicts_client as client
from rke2ha.check.observations import (
    HttpAnswer,
    SpreadSample,
    TlsObservation,
    WebsocketAnswer,
)
from rke2ha.check.result import CheckResult
from rke2ha.check.target import DnsTarget
from rke2ha.dns.resolve_check import Answer
from rke2ha.healthplan import HttpProbe, supervisor_probe
from rke2ha.lab.ca import LabCA

NOW = datetime(2026, 11, 27, 4, 0, tzinfo=UTC)
HOST = "rancher.example.com"
ANON = HttpProbe("https", 6443, "/readyz", None, (200, 401))
STRICT = HttpProbe("https", 6443, "/readyz", None, (200,))
INGRESS = HttpProbe("http", 80, "/healthz", None, (200,))


def answer(status: int, body: str = "", **headers: str) -> HttpAnswer:
    return HttpAnswer(status, {k.replace("_", "-"): v for k, v in headers.items()}, body.encode())


# ---- dns.record ------------------------------------------------------------------------

A_TARGET = DnsTarget(None, "builtin DNS", "A", ("10.0.0.10",))
CNAME_TARGET = DnsTarget(None, "--dns-server", "CNAME", ("lb.example.net.",))


def test_dns_a_record_pointing_at_the_lb_passes() -> None:
    result = client.dns_record(A_TARGET, HOST, Answer("NOERROR", None, ["10.0.0.10"], 60), "s")
    assert result.status == "pass" and "10.0.0.10" in result.detail


@pytest.mark.parametrize(
    ("seen", "words"),
    [
        (Answer("NOERROR", None, ["10.9.9.9"]), "10.9.9.9"),
        (Answer("NOERROR", "other.example.net.", ["10.0.0.10"]), "CNAME"),
        (Answer("NOERROR"), "no address"),
        (Answer("NXDOMAIN"), "NXDOMAIN"),
        (Answer("REFUSED"), "REFUSED"),
        (Answer("TIMEOUT"), "no answer"),
    ],
)
def test_dns_a_record_wrong_or_missing_fails_with_a_fix(seen: Answer, words: str) -> None:
    result = client.dns_record(A_TARGET, HOST, seen, "127.0.0.1:53")
    assert result.status == "fail"
    assert words in result.detail
    assert result.fix and result.rule == "check.dns.record" and result.source


def test_dns_cname_must_name_the_target() -> None:
    good = client.dns_record(CNAME_TARGET, HOST, Answer("NOERROR", "LB.example.net."), "s")
    bad = client.dns_record(CNAME_TARGET, HOST, Answer("NOERROR", None, ["10.0.0.10"]), "s")
    assert good.status == "pass"
    assert bad.status == "fail" and "not a CNAME" in bad.detail


def test_dns_spec_problem_fails_without_querying() -> None:
    target = DnsTarget(None, "system resolver", "A", (), "load_balancer.address is not set")
    result = client.dns_record(target, HOST, Answer("NOERROR"), "s")
    assert result.status == "fail" and "not set" in result.detail


# ---- node ports ------------------------------------------------------------------------


def test_readyz_401_without_token_passes_and_says_readiness_unknown() -> None:
    result = verdicts.readyz("node.n1.6443", answer(401), ANON, token_sent=False)
    assert result.status == "pass"
    assert "readiness unknown" in result.detail


def test_readyz_401_fails_when_anonymous_health_is_expected() -> None:
    result = verdicts.readyz("node.n1.6443", answer(401), STRICT, token_sent=False)
    assert result.status == "fail" and "anonymous" in result.detail


def test_readyz_with_token_tells_ready_from_not_ready() -> None:
    ready = verdicts.readyz("x", answer(200, "ok"), STRICT, token_sent=True)
    joining = verdicts.readyz("x", answer(500, "[-]etcd failed"), STRICT, token_sent=True)
    rejected = verdicts.readyz("x", answer(401), STRICT, token_sent=True)
    assert ready.status == "pass" and "ready" in ready.detail
    assert joining.status == "fail" and "not ready" in joining.detail
    assert rejected.status == "fail" and "token" in rejected.detail


def test_unreachable_node_port_fails_with_the_reason() -> None:
    result = verdicts.readyz("x", "connection to 10.0.1.11:6443 refused", ANON, token_sent=False)
    assert result.status == "fail" and "refused" in result.detail and result.fix


def test_supervisor_ping_needs_pong() -> None:
    probe = supervisor_probe()
    assert verdicts.supervisor_ping("x", answer(200, "pong\n"), probe).status == "pass"
    assert verdicts.supervisor_ping("x", answer(200, "hello"), probe).status == "fail"
    assert verdicts.supervisor_ping("x", answer(404), probe).status == "fail"


def test_ingress_health_uses_the_probe_statuses() -> None:
    assert verdicts.ingress_health("x", answer(200, "ok"), INGRESS, "n").status == "pass"
    result = verdicts.ingress_health("x", answer(404), INGRESS, "n")
    assert result.status == "fail" and "404" in result.detail


# ---- through the load balancer -----------------------------------------------------------


def test_lb_http_any_node_answer_below_500_passes() -> None:
    assert verdicts.lb_http("lb.port.80", answer(308), "lb:80", tls=False).status == "pass"
    assert verdicts.lb_http("lb.port.80", answer(503), "lb:80", tls=False).status == "fail"
    closed = verdicts.lb_http(
        "lb.port.80", "lb:80 closed the connection without an HTTP answer", "lb:80", tls=False
    )
    assert closed.status == "fail" and "no node" in closed.fix


def test_a_reset_through_the_lb_blames_the_nodes_not_the_lb() -> None:
    """RST comes only on an accepted connection: the load balancer is up (it had no node
    to hand the connection to); a refusal means it is not listening."""
    reset = verdicts.lb_readyz("lb.port.6443", "connection to lb:6443 reset", "lb:6443")
    refused = verdicts.lb_readyz("lb.port.6443", "connection to lb:6443 refused", "lb:6443")
    assert reset.fix == verdicts.FIX_LB_NO_NODE.format(view=verdicts.VIEW_UNKNOWN)
    assert refused.fix is not None and "make sure it listens on lb:6443" in refused.fix
    probe = supervisor_probe()
    ping = verdicts.lb_ping("lb.port.9345", "connection to lb:9345 reset", probe, "lb:9345")
    assert ping.fix == verdicts.FIX_LB_NO_NODE.format(view=verdicts.VIEW_UNKNOWN)


def test_rancher_ping_through_a_running_lb_blames_the_nodes() -> None:
    # It said "start the load balancer" for a reset, though the balancer had accepted.
    from rke2ha.check.catalog import RANCHER_PING

    reset = verdicts.rancher_ping("rancher.ping", "connection to lb:443 reset", RANCHER_PING, "lb")
    assert reset.fix is not None and "start the load balancer" not in reset.fix
    assert "no node answered" in reset.fix
    refused = verdicts.rancher_ping(
        "rancher.ping", "connection to lb:443 refused", RANCHER_PING, "lb:443"
    )
    assert refused.fix is not None and "start the load balancer" in refused.fix


def test_silence_through_the_lb_names_both_causes() -> None:
    silent = verdicts.lb_readyz("lb.port.6443", "no answer from lb:6443 within 2s", "lb:6443")
    assert silent.fix is not None
    assert "no node behind it answers" in silent.fix and "listens on lb:6443" in silent.fix


@pytest.mark.parametrize(
    ("engine", "admin", "names"),
    [
        ("builtin", "127.0.0.1:8404", "http://127.0.0.1:8404/status"),
        ("haproxy", "127.0.0.1:8404", "HAProxy's stats page (http://127.0.0.1:8404/)"),
        ("nginx", "127.0.0.1:8404", "nginx's error log"),
        ("aws-nlb", None, "describe-target-health"),
    ],
)
def test_the_fix_points_at_a_page_the_engine_has(
    engine: str, admin: str | None, names: str
) -> None:
    view = verdicts.lb_view(engine, admin)
    seen = "connection to lb:443 reset"
    fix = verdicts.lb_http("lb.port.443", seen, "lb:443", tls=True, view=view)
    assert fix.fix is not None and names in fix.fix
    if engine != "builtin":
        assert "/status" not in fix.fix  # only the built-in balancer has one


def test_lb_readyz_accepts_401_as_an_apiserver_answer() -> None:
    assert "readiness unknown" in verdicts.lb_readyz("x", answer(401), "lb").detail
    assert verdicts.lb_readyz("x", answer(200), "lb").status == "pass"
    assert verdicts.lb_readyz("x", answer(404), "lb").status == "fail"


def test_registration_needs_both_ping_and_readyz() -> None:
    probe = supervisor_probe()
    good = verdicts.registration(
        answer(200, "pong"),
        answer(401),
        probe,
        ANON,
        token_sent=False,
        address="a",
        where="lb:9345",
    )
    refused = verdicts.registration(
        "connection to lb:9345 refused",
        answer(401),
        probe,
        ANON,
        token_sent=False,
        address="a",
        where="lb:9345",
    )
    not_ready = verdicts.registration(
        answer(200, "pong"),
        answer(500),
        probe,
        STRICT,
        token_sent=True,
        address="a",
        where="lb:9345",
    )
    assert good.status == "pass"
    assert refused.status == "fail" and "load balancer" in refused.fix
    assert not_ready.status == "fail" and "not ready" in not_ready.detail


# ---- http.redirect -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "status", "ok"),
    [
        (f"https://{HOST}/p?q=1", 308, True),
        (f"https://{HOST}:443/p?q=1", 301, True),
        (f"https://{HOST}:10443/p?q=1", 308, True),
        (f"http://{HOST}/p?q=1", 308, False),
        ("https://other.example.com/p?q=1", 308, False),
        (f"https://{HOST}/", 308, False),
        (f"https://{HOST}:8443/p?q=1", 308, False),
        (f"https://{HOST}/p?q=1", 200, False),
    ],
)
def test_redirect_keeps_host_and_path(location: str, status: int, ok: bool) -> None:
    seen = answer(status, location=location)
    result = client.http_redirect(seen, HOST, "/p?q=1", {443, 10443})
    assert result.ok is ok
    if not ok:
        assert result.fix


# ---- tls.certificate ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> LabCA:
    return LabCA.create(now=NOW - timedelta(days=1))


def observation(ca: LabCA, names: list[str], days: float, **kwargs: str | None) -> TlsObservation:
    issued = ca.issue(names, not_before=NOW - timedelta(days=30), not_after=NOW + timedelta(days))
    der = issued.cert.public_bytes(serialization.Encoding.DER)
    return TlsObservation(
        version=kwargs.get("version") or "TLSv1.3",
        leaf_der=der,
        verify_error=kwargs.get("verify_error"),
        legacy_version=kwargs.get("legacy_version"),
    )


def test_certificate_good(ca: LabCA) -> None:
    result = client.tls_certificate(observation(ca, [HOST], 90), HOST, NOW, "--ca ca.crt")
    assert result.status == "pass" and "90 days" in result.detail


def test_certificate_wildcard_covers_one_label(ca: LabCA) -> None:
    result = client.tls_certificate(observation(ca, ["*.example.com"], 90), HOST, NOW, "x")
    assert result.status == "pass"


@pytest.mark.parametrize(
    ("names", "days", "extra", "words"),
    [
        ([HOST], -1, {"verify_error": "certificate has expired"}, "expired"),
        ([HOST], 5, {}, "5.0 days left"),
        (["other.example.com"], 90, {}, "do not cover"),
        ([HOST], 90, {"verify_error": "unable to get local issuer certificate"}, "verify"),
        ([HOST], 90, {"legacy_version": "TLSv1.1"}, "TLSv1.1"),
        ([HOST], 90, {"version": "TLSv1.1"}, "negotiated TLSv1.1"),
    ],
)
def test_certificate_problems_fail(
    ca: LabCA, names: list[str], days: float, extra: dict[str, str], words: str
) -> None:
    result = client.tls_certificate(observation(ca, names, days, **extra), HOST, NOW, "roots")
    assert result.status == "fail"
    assert words in result.detail
    assert result.fix


def test_certificate_unreachable_fails() -> None:
    result = client.tls_certificate("connection to lb:443 refused", HOST, NOW, "roots")
    assert result.status == "fail" and "refused" in result.detail


# ---- rancher.ping / websocket --------------------------------------------------------------


def test_rancher_ping_needs_pong() -> None:
    from rke2ha.check.catalog import RANCHER_PING

    assert verdicts.rancher_ping("rancher.ping", answer(200, "pong"), RANCHER_PING, "lb").ok
    bad = verdicts.rancher_ping("rancher.ping", answer(404, "default backend"), RANCHER_PING, "lb")
    assert bad.status == "fail" and "Ingress" in bad.fix


def test_websocket_outcomes() -> None:
    assert client.websocket(WebsocketAnswer('{"name":"ping"}'), None, 0.5).status == "pass"
    assert "no event" in client.websocket(WebsocketAnswer(None), None, 0.5).detail
    refused = client.websocket("upgrade answered with HTTP 401", 401, 0.5)
    assert refused.status == "fail" and "--token" in refused.fix
    dropped = client.websocket("upgrade answered with HTTP 400", 400, 0.5)
    assert "Upgrade" in dropped.fix


def test_websocket_skip_is_not_a_pass() -> None:
    skipped = client.websocket_skipped()
    assert skipped.status == "skip" and not skipped.ok and not skipped.failed
    assert skipped.as_dict()["ok"] is False


# ---- lb.spread -----------------------------------------------------------------------------

NODES = ["n1", "n2", "n3"]
FIX_OUT_OF_ROTATION = (
    "the load balancer keeps a healthy node out of rotation: look at the load balancer's "
    "view of its backends (health check path, Host header, ports)"
)


def spread(
    healthy: list[str],
    served: dict[str, int],
    failures: int = 0,
    lab: bool = True,
    rotation: Mapping[str, bool | None] | None = None,
    requests: int = 6,
) -> CheckResult:
    seen = SpreadSample(
        served, requests=requests, failures=failures, rounds=1, seconds=3.0, rotation=rotation
    )
    return client.spread(healthy, seen, header="x-node", lab=lab, known=NODES)


def test_spread_every_healthy_node_served() -> None:
    result = spread(NODES, {"n1": 2, "n2": 2, "n3": 2})
    assert result.status == "pass" and result.detail == "6 requests over 3 nodes: n1 2, n2 2, n3 2"
    # A node that is down is not expected to get traffic; the detail names it.
    down = spread(["n1", "n2"], {"n1": 3, "n2": 3})
    assert down.status == "pass" and "not required, down in the node checks: n3" in down.detail


def test_spread_down_node_is_reported_with_its_rotation_not_failed() -> None:
    rotation = {"n1": True, "n2": True, "n3": False}
    result = spread(["n1", "n2"], {"n1": 3, "n2": 3}, rotation=rotation)
    assert result.status == "pass"
    assert result.detail.endswith("not required, down in the node checks: n3 (out of rotation)")
    # Still in rotation (the load balancer has not noticed yet), and it even answered.
    late = spread(["n1", "n2"], {"n1": 2, "n2": 2, "n3": 2}, rotation=dict.fromkeys(NODES, True))
    assert late.status == "pass" and "n3 (still in rotation)" in late.detail


def test_spread_healthy_node_without_traffic_fails() -> None:
    result = spread(NODES, {"n1": 3, "n2": 3})
    assert result.status == "fail" and "n3" in result.detail
    assert result.fix == FIX_OUT_OF_ROTATION


def test_spread_everything_to_one_node_in_rotation_fails() -> None:
    """The load balancer looks healthy (/status: all in rotation) but one node gets it all."""
    result = spread(NODES, {"n1": 60}, rotation=dict.fromkeys(NODES, True), requests=60)
    assert result.status == "fail"
    assert result.detail == (
        "n2, n3 healthy and in rotation (its /status) but got none of 60 requests (n1 60)"
    )
    assert result.fix == FIX_OUT_OF_ROTATION and result.rule == "check.lb.spread"


def test_spread_healthy_node_kept_out_of_rotation_fails() -> None:
    """Waiting for `rise` is bounded: still out after the sampling time is a failure."""
    rotation = {"n1": True, "n2": True, "n3": False}
    result = spread(NODES, {"n1": 3, "n2": 3}, rotation=rotation)
    assert result.status == "fail"
    assert "n3 healthy but still out of the load balancer's rotation" in result.detail
    assert "after 3.0s" in result.detail and result.fix == FIX_OUT_OF_ROTATION


def test_spread_skips_where_nodes_cannot_be_told_apart() -> None:
    assert spread(NODES, {}, lab=False).status == "skip"
    assert spread(NODES, {"": 6}, lab=False).status == "skip"
    assert spread(NODES, {}, lab=True).status == "fail"
    assert spread(NODES, {}, failures=6, lab=False).status == "fail"


def test_spread_unknown_node_fails() -> None:
    assert spread(NODES, {"n1": 3, "n9": 3}).status == "fail"
