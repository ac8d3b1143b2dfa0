"""One JSON line per finished connection: client, frontend, backend, bytes, duration, outcome.

Lines are buffered and flushed by a timer (at most `flush_interval` late) rather than per
connection: a write(2) per connection would cost the data plane a syscall each.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import IO, Any


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
        record: dict[str, Any] = {
            "time": round(time.time(), 3),
            "client": f"{client[0]}:{client[1]}",
            "frontend": frontend,
            "backend": backend,
            "bytes_from_client": bytes_up,
            "bytes_to_client": bytes_down,
            "duration_s": round(time.monotonic() - started, 6),
            "outcome": outcome,
            "tries": tries,
        }
        self._lines.append(json.dumps(record, separators=(",", ":")))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._flush_interval, self.flush)

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
