"""Port 80 at layer 7: a permanent redirect to `https://<hostname><path>?<query>`.

The redirect always names the configured hostname, never the client's Host header: a
forged Host must not turn the load balancer into an open redirector. Requests under
`/.well-known/acme-challenge/` may instead go to the nodes (an ACME HTTP-01 check must
be answered over plain HTTP). 308 keeps the method and body; 301 is what old clients know.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ACME_PREFIX = b"/.well-known/acme-challenge/"


@dataclass(frozen=True, slots=True)
class RedirectPolicy:
    hostname: str
    code: Literal[301, 308] = 308
    https_port: int = 443
    acme_passthrough: bool = False


def passes_through(policy: RedirectPolicy, target: bytes) -> bool:
    """True when the request goes to the nodes instead of being redirected."""
    return policy.acme_passthrough and target.startswith(ACME_PREFIX)


def location(policy: RedirectPolicy, target: bytes) -> bytes:
    """The https URL for request target `target` (origin form; absolute form reduced)."""
    path = target
    if path.lower().startswith((b"http://", b"https://")):
        rest = path.split(b"://", 1)[1]
        slash = rest.find(b"/")
        path = rest[slash:] if slash >= 0 else b"/"
    if not path.startswith(b"/"):
        path = b"/" + path if path != b"*" else b"/"
    port = b"" if policy.https_port == 443 else b":%d" % policy.https_port
    return b"https://%s%s%s" % (policy.hostname.encode("idna"), port, path)


def redirect_response(policy: RedirectPolicy, target: bytes, *, keep_alive: bool) -> bytes:
    """The whole response (head and short body) that sends the client to https."""
    url = location(policy, target)
    reason = b"Moved Permanently" if policy.code == 301 else b"Permanent Redirect"
    body = b'<a href="%s">%s</a>\n' % (url.replace(b'"', b"%22"), url.replace(b"<", b"%3C"))
    head = [
        b"HTTP/1.1 %d %s\r\n" % (policy.code, reason),
        b"Location: %s\r\n" % url,
        b"Content-Type: text/html\r\n",
        b"Content-Length: %d\r\n" % len(body),
    ]
    if not keep_alive:
        head.append(b"Connection: close\r\n")
    return b"".join([*head, b"\r\n", body])
