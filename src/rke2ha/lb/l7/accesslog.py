"""One JSON line per request on the `rke2ha.lb.l7.access` logger (sans-I/O: builds the record).

Fields: time, client, method, path, status, bytes (response bytes sent to the client),
duration_ms, backend, upstream_ms (node's time to the response head), and reason when
the load balancer answered itself (400/408/502/504 ...). The query string is left out of
`path`: it often carries tokens.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

access_log = logging.getLogger("rke2ha.lb.l7.access")


@dataclass(slots=True)
class AccessRecord:
    client: str
    method: str = "-"
    target: bytes = b""  # the request target as sent; `path` is derived only when logged
    status: int = 0
    bytes: int = 0
    started: float = 0.0
    backend: str | None = None
    upstream_s: float | None = None  # seconds to the node's response head (rounded when logged)
    reason: str | None = None
    retries: int = 0
    uploaded: int = 0  # request body (or websocket) bytes sent to the node; not logged

    @property
    def path(self) -> str:
        return path_of(self.target) if self.target else "-"

    def line(self, now: float) -> str:
        record: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "client": self.client,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "bytes": self.bytes,
            "duration_ms": round((now - self.started) * 1000, 3),
            "backend": self.backend,
            "upstream_ms": None if self.upstream_s is None else round(self.upstream_s * 1000, 3),
        }
        if self.reason:
            record["reason"] = self.reason
        if self.retries:
            record["retries"] = self.retries
        return json.dumps(record, separators=(",", ":"))


def path_of(target: bytes) -> str:
    """The path part of a request target, without the query, for the log."""
    return target.split(b"?", 1)[0].decode("latin-1")


def emit(record: AccessRecord) -> None:
    """Log `record` as ended now (the clock is read only when the log is on)."""
    if access_log.isEnabledFor(logging.INFO):
        access_log.info(record.line(time.monotonic()))
