"""Redirect-loop detection (`check.loops`) on hand-made answers, no sockets."""

from __future__ import annotations

import pytest

from rke2ha.check.loops import Hop, next_hop, verdict
from rke2ha.check.observations import HttpAnswer

HOST = "rancher.example.com"
PORTS = {443, 21443}


def redirect(location: str, status: int = 302) -> HttpAnswer:
    return HttpAnswer(status, {"location": location}, b"")


@pytest.mark.parametrize(
    ("location", "path"),
    [
        (f"https://{HOST}/", "/"),
        (f"https://{HOST.upper()}:443/dashboard/?a=1", "/dashboard/?a=1"),
        (f"https://{HOST}:21443/x", "/x"),
        ("/dashboard/", "/dashboard/"),
        (f"http://{HOST}/", None),  # leaves https: not this load balancer's 443
        ("https://login.example.org/", None),
        (f"https://{HOST}:8443/", None),
    ],
)
def test_next_hop_stays_on_the_rancher_url(location: str, path: str | None) -> None:
    assert next_hop(redirect(location), HOST, PORTS) == path
    assert next_hop(HttpAnswer(200, {"location": location}, b""), HOST, PORTS) is None


def test_a_path_asked_twice_is_a_loop_naming_the_ingress_config() -> None:
    hops = [Hop("/", redirect(f"https://{HOST}/"))]
    result = verdict(hops, "/", layer=7, where="lb")
    assert result.failed and result.rule == "check.rancher.redirect"
    assert "redirect loop" in result.detail
    assert "rancher/ingress-helmchartconfig.yaml" in result.fix
    assert "/var/lib/rancher/rke2/server/manifests/" in result.fix


def test_a_chain_that_ends_passes_and_too_many_redirects_fail() -> None:
    ok = [
        Hop("/", redirect(f"https://{HOST}/dashboard/")),
        Hop("/dashboard/", HttpAnswer(200, {}, b"ui")),
    ]
    assert verdict(ok, None, layer=4, where="lb").ok
    endless = [Hop(f"/{i}", redirect(f"https://{HOST}/{i + 1}")) for i in range(6)]
    result = verdict(endless, None, layer=4, where="lb")
    assert result.failed and "more than 5 redirects" in result.detail
    assert verdict("connection refused", None, layer=7, where="lb").failed
