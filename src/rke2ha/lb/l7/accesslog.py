"""One JSON line per request, written by the process's `AccessLog` (this module builds it).

The schema is both layers' (`rke2ha.lb.accesslog`: time, layer, frontend, client, ...);
layer 7 adds method, path, status, upstream_ms (the node's time to the response head), and
reason when the load balancer answered itself (400/408/502/504 ...) and retries when
another node was tried. The query string is left out of `path`: it often carries tokens.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rke2ha.lb.accesslog import AccessLog, line, record


@dataclass(frozen=True, slots=True)
class Peer:
    """Whom a client session serves, through which listener (made once per connection)."""

    ip: str
    port: int
    frontend: str


@dataclass(slots=True)
class AccessRecord:
    peer: Peer
    method: str = "-"
    target: bytes = b""  # the request target as sent; `path` is derived only when logged
    status: int = 0
    bytes: int = 0  # response bytes sent to the client
    started: float = 0.0
    backend: str | None = None
    upstream_s: float | None = None  # seconds to the node's response head (rounded when logged)
    reason: str | None = None
    retries: int = 0
    uploaded: int = 0  # request body (or websocket) bytes sent to the node

    @property
    def path(self) -> str:
        return path_of(self.target) if self.target else "-"

    def line(self, now: float, at: float) -> str:
        """The log line of a request that ended at monotonic `now`, epoch `at`."""
        peer = self.peer
        fields = record(
            layer=7,
            at=at,
            frontend=peer.frontend,
            client=peer.ip,
            client_port=peer.port,
            backend=self.backend,
            duration_s=now - self.started,
            bytes_to_client=self.bytes,
            bytes_from_client=self.uploaded,
        )
        fields["method"] = self.method
        fields["path"] = self.path
        fields["status"] = self.status
        fields["upstream_ms"] = (
            None if self.upstream_s is None else round(self.upstream_s * 1000, 3)
        )
        if self.reason:
            fields["reason"] = self.reason
        if self.retries:
            fields["retries"] = self.retries
        return line(fields)


def path_of(target: bytes) -> str:
    """The path part of a request target, without the query, for the log."""
    return target.split(b"?", 1)[0].decode("latin-1")


def emit(log: AccessLog | None, record: AccessRecord) -> None:
    """Log `record` as ended now (the clock is read only when the log is on)."""
    if log is not None and log.enabled:
        log.add(record.line(time.monotonic(), time.time()))
