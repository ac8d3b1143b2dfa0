"""The short responses the layer 7 front writes itself: errors (400 ... 505) with `close`."""

from __future__ import annotations

REASONS = {
    400: b"Bad Request",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
    505: b"HTTP Version Not Supported",
}

_EXPLAIN = {
    400: b"The request could not be read in exactly one way, so it was refused.",
    405: b"This method is not served here.",
    408: b"The request head did not arrive in time.",
    414: b"The request target is too long.",
    431: b"The request head is too large.",
    502: b"No Rancher server node could answer this request.",
    503: b"The load balancer is shutting down.",
    504: b"The Rancher server node did not answer in time.",
    505: b"Only HTTP/1.0 and HTTP/1.1 are served.",
}


def error_response(status: int, *, keep_alive: bool = False) -> bytes:
    """A complete short HTML response; the reason for logs is kept out of it on purpose."""
    reason = REASONS.get(status, b"Error")
    body = b"<html><body><h1>%d %s</h1><p>%s</p></body></html>\n" % (
        status,
        reason,
        _EXPLAIN.get(status, b""),
    )
    connection = b"" if keep_alive else b"Connection: close\r\n"
    return b"HTTP/1.1 %d %s\r\nContent-Type: text/html\r\nContent-Length: %d\r\n%s\r\n%s" % (
        status,
        reason,
        len(body),
        connection,
        body,
    )
