"""The ingress decisions of the node emulator, and the readers of its inputs (no sockets)."""

from __future__ import annotations

import pytest

from rke2ha.errors import InvalidError
from rke2ha.lab.ingress_config import parse_ingress_config
from rke2ha.lab.ingress_model import (
    IngressSettings,
    Server,
    access_scheme,
    choose_server,
    mangle_port,
    rancher_redirect,
    ssl_redirect_location,
)
from rke2ha.lab.proxy_listener import header_length, parse_header
from rke2ha.lb.proxyproto import proxy_v2_header, proxy_v2_local_header

HOST = "rancher.example.test"
TRUSTING = IngressSettings(use_forwarded_headers=True)


def test_the_rancher_server_exists_only_once_rancher_is_installed() -> None:
    assert choose_server(HOST, HOST, rancher_installed=True) is Server.RANCHER
    assert choose_server(HOST, f"{HOST}.", rancher_installed=True) is Server.RANCHER
    assert choose_server(HOST, HOST, rancher_installed=False) is Server.CATCH_ALL
    assert choose_server("other.test", HOST, rancher_installed=True) is Server.CATCH_ALL


def test_forwarded_proto_counts_only_when_trusted() -> None:
    headers = {"x-forwarded-proto": "https"}
    assert access_scheme("http", headers, IngressSettings()) == "http"
    assert access_scheme("http", headers, TRUSTING) == "https"
    assert access_scheme("http", {}, TRUSTING) == "http"
    proxied = IngressSettings(proxy_protocol=True)
    assert access_scheme("http", {}, proxied, proxy_destination_port=443) == "https"
    assert access_scheme("http", {}, proxied, proxy_destination_port=80) == "http"


@pytest.mark.parametrize(
    ("uri", "location"),
    [("/", f"https://{HOST}"), ("/a/", f"https://{HOST}/a"), ("/a/?x=1", f"https://{HOST}/a/?x=1")],
)
def test_ssl_redirect_drops_one_trailing_slash(uri: str, location: str) -> None:
    assert ssl_redirect_location(HOST, uri) == location


@pytest.mark.parametrize(
    ("host", "mangled"),
    [
        (HOST, HOST),
        (f"{HOST}:80", f"{HOST}:443"),
        (f"{HOST}:443", f"{HOST}:443"),
        (f"{HOST}:10443", f"{HOST}:10443"),
        (f"{HOST}:21080", f"{HOST}:21443"),
        ("[::1]:8080", "[::1]:8443"),
        ("::1", "::1"),
    ],
)
def test_rancher_mangles_the_port_like_dynamiclistener(host: str, mangled: str) -> None:
    assert mangle_port(host) == mangled


def test_rancher_redirects_plain_http_except_ping_health_and_acme() -> None:
    assert rancher_redirect("GET", "/", "/", HOST, "http") == (302, f"https://{HOST}/")
    assert rancher_redirect("GET", "/", "/", HOST, "https") is None
    assert rancher_redirect("GET", "/", "/", HOST, "wss") is None
    for path in ("/ping", "/healthz", "/.well-known/acme-challenge/x"):
        assert rancher_redirect("GET", path, path, HOST, "http") is None
    assert rancher_redirect("POST", "/v3", "/v3", HOST, "http") == (400, "")


NGINX_CONFIG = """
apiVersion: helm.cattle.io/v1
kind: HelmChartConfig
metadata: {name: rke2-ingress-nginx, namespace: kube-system}
spec:
  valuesContent: |
    controller:
      config:
        use-forwarded-headers: "true"
        use-proxy-protocol: "%s"
"""


def test_ingress_nginx_config_is_read_like_the_chart_reads_it() -> None:
    assert parse_ingress_config(NGINX_CONFIG % "false", "f") == IngressSettings(True, False)
    assert parse_ingress_config(NGINX_CONFIG % "true", "f") == IngressSettings(True, True)


def test_traefik_config_trusts_when_the_lists_are_given() -> None:
    text = """
kind: HelmChartConfig
metadata: {name: rke2-traefik}
spec:
  valuesContent: |
    ports:
      web:
        forwardedHeaders: {trustedIPs: [10.0.0.5]}
"""
    assert parse_ingress_config(text, "f") == IngressSettings(True, False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("kind: ConfigMap", "kind must be HelmChartConfig"),
        ("kind: HelmChartConfig\nmetadata: {name: x}", "metadata.name"),
        (
            "kind: HelmChartConfig\nmetadata: {name: rke2-traefik}\n"
            "spec: {valuesContent: 'ports: {web: {forwardedHeaders: {trustedIPs: [nope]}}}'}",
            "trustedIPs",
        ),
        ("[", "not YAML"),
    ],
)
def test_a_wrong_ingress_config_names_the_field(text: str, message: str) -> None:
    with pytest.raises(InvalidError, match=message):
        parse_ingress_config(text, "cfg.yaml")


def test_proxy_headers_are_measured_before_they_are_complete() -> None:
    v2 = proxy_v2_header(("198.51.100.7", 40000), ("127.0.0.5", 443))
    assert header_length(v2[:5]) is None
    assert header_length(v2 + b"\x16\x03\x01") == len(v2)
    assert parse_header(v2) == (("198.51.100.7", 40000), ("127.0.0.5", 443))
    v1 = b"PROXY TCP4 198.51.100.7 127.0.0.5 40000 80\r\nGET / HTTP/1.1\r\n"
    assert header_length(v1[:8]) is None
    length = header_length(v1)
    assert length == v1.index(b"\r\n") + 2
    assert parse_header(v1[:length]) == (("198.51.100.7", 40000), ("127.0.0.5", 80))
    # A health check's LOCAL header names no addresses: the socket's own count.
    local = proxy_v2_local_header()
    assert header_length(local + b"GET") == len(local)
    assert parse_header(local) is None
    for broken in (b"GET / HTTP/1.1\r\n", b"\x16\x03\x01\x02\x00"):
        with pytest.raises(ValueError):
            header_length(broken)
