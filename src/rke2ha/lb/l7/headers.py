"""Header rewriting at the layer 7 hop and serialisation of the heads that cross it.

Rancher behind a TLS-terminating hop needs (Rancher docs, Helm chart options, "External TLS
Termination": https://ranchermanager.docs.rancher.com/getting-started/installation-and-upgrade/
installation-references/helm-chart-options): `Host` passed as the client sent it,
`X-Forwarded-Proto: https`, `X-Forwarded-Port: 443`, `X-Forwarded-For` with the client
address appended, and `Upgrade`/`Connection` carried for websockets. Hop-by-hop headers
(RFC 9110 §7.6.1: the fixed list plus every name listed in `Connection`) belong to one hop
and are dropped in both directions; framing headers are rewritten because the body is
re-framed on each side (see `proxy.py`). Heads are serialised from parsed fields, so a node
never sees the client's raw bytes.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

Headers = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Replaced by this hop: a client must not be able to claim another scheme or address.
_FORWARDED = frozenset(
    {b"x-forwarded-proto", b"x-forwarded-port", b"x-forwarded-host", b"content-length"}
)


def connection_listed(headers: Headers) -> set[bytes]:
    """Lower-cased header names listed in `Connection` (they are hop-by-hop too)."""
    listed: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            listed.update(token.strip().lower() for token in value.split(b",") if token.strip())
    return listed


def end_to_end(headers: Headers, drop: Iterable[bytes] = ()) -> Headers:
    """`headers` without hop-by-hop ones and without the lower-cased names in `drop`."""
    removed = HOP_BY_HOP | frozenset(drop) | connection_listed(headers)
    return [(name, value) for name, value in headers if name.lower() not in removed]


# Both directions run for every request, so each side makes ONE pass over the headers
# that both collects what the strict reader must check and writes the end-to-end lines the
# other hop will receive (profiled: the earlier check, filter, then format passes cost
# ~7 us a request; this ~2). Names listed in `Connection` are hop-by-hop too; they are
# rare beyond the fixed list, so they cost a second pass only when present.

# Request header names the scan looks at: hop-by-hop, the forwarded set (a client must not
# choose the scheme, port or host a node sees), Content-Length (re-framed), and Host /
# X-Forwarded-For, which are kept but need a look.
_REQUEST_SPECIAL = HOP_BY_HOP | _FORWARDED | {b"host", b"x-forwarded-for"}
_REQUEST_SPECIAL_WITH_COOKIE = _REQUEST_SPECIAL | {b"cookie"}
_NOT_HEADER_NAMES = HOP_BY_HOP | {b"close"}  # Connection tokens that need no second pass


class RequestScan:
    """What one pass over a request's headers found (see `scan_request`)."""

    __slots__ = (
        "connection",
        "content_length",
        "cookie_token",
        "forwarded_for",
        "host",
        "hosts",
        "kept",
        "transfer_encodings",
        "upgrade",
    )

    def __init__(self) -> None:
        self.hosts = 0
        self.host: bytes | None = None
        self.transfer_encodings: list[bytes] = []
        self.content_length: bytes | None = None
        self.connection: tuple[bytes, ...] = ()  # lower-cased tokens
        self.upgrade: bytes | None = None  # the Upgrade value as sent (stripped)
        self.forwarded_for: list[bytes] = []  # X-Forwarded-For values the client sent
        self.cookie_token: bytes | None = None  # the affinity cookie's value, taken out
        self.kept = b""  # end-to-end lines for the node: Host and the rest, client's order


