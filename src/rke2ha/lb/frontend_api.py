"""What the server needs from a frontend, so layer 4 and layer 7 plug in the same way.

`server.LoadBalancer` owns pools, checks, admin, reload and drain; a frontend owns a
listener and its client sessions. The layer-4 `frontend.Frontend` implements this; the
layer-7 proxy passes its own factory to `LoadBalancer(frontend_factory=...)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from rke2ha.lb.config import FrontendConfig


class FrontendLike(Protocol):
    config: FrontendConfig
    accepting: bool
    total: int
    retries: int
    failovers: int
    failed: int
    bytes_up: int
    bytes_down: int

    @property
    def active(self) -> int:
        """Open client sessions."""

    def start(self) -> None:
        """Bind (InvalidError naming the address when impossible) and accept."""

    def stop_accepting(self) -> None:
        """Take what is queued, close the listener; idempotent."""

    def sweep_idle(self, now: float) -> int:
        """Close sessions idle for the configured timeout; return how many."""

    def close_sessions(self, outcome: str, only: Callable[[Any], bool] | None = None) -> int:
        """Close established sessions (matching `only`, which gets a session with a
        `backend` attribute); return how many."""
