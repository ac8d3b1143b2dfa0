"""The access log of both layers: one record schema, one writer per process.

Every line is one JSON object with the same leading fields at both layers, so one file can
hold both (a layer 7 spec serves 443 at layer 7 and 6443/9345 at layer 4 in one process):

    time               ISO 8601 UTC with milliseconds, when the connection or request ended
    layer              4 (one line per connection) or 7 (one line per request)
    frontend           the listener's name (`https-443`, `port-6443`, ...)
    client, client_port
    backend            the node that served it, or null
    duration_ms        from accept (layer 4) or the request's first byte (layer 7) to the end
    bytes_to_client    bytes sent to the client
    bytes_from_client  bytes of the client's carried to a node (layer 7: the request body)

then layer 4's `outcome` and `tries`, or layer 7's `method`, `path`, `status`,
`upstream_ms` and, when they apply, `reason` and `retries` (`lb/l7/accesslog.py`).

Lines of both layers go through one `AccessLog` (one open file per process), buffered and
flushed by a timer (at most `flush_interval` late) rather than per connection or request:
a write(2) each would cost the data plane a syscall each.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import IO, Any

# `--access-log` values meaning "no access log".
OFF = ("off", "none")


def log_target(value: str | None) -> str | None:
    """The `--access-log` value as a target: None (off), "-" (stdout) or a file path."""
    return None if value is None or value in OFF else value


def utc_time(epoch: float) -> str:
    """`2026-01-31T12:00:00.123Z` for `epoch`: the time field of every access log line."""
    whole = int(epoch)
    millis = int((epoch - whole) * 1000)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(whole))}.{millis:03d}Z"


def record(
    *,
    layer: int,
    at: float,
    frontend: str,
    client: str,
    client_port: int,
    backend: str | None,
    duration_s: float,
    bytes_to_client: int,
    bytes_from_client: int,
) -> dict[str, Any]:
    """The fields every access log line starts with (see the module docstring); the caller
    adds its layer's own. `at` is the epoch time of the end."""
    return {
        "time": utc_time(at),
        "layer": layer,
        "frontend": frontend,
        "client": client,
        "client_port": client_port,
        "backend": backend,
        "duration_ms": round(duration_s * 1000, 3),
        "bytes_to_client": bytes_to_client,
        "bytes_from_client": bytes_from_client,
    }


def line(fields: dict[str, Any]) -> str:
    return json.dumps(fields, separators=(",", ":"))


class AccessLog:
    def __init__(self, target: str | None, flush_interval: float = 0.5) -> None:
        self._stream: IO[str] | None
        self._own = False
        if target is None:
            self._stream = None
        elif target == "-":
            self._stream = sys.stdout
        else:
            self._stream = open(target, "a", encoding="utf-8", buffering=1 << 16)  # noqa: SIM115
            self._own = True
        self._lines: list[str] = []
        self._flush_interval = flush_interval
        self._timer: asyncio.TimerHandle | None = None

    @property
    def enabled(self) -> bool:
        return self._stream is not None

    def add(self, text: str) -> None:
        """One line; written with the others at most `flush_interval` later."""
        self._lines.append(text)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._flush_interval, self.flush)

    def connection(
        self,
        *,
        client: tuple[str, int],
        frontend: str,
        backend: str | None,
        bytes_up: int,
        bytes_down: int,
        started: float,
        outcome: str,
        tries: int,
    ) -> None:
        if self._stream is None:
            return
        fields = record(
            layer=4,
            at=time.time(),
            frontend=frontend,
            client=client[0],
            client_port=client[1],
            backend=backend,
            duration_s=time.monotonic() - started,
            bytes_to_client=bytes_down,
            bytes_from_client=bytes_up,
        )
        fields["outcome"] = outcome
        fields["tries"] = tries
        self.add(line(fields))

    def flush(self) -> None:
        self._timer = None
        if self._stream is None or not self._lines:
            return
        self._stream.write("\n".join(self._lines) + "\n")
        self._stream.flush()
        self._lines.clear()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.flush()
        if self._own and self._stream is not None:
            self._stream.close()
