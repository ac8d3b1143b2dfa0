"""What the probes saw, as plain data: the input of every verdict.

Kept apart from `probes` so the decisions in `verdicts` are tested on hand-made
observations, without sockets.
"""

from __future__ import annotations

from collections.abc import Mapping
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


@dataclass
class SpreadSample:
    """What `lb.spread` saw: which node answered each request through the load balancer."""

    served: dict[str, int] = field(default_factory=dict)  # node name ("" unnamed) -> answers
    requests: int = 0
    failures: int = 0  # no connection, no answer, or not 200
    rounds: int = 0
    seconds: float = 0.0
    # The load balancer's /status at the end: node -> in rotation (None: not listed);
    # None when there is no admin endpoint to read.
    rotation: Mapping[str, bool | None] | None = None
