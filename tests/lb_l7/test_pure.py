"""Header rewriting, redirects and affinity cookies as plain functions."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rke2ha.lb.l7.affinity import AffinityCookie
from rke2ha.lb.l7.headers import (
    HOP_BY_HOP,
    connection_listed,
    forwarded_request_head,
    forwarded_suffix,
    length_line,
    scan_request,
    scan_response,
    split_cookie_value,
)
from rke2ha.lb.l7.redirect import RedirectPolicy, location, passes_through, redirect_response

SUFFIX = forwarded_suffix("https", 443)


def _wire(
    headers: list[tuple[bytes, bytes]],
    *,
    method: str = "GET",
    client_ip: bytes = b"198.51.100.2",
    suffix: bytes = SUFFIX,
    framing: bytes = b"",
) -> bytes:
    scan = scan_request(headers)
    return forwarded_request_head(
        method,
        b"/p",
        scan.kept,
        forwarded_for=scan.forwarded_for,
        host=scan.host,
        client_ip=client_ip,
        suffix=suffix,
        framing=framing,
        upgrade=scan.upgrade if b"upgrade" in scan.connection else None,
    )


def _lines(wire: bytes) -> list[tuple[bytes, bytes]]:
    head = wire.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
    return [(n, v) for n, _, v in (line.partition(b": ") for line in head)]


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
    wire = _wire(headers)
    assert wire.startswith(b"GET /p HTTP/1.1\r\n") and wire.endswith(b"\r\n\r\n")
    out = _lines(wire)
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
    out = _lines(_wire([(b"Host", b"h"), (b"Connection", b"Upgrade"), (b"Upgrade", b"websocket")]))
    assert (b"Connection", b"Upgrade") in out and (b"Upgrade", b"websocket") in out


def test_request_head_is_reserialised() -> None:
    wire = _wire(
        [(b"Host", b"h"), (b"Content-Length", b"3")],
        method="POST",
        client_ip=b"127.0.0.1",
        suffix=b"",
        framing=length_line(3),
    )
    assert wire == (
        b"POST /p HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 127.0.0.1\r\n"
        b"X-Forwarded-Host: h\r\nContent-Length: 3\r\n\r\n"
    )
    kept, te, length, connection = scan_response(
        [(b"Transfer-Encoding", b"chunked"), (b"A", b"b"), (b"Content-Length", b"9")]
    )
    assert (kept, te, length, connection) == (b"A: b\r\n", b"chunked", b"9", ())


# Reference semantics for the one-pass scans: the plain filter-then-format pipeline.
_NAMES = st.sampled_from(
    [
        b"Host", b"host", b"Connection", b"Keep-Alive", b"TE", b"Upgrade", b"Cookie",
        b"X-Forwarded-For", b"x-forwarded-proto", b"X-Forwarded-Host", b"Content-Length",
        b"Transfer-Encoding", b"Proxy-Authorization", b"X-Custom", b"x-custom", b"Accept",
    ]
)  # fmt: skip
_VALUES = st.sampled_from(
    [b"", b"a", b"keep-alive", b"close", b"X-Custom", b"x-custom, Accept", b"Upgrade", b"1.2.3.4"]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=10))
def test_one_pass_scans_match_the_plain_filter(headers: list[tuple[bytes, bytes]]) -> None:
    listed = connection_listed(headers)
    request_drop = HOP_BY_HOP | listed | {
        b"x-forwarded-proto", b"x-forwarded-port", b"x-forwarded-host", b"content-length",
        b"x-forwarded-for",
    }  # fmt: skip
    expected = b"".join(b"%s: %s\r\n" % (n, v) for n, v in headers if n.lower() not in request_drop)
    scan = scan_request(headers)
    assert scan.kept == expected
    hosts = [v for n, v in headers if n.lower() == b"host" and b"host" not in listed]
    assert scan.host == (hosts[-1] if hosts else None)
    assert scan.forwarded_for == [
        v.strip()
        for n, v in headers
        if n.lower() == b"x-forwarded-for" and v.strip() and b"x-forwarded-for" not in listed
    ]
    response_drop = HOP_BY_HOP | listed | {b"content-length"}
    kept = scan_response(headers)[0]
    assert kept == b"".join(
        b"%s: %s\r\n" % (n, v) for n, v in headers if n.lower() not in response_drop
    )


def test_affinity_cookie_is_removed_before_the_node() -> None:
    scan = scan_request(
        [(b"Cookie", b"a=1; rke2ha_affinity=TOKEN; b=2"), (b"Host", b"h")], b"rke2ha_affinity"
    )
    assert scan.cookie_token == b"TOKEN"
    assert scan.kept == b"Cookie: a=1; b=2\r\nHost: h\r\n"
    scan = scan_request([(b"Cookie", b"rke2ha_affinity=T")], b"rke2ha_affinity")
    assert scan.cookie_token == b"T" and scan.kept == b""
    assert split_cookie_value(b"x=1;; rke2ha_affinity=Q ", b"rke2ha_affinity") == (b"Q", b"x=1")
    # Cookie listed in Connection: not forwarded, yet our cookie still pins the request.
    scan = scan_request(
        [(b"Connection", b"cookie"), (b"Cookie", b"rke2ha_affinity=T; a=1")], b"rke2ha_affinity"
    )
    assert scan.cookie_token == b"T" and scan.kept == b""


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