def scan_request(
    headers: Headers, cookie_name: bytes | None = None, skip: Collection[bytes] = ()
) -> RequestScan:
    """One pass over a request's headers: framing facts for the checks, and the lines a
    node receives (without X-Forwarded-*, framing and hop-by-hop headers; with the
    affinity cookie `cookie_name` taken out of `Cookie`). `skip`: lower-cased names that
    `Connection` lists, for the second pass this function makes itself when needed."""
    scan = RequestScan()
    special = _REQUEST_SPECIAL_WITH_COOKIE if cookie_name else _REQUEST_SPECIAL
    kept: list[bytes] = []
    append = kept.append
    for name, value in headers:
        lower = name.lower()
        if lower not in special:
            if not skip or lower not in skip:
                append(b"%s: %s\r\n" % (name, value))
            continue
        listed = bool(skip) and lower in skip
        if lower == b"host":
            scan.hosts += 1
            if not listed:
                scan.host = value
                append(b"%s: %s\r\n" % (name, value))
        elif lower == b"transfer-encoding":
            scan.transfer_encodings.append(value)
        elif lower == b"content-length":
            scan.content_length = value
        elif lower == b"connection":
            scan.connection += _COMMON_CONNECTION.get(value) or connection_tokens(value)
        elif lower == b"upgrade":
            scan.upgrade = value.strip()
        elif lower == b"cookie" and cookie_name is not None:
            # Our cookie pins the request even when the client lists Cookie in Connection;
            # the rest is forwarded unless listed.
            token, rest = split_cookie_value(value, cookie_name)
            if token is not None:
                scan.cookie_token = token
            if rest and not listed:
                append(b"%s: %s\r\n" % (name, rest))
        elif listed:
            continue
        elif lower == b"x-forwarded-for":
            value = value.strip()
            if value:
                scan.forwarded_for.append(value)
        # every other special name (hop-by-hop, X-Forwarded-Proto/Port/Host) is dropped
    scan.kept = b"".join(kept)
    connection = scan.connection
    if connection and not skip and not _NOT_HEADER_NAMES.issuperset(connection):
        # `Connection` names more hop-by-hop headers (rare): scan again without them.
        named = frozenset(t for t in connection if t not in _NOT_HEADER_NAMES)
        return scan_request(headers, cookie_name, named)
    return scan


_COMMON_CONNECTION = {
    b"keep-alive": (b"keep-alive",),
    b"close": (b"close",),
    b"upgrade": (b"upgrade",),
}


def connection_tokens(value: bytes) -> tuple[bytes, ...]:
    """The lower-cased tokens of one Connection header value."""
    lowered = value.strip().lower()
    common = _COMMON_CONNECTION.get(lowered)  # nearly every value is one of these
    if common is not None:
        return common
    return tuple(t.strip() for t in lowered.split(b",") if t.strip())


def split_cookie_value(value: bytes, name: bytes) -> tuple[bytes | None, bytes]:
    """(the value of cookie `name` or None, the Cookie header value without it)."""
    token: bytes | None = None
    others: list[bytes] = []
    for pair in value.split(b";"):
        pair = pair.strip()
        key, sep, val = pair.partition(b"=")
        if sep and key == name:
            token = val.strip()
        elif pair:
            others.append(pair)
    return token, b"; ".join(others)


def forwarded_suffix(proto: str, port: int) -> bytes:
    """The constant X-Forwarded-Proto/Port lines of one listener (made once, not per request)."""
    return b"X-Forwarded-Proto: %s\r\nX-Forwarded-Port: %d\r\n" % (proto.encode("ascii"), port)


def forwarded_request_head(
    method: str,
    target: bytes,
    kept: bytes,
    *,
    forwarded_for: list[bytes],
    host: bytes | None,
    client_ip: bytes,
    suffix: bytes,
    framing: bytes,
    upgrade: bytes | None = None,
) -> bytes:
    """The serialised head a node receives; always HTTP/1.1 with keep-alive.

    `kept` (from `scan_request`), then `X-Forwarded-For` (the client's values, then
    `client_ip`), the listener's `suffix` (`forwarded_suffix`), `X-Forwarded-Host` (the
    client's Host), the upgrade pair when `upgrade` is set, and `framing`: the framing
    header line (`CHUNKED_LINE`, `length_line(n)`) or `b""` (no body).
    """
    chain = b", ".join([*forwarded_for, client_ip]) if forwarded_for else client_ip
    tail = b"X-Forwarded-Host: %s\r\n" % host if host is not None else b""
    if upgrade is not None:
        tail += b"Connection: Upgrade\r\nUpgrade: %s\r\n" % upgrade
    if framing:
        tail += framing
    return b"%s %s HTTP/1.1\r\n%sX-Forwarded-For: %s\r\n%s%s\r\n" % (
        method.encode("ascii"),
        target,
        kept,
        chain,
        suffix,
        tail,
    )


