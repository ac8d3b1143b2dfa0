"""Header rewriting, redirects and affinity cookies as plain functions."""

from __future__ import annotations

from rke2ha.lb.l7.affinity import AffinityCookie, split_cookie
from rke2ha.lb.l7.headers import end_to_end, forwarded_request_headers, request_head
from rke2ha.lb.l7.redirect import RedirectPolicy, location, passes_through, redirect_response


def test_forwarded_headers_and_hop_by_hop() -> None:
    headers = [
        (b"Host", b"rancher.example.com"),
        (b"Connection", b"keep-alive, X-Secret-Hop"),
        (b"X-Secret-Hop", b"1"),
        (b"Keep-Alive", b"timeout=5"),
        (b"TE", b"trailers"),
        (b"Proxy-Authorization", b"Basic eA=="),
        (b"X-Forwarded-For", b"203.0.113.7"),
        (b"X-Forwarded-Proto", b"http"),  # a client must not choose the scheme
        (b"X-Forwarded-Port", b"80"),
        (b"X-Forwarded-Host", b"evil.example"),
        (b"Cookie", b"a=b"),
    ]
    out = forwarded_request_headers(
        headers, client_ip="198.51.100.2", proto="https", port=443, upgrade=None
    )
    names = [n.lower() for n, _ in out]
    for gone in (b"connection", b"x-secret-hop", b"keep-alive", b"te", b"proxy-authorization"):
        assert gone not in names
    got = {n.lower(): v for n, v in out}
    assert got[b"host"] == b"rancher.example.com"
    assert got[b"x-forwarded-for"] == b"203.0.113.7, 198.51.100.2"
    assert got[b"x-forwarded-proto"] == b"https"
    assert got[b"x-forwarded-port"] == b"443"
    assert got[b"x-forwarded-host"] == b"rancher.example.com"
    assert names.count(b"x-forwarded-proto") == 1 and names.count(b"x-forwarded-host") == 1
    assert got[b"cookie"] == b"a=b"


def test_upgrade_is_carried() -> None:
    out = forwarded_request_headers(
        [(b"Host", b"h"), (b"Connection", b"Upgrade"), (b"Upgrade", b"websocket")],
        client_ip="127.0.0.1",
        proto="https",
        port=443,
        upgrade=b"websocket",
    )
    assert (b"Connection", b"Upgrade") in out and (b"Upgrade", b"websocket") in out


def test_request_head_is_reserialised() -> None:
    wire = request_head("POST", b"/x", [(b"Host", b"h")], framing=b"length:3")
    assert wire == b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n"
    assert end_to_end([(b"Transfer-Encoding", b"chunked"), (b"A", b"b")]) == [(b"A", b"b")]


def test_redirect_keeps_path_and_query_and_ignores_host() -> None:
    policy = RedirectPolicy("rancher.example.com", 301)
    assert location(policy, b"/v3/x?y=1&z=%20") == b"https://rancher.example.com/v3/x?y=1&z=%20"
    assert location(policy, b"http://evil.example/p?q") == b"https://rancher.example.com/p?q"
    response = redirect_response(policy, b"/a?b", keep_alive=True)
    assert response.startswith(b"HTTP/1.1 301 Moved Permanently\r\n")
    assert b"Location: https://rancher.example.com/a?b\r\n" in response
    assert location(RedirectPolicy("h", 308, https_port=8443), b"/") == b"https://h:8443/"


def test_acme_passthrough_only_when_enabled() -> None:
    target = b"/.well-known/acme-challenge/token"
    assert not passes_through(RedirectPolicy("h"), target)
    assert passes_through(RedirectPolicy("h", acme_passthrough=True), target)
    assert not passes_through(RedirectPolicy("h", acme_passthrough=True), b"/.well-known/x")


def test_affinity_cookie_is_opaque_and_unforgeable() -> None:
    cookie = AffinityCookie(b"k" * 32)
    nodes = ["10.0.1.11:80", "10.0.2.11:80", "10.0.3.11:80"]
    token = cookie.token(nodes[1])
    assert b"10.0.2.11" not in token and b":80" not in token
    assert cookie.pinned(token, nodes) == nodes[1]
    assert cookie.pinned(b"10.0.3.11:80", nodes) is None  # naming a node does not pick it
    tampered = (b"B" if token[:1] != b"B" else b"C") + token[1:]
    assert cookie.pinned(tampered, nodes) is None
    assert AffinityCookie(b"j" * 32).pinned(token, nodes) is None  # another secret, no pin
    name, value = cookie.set_cookie(nodes[0])
    assert name == b"Set-Cookie" and b"HttpOnly" in value and b"Secure" in value


def test_affinity_cookie_is_removed_before_the_node() -> None:
    value, headers = split_cookie(
        [(b"Cookie", b"a=1; rke2ha_affinity=TOKEN; b=2"), (b"Host", b"h")], b"rke2ha_affinity"
    )
    assert value == b"TOKEN"
    assert headers == [(b"Cookie", b"a=1; b=2"), (b"Host", b"h")]
    value, headers = split_cookie([(b"Cookie", b"rke2ha_affinity=T")], b"rke2ha_affinity")
    assert value == b"T" and headers == []
