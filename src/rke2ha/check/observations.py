"""What the probes saw, as plain data: the input of every verdict.

Kept apart from `probes` so the decisions in `verdicts` are tested on hand-made
observations, without sockets.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class HttpAnswer:
    status: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes
    tls_version: str | None = None
    peer_cert_der: bytes | None = field(default=None, repr=False)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace").strip()


@dataclass(frozen=True)
class TlsObservation:
    version: str  # negotiated by a modern client
    leaf_der: bytes = field(repr=False)
    verify_error: str | None  # None: chain and hostname verified
    legacy_version: str | None  # a TLS 1.0/1.1 handshake the server accepted, else None


@dataclass(frozen=True)
class WebsocketAnswer:
    first_message: str | None  # what arrived within the wait, if anything