def _original_upgrade(headers: Headers) -> bytes | None:
    for name, value in headers:
        if name.lower() == b"upgrade":
            return value.strip()
    return None


# Response header names the scan looks at: hop-by-hop (dropped) and Content-Length (the
# body is re-framed for the client).
_RESPONSE_SPECIAL = HOP_BY_HOP | {b"content-length"}


def scan_response(headers: Headers) -> tuple[bytes, bytes | None, bytes | None, tuple[bytes, ...]]:
    """One pass over a response's headers: (the end-to-end lines for the client, the
    Transfer-Encoding value, the Content-Length value, the lower-cased Connection tokens)."""
    # Runs for every response: one loop, no helper calls on the common path.
    kept: list[bytes] = []
    append = kept.append
    te: bytes | None = None
    length: bytes | None = None
    connection: tuple[bytes, ...] = ()
    for name, value in headers:
        lower = name.lower()
        if lower not in _RESPONSE_SPECIAL:
            append(b"%s: %s\r\n" % (name, value))
        elif lower == b"content-length":
            length = value
        elif lower == b"transfer-encoding":
            te = value
        elif lower == b"connection":
            connection += _COMMON_CONNECTION.get(value) or connection_tokens(value)
    if connection and not _NOT_HEADER_NAMES.issuperset(connection):
        # `Connection` names more hop-by-hop headers (rare): filter again without them.
        kept = [b"%s: %s\r\n" % pair for pair in end_to_end(headers, (b"content-length",))]
    return b"".join(kept), te, length, connection


def response_head(
    status: int,
    reason: bytes,
    kept: bytes,
    *,
    framing: bytes,
    keep_alive: bool,
    extra: Sequence[tuple[bytes, bytes]] = (),
) -> bytes:
    """The serialised head of a response to the client (HTTP/1.1): the node's end-to-end
    lines `kept` (from `scan_response`), `extra` (e.g. the affinity cookie), the framing
    line `framing` (`CHUNKED_LINE`, `length_line(n)` or `b""`), and `Connection: close`
    when the client connection ends after it."""
    if extra:
        framing = b"".join([b"%s: %s\r\n" % pair for pair in extra]) + framing
    return b"HTTP/1.1 %d %s\r\n%s%s%s\r\n" % (
        status,
        reason or b"-",
        kept,
        framing,
        b"" if keep_alive else b"Connection: close\r\n",
    )


def upgraded_response_head(status: int, reason: bytes, headers: Headers) -> bytes:
    """A 101 head: end-to-end headers plus `Connection: Upgrade` and the node's `Upgrade`."""
    upgrade = _original_upgrade(headers)
    kept = end_to_end(headers)
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason or b"Switching Protocols")]
    lines.extend(b"%s: %s\r\n" % (name, value) for name, value in kept)
    lines.append(b"Connection: Upgrade\r\n")
    if upgrade is not None:
        lines.append(b"Upgrade: %s\r\n" % upgrade)
    lines.append(b"\r\n")
    return b"".join(lines)


CHUNKED_LINE = b"Transfer-Encoding: chunked\r\n"


def length_line(length: int) -> bytes:
    """The framing line of a body of `length` bytes."""
    return b"Content-Length: %d\r\n" % length


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
