"""Cookie affinity: pin a client to one node with a cookie it can neither read nor forge.

The cookie value is HMAC-SHA256(secret, node id), truncated to 128 bits and base64url
encoded. It names no address, and without the secret no client can produce the value of a
node it was never sent to; a value that matches no current node is ignored. The secret is
made once per serving process tree (workers share it, so a cookie works on every worker)
or read from a file to survive restarts. When the pinned node is down the request goes to
another node and the response carries that node's cookie: failover is transparent.
The cookie is removed from the request before it reaches a node ("indirect" in HAProxy's
words), so Rancher never sees it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from typing import TYPE_CHECKING

from rke2ha.secretfiles import ensure_secret

if TYPE_CHECKING:
    from rke2ha.lb.config import L7Settings

COOKIE_NAME = b"rke2ha_affinity"
_TOKEN_BYTES = 16


class AffinityCookie:
    def __init__(self, secret: bytes | None = None, name: bytes = COOKIE_NAME) -> None:
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self.name = name
        self._cache: dict[str, bytes] = {}

    def token(self, node_id: str) -> bytes:
        """The cookie value that pins to `node_id`."""
        cached = self._cache.get(node_id)
        if cached is None:
            mac = hmac.new(self._secret, node_id.encode("utf-8"), hashlib.sha256).digest()
            cached = base64.urlsafe_b64encode(mac[:_TOKEN_BYTES]).rstrip(b"=")
            self._cache[node_id] = cached
        return cached

    def pinned(self, cookie_value: bytes | None, node_ids: Iterable[str]) -> str | None:
        """The node among `node_ids` that `cookie_value` pins to, if any."""
        if not cookie_value:
            return None
        for node_id in node_ids:
            if hmac.compare_digest(self.token(node_id), cookie_value):
                return node_id
        return None

    def set_cookie(self, node_id: str) -> tuple[bytes, bytes]:
        """The `Set-Cookie` header that pins the client to `node_id` (session cookie)."""
        value = b"%s=%s; Path=/; HttpOnly; Secure; SameSite=Lax" % (self.name, self.token(node_id))
        return (b"Set-Cookie", value)


def affinity_key(settings: L7Settings) -> bytes | None:
    """The cookie's HMAC key: given, or read from (made once in) its 0600 file. None
    without either: `AffinityCookie` then makes one for its process alone."""
    if settings.affinity_secret is None and settings.affinity_secret_file is not None:
        return bytes.fromhex(
            ensure_secret(settings.affinity_secret_file, what="session affinity key")
        )
    return settings.affinity_secret
