"""What the server needs from a frontend, so layer 4 and layer 7 plug in the same way.

`server.LoadBalancer` owns pools, checks, admin, reload and drain; a frontend owns a
listener and its client sessions. `FrontendConfig.kind` picks the implementation: the
layer 4 `frontend.Frontend` (`tcp`) or the layer 7 `l7.frontend.L7Frontend` (`https`,
`redirect`).
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

    def reconfigure(self, config: FrontendConfig) -> None:
        """A reload changed this frontend's settings: new connections get them."""

    def start(self) -> None:
        """Bind (InvalidError naming the address when impossible) and accept."""

    def stop_accepting(self) -> None:
        """Take what is queued, close the listener; idempotent."""

    def sweep_idle(self, now: float) -> int:
        """Close sessions idle for the configured timeout; return how many."""

    def close_sessions(self, outcome: str, only: Callable[[Any], bool] | None = None) -> int:
        """Close established sessions (matching `only`, which gets a session with a
        `backend` attribute); return how many."""
