"""The ingress-nginx stand-in (tests/support/ingress_nginx.py) answers like ingress-nginx's
template says it does; other tests (health checks, the lab emulator's differential test) trust
it, so its answers are checked here with real curl on 127.0.133.0/24."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest
from tests.support.ingress_nginx import IngressNginx
from tests.support.ingress_nginx import ingress_nginx as ingress_nginx

HOST = "rancher.example.test"
ADDR = "127.0.133.31"


def curl(*args: str) -> tuple[int, str, str]:
    """(status, redirect target, body) of one request."""
    out = subprocess.run(
        ["curl", "-sS", "-m", "5", "-o", "-", "-w", "\n%{http_code} %{redirect_url}", *args],
        capture_output=True,
        text=True,
        timeout=15,
    )
    assert out.returncode == 0, out.stderr
    body, _, tail = out.stdout.rpartition("\n")
    status, _, location = tail.partition(" ")
    return int(status), location.strip(), body


def test_before_rancher_every_host_falls_to_the_catch_all(
    ingress_nginx: Callable[..., IngressNginx],
) -> None:
    node = ingress_nginx(ADDR, HOST)
    assert curl(f"http://{ADDR}/healthz")[0] == 200
    assert curl("-H", f"Host: {HOST}", f"http://{ADDR}/healthz")[0] == 200
    assert curl(f"http://{ADDR}/")[0] == 404
    resolve = f"{HOST}:443:{ADDR}"
    assert curl("-k", "--resolve", resolve, f"https://{HOST}/ping")[0] == 404
    node.install_rancher()
    assert curl("--cacert", str(node.ca_file), "--resolve", resolve, f"https://{HOST}/ping") == (
        200,
        "",
        "pong",
    )


def test_after_rancher_the_hostname_redirects_on_80_and_healthz_stays_in_the_catch_all(
    ingress_nginx: Callable[..., IngressNginx],
) -> None:
    node = ingress_nginx(ADDR, HOST, rancher=True)
    assert curl(f"http://{ADDR}/healthz")[0] == 200
    status, location, _ = curl("-H", f"Host: {HOST}", f"http://{ADDR}/healthz")
    assert (status, location) == (308, f"https://{HOST}/healthz")
    resolve = f"{HOST}:443:{ADDR}"
    ping = curl("--cacert", str(node.ca_file), "--resolve", resolve, f"https://{HOST}/ping")
    assert ping == (200, "", "pong")
    assert curl("-k", "--resolve", f"other.test:443:{ADDR}", "https://other.test/ping")[0] == 404


@pytest.mark.parametrize("trusted", [False, True])
def test_external_tls_rancher_redirects_unless_forwarded_proto_is_trusted(
    ingress_nginx: Callable[..., IngressNginx], trusted: bool
) -> None:
    ingress_nginx(ADDR, HOST, rancher=True, rancher_tls="external", use_forwarded_headers=trusted)
    args = ("-H", f"Host: {HOST}", "-H", "X-Forwarded-Proto: https", f"http://{ADDR}/dashboard")
    status, location, _ = curl(*args)
    if trusted:
        assert (status, location) == (200, "")
    else:
        assert (status, location) == (302, f"https://{HOST}/dashboard")


def test_proxy_protocol_listeners_refuse_a_bare_request(
    ingress_nginx: Callable[..., IngressNginx],
) -> None:
    ingress_nginx(ADDR, HOST, proxy_protocol=True)
    bare = subprocess.run(
        [
            "curl",
            "-sS",
            "-m",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            f"http://{ADDR}/healthz",
        ],
        capture_output=True,
        text=True,
        timeout=15,
    )
    assert bare.stdout != "200"
    assert curl("--haproxy-protocol", f"http://{ADDR}/healthz")[0] == 200
