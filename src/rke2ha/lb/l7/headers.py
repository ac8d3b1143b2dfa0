"""Header rewriting at the layer 7 hop and serialisation of the heads that cross it.

Rancher behind a TLS-terminating hop needs (DESIGN.md §1): `Host` passed as the client sent
it, `X-Forwarded-Proto: https`, `X-Forwarded-Port: 443`, `X-Forwarded-For` with the client
address appended, and `Upgrade`/`Connection` carried for websockets. Hop-by-hop headers
(RFC 9110 §7.6.1: the fixed list plus every name listed in `Connection`) belong to one hop
and are dropped in both directions; framing headers are rewritten because the body is
re-framed on each side (see `proxy.py`). Heads are serialised from parsed fields, so a node
never sees the client's raw bytes.
"""

from __future__ import annotations

from collections.abc import Iterable

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
    # Hot path (every request and response): one pass to lower-case the names, and the
    # removal set is only rebuilt when `Connection` lists names or `drop` adds some.
    lowered = [name.lower() for name, _ in headers]
    removed = _removal_set(drop)
    if b"connection" in lowered:
        removed = removed | connection_listed(headers)
    return [pair for pair, lower in zip(headers, lowered, strict=True) if lower not in removed]


_REMOVAL_SETS: dict[object, frozenset[bytes]] = {}


def _removal_set(drop: Iterable[bytes]) -> frozenset[bytes]:
    """HOP_BY_HOP plus `drop`, cached for the few constant `drop` sets the proxy uses."""
    if not drop:
        return HOP_BY_HOP
    if isinstance(drop, frozenset | tuple):
        cached = _REMOVAL_SETS.get(drop)
        if cached is None:
            cached = HOP_BY_HOP | frozenset(drop)
            if len(_REMOVAL_SETS) < 64:  # callers pass constants; never grow without bound
                _REMOVAL_SETS[drop] = cached
        return cached
    return HOP_BY_HOP | frozenset(drop)


def forwarded_request_headers(
    headers: Headers,
    *,
    client_ip: str,
    proto: str,
    port: int,
    upgrade: bytes | None,
    extra_drop: Iterable[bytes] = (),
) -> Headers:
    """The request headers a node receives (framing headers are added by `request_head`)."""
    kept = end_to_end(
        headers, drop=_FORWARDED | frozenset(extra_drop) if extra_drop else _FORWARDED
    )
    host: bytes | None = None
    prior_for: list[bytes] = []
    out: Headers = []
    for name, value in kept:
        lower = name.lower()
        if lower == b"x-forwarded-for":
            prior_for.append(value.strip())
            continue
        if lower == b"host":
            host = value
        out.append((name, value))
    chain = b", ".join([*(v for v in prior_for if v), client_ip.encode("ascii")])
    out.append((b"X-Forwarded-For", chain))
    out.append((b"X-Forwarded-Proto", proto.encode("ascii")))
    out.append((b"X-Forwarded-Port", str(port).encode("ascii")))
    if host is not None:
        out.append((b"X-Forwarded-Host", host))
    if upgrade is not None:
        out.append((b"Connection", b"Upgrade"))
        out.append((b"Upgrade", _original_upgrade(headers) or upgrade))
    return out


def _original_upgrade(headers: Headers) -> bytes | None:
    for name, value in headers:
        if name.lower() == b"upgrade":
            return value.strip()
    return None


def request_head(method: str, target: bytes, headers: Headers, *, framing: bytes) -> bytes:
    """The serialised head of a request to a node; always HTTP/1.1 with keep-alive.

    `framing` is `b"chunked"`, `b"length:<n>"` or `b""` (no body).
    """
    lines = [b"%s %s HTTP/1.1\r\n" % (method.encode("ascii"), target)]
    lines.extend([b"%s: %s\r\n" % pair for pair in headers])
    lines.append(_framing_line(framing))
    lines.append(b"\r\n")
    return b"".join(lines)


def response_head(
    status: int, reason: bytes, headers: Headers, *, framing: bytes, keep_alive: bool
) -> bytes:
    """The serialised head of a response to the client (HTTP/1.1)."""
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason or b"-")]
    lines.extend([b"%s: %s\r\n" % pair for pair in headers])
    lines.append(_framing_line(framing))
    if not keep_alive:
        lines.append(b"Connection: close\r\n")
    lines.append(b"\r\n")
    return b"".join(lines)


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


def _framing_line(framing: bytes) -> bytes:
    if framing == b"chunked":
        return b"Transfer-Encoding: chunked\r\n"
    if framing.startswith(b"length:"):
        return b"Content-Length: %s\r\n" % framing[7:]
    return b""


def chunk(data: bytes) -> bytes:
    """One chunk of a chunked body."""
    return b"%x\r\n%s\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
