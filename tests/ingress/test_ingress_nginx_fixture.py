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


def location(*args: str) -> tuple[int, str]:
    """(status, Location exactly as sent): curl's %{redirect_url} would normalise it."""
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "-m",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %header{location}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=15,
    )
    assert out.returncode == 0, out.stderr
    status, _, where = out.stdout.partition(" ")
    return int(status), where.strip()


@pytest.mark.parametrize(
    ("host", "target", "expected"),
    [
        # one trailing '/' of the request URI goes (preserve-trailing-slash off), the Host
        # keeps its case and loses its port (lua_ingress.lua, redirect_host())
        ("Rancher.Example.TEST", "/", "https://Rancher.Example.TEST"),
        ("rancher.example.test:80", "/dashboard/", "https://rancher.example.test/dashboard"),
        ("rancher.example.test", "/dashboard/?q=/", "https://rancher.example.test/dashboard/?q="),
        ("rancher.example.test", "/dashboard?q=1", "https://rancher.example.test/dashboard?q=1"),
    ],
)
def test_ssl_redirect_location_is_built_like_ingress_nginx(
    ingress_nginx: Callable[..., IngressNginx], host: str, target: str, expected: str
) -> None:
    ingress_nginx(ADDR, HOST, rancher=True)
    assert location("-H", f"Host: {host}", f"http://{ADDR}{target}") == (308, expected)


@pytest.mark.parametrize(
    ("method", "host", "path", "expected"),
    [
        # dynamiclistener HTTPRedirect: /ping*, /health*, /.well-known/ served on plain http
        ("GET", HOST, "/healthz", (200, "")),
        ("GET", HOST, "/ping", (200, "")),
        ("GET", HOST, "/.well-known/acme-challenge/x", (200, "")),
        # anything else: 302 to the Host as sent, its port mangled to N*1000+443
        (
            "GET",
            "Rancher.Example.TEST",
            "/dashboard/",
            (302, "https://Rancher.Example.TEST/dashboard/"),
        ),
        ("HEAD", f"{HOST}:80", "/x", (302, f"https://{HOST}:443/x")),
        ("GET", f"{HOST}:8080", "/x?y=1", (302, f"https://{HOST}:8443/x?y=1")),
        ("POST", HOST, "/v3/x", (400, "")),
    ],
)
def test_rancher_behind_external_tls_answers_like_dynamiclistener(
    ingress_nginx: Callable[..., IngressNginx],
    method: str,
    host: str,
    path: str,
    expected: tuple[int, str],
) -> None:
    ingress_nginx(ADDR, HOST, rancher=True, rancher_tls="external")
    head = ["-I"] if method == "HEAD" else ["-X", method]
    assert location(*head, "-H", f"Host: {host}", f"http://{ADDR}{path}") == expected
