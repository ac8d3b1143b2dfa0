"""Backends of one frontend and the choice of the next one: pure bookkeeping, no I/O.

A `Pool` holds `Backend`s (address, health machine, counters) and answers "which backend
gets this connection?" by least-connections (default, like Rancher's nginx example) or
round-robin, skipping backends whose health state does not serve and those already tried
for this client (`Attempt` bounds the retries). `update()` applies a new backend list:
new ones join, removed ones drain (no new connections; the data plane ends their
connections when they finish or at `drain_timeout`) and leave once idle.

Counters are plain ints updated on the data path and read by the admin endpoint at scrape
time: a Prometheus client call per relayed chunk would cost more than the relaying.

Each backend also keeps when its state last changed (wall-clock time, for people), how many
changes and how many falls out of rotation there were, and its last few changes, so a node
that flaps shows as flapping on the status page instead of as whatever it is this second.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from rke2ha.lb.config import BackendConfig, Balance
from rke2ha.lb.health_state import Change, Event, HealthMachine, State

ChangeListener = Callable[["Backend", Change], None]


@dataclass(eq=False)
class Backend:
    config: BackendConfig
    machine: HealthMachine
    active: int = 0
    total: int = 0
    connect_failures: int = 0
    bytes_in: int = 0  # from the backend towards clients
    bytes_out: int = 0  # from clients towards the backend
    check_latency: float = 0.0
    checks_failed: int = 0
    last_check: str = ""
    removed_at: float | None = None  # loop time the drain began
    # Set by the pool so every state change is reported (logged, counted) in one place.
    listener: ChangeListener | None = field(default=None, repr=False)
    since: float = field(default_factory=time.time)  # wall time the current state began
    changes: int = 0  # state changes since the backend joined
    went_down: int = 0  # times it left rotation (serving -> not serving): flaps
    history: deque[StateChange] = field(default_factory=lambda: deque(maxlen=HISTORY))
    # Wall time an operator took the node out for maintenance (`rke2ha lb drain`), or None.
    # Kept apart from the health machine: checks go on, and a passing one must not put a
    # node back that an operator took out.
    maintenance_since: float | None = None

    @property
    def key(self) -> str:
        return self.config.key

    @property
    def state(self) -> State:
        return self.machine.state

    @property
    def serves(self) -> bool:
        return self.machine.state.serves and self.maintenance_since is None

    def handle(self, event: Event, reason: str) -> Change | None:
        change = self.machine.handle(event, reason)
        if change is not None:
            self._record(change)
        return change

    def adopt(self, state: State, reason: str) -> None:
        """Take a state decided elsewhere (the supervisor process of `--workers`)."""
        if state != self.machine.state:
            old = self.machine.state
            self.machine.state = state
            self.machine.last_reason = reason
            self.machine.checked = True
            self._record(Change(old, state, Event.CHECK_OK, reason))

    def _record(self, change: Change) -> None:
        self.since = time.time()
        self.changes += 1
        if change.old.serves and not change.new.serves:
            self.went_down += 1
        self.history.append(StateChange(self.since, change.old, change.new, change.reason))
        if self.listener is not None:
            self.listener(self, change)


HISTORY = 5  # state changes kept per backend for the status page


@dataclass(frozen=True, slots=True)
class StateChange:
    at: float  # wall time
    old: State
    new: State
    reason: str


class Attempt:
    """The backends tried for one client connection; at most `1 + retries` of them."""

    __slots__ = ("first", "max_tries", "tried")

    def __init__(self, retries: int) -> None:
        self.tried: list[Backend] = []
        self.max_tries = 1 + retries
        self.first: Backend | None = None

    @property
    def exhausted(self) -> bool:
        return len(self.tried) >= self.max_tries

    @property
    def failover(self) -> bool:
        """True once the connection went to a backend other than the first choice."""
        return len(self.tried) > 1


class Pool:
    def __init__(
        self,
        backends: Iterable[BackendConfig],
        *,
        rise: int,
        fall: int,
        balance: Balance = "leastconn",
        listener: ChangeListener | None = None,
    ) -> None:
        self.rise, self.fall, self.balance = rise, fall, balance
        self.listener = listener
        self.backends: list[Backend] = []
        self.draining: list[Backend] = []
        self._rr = itertools.count()
        for config in backends:
            self.backends.append(self._new(config))

    def _new(self, config: BackendConfig) -> Backend:
        return Backend(config, HealthMachine(self.rise, self.fall), listener=self.listener)

    # ---- selection --------------------------------------------------------------------

    def pick(self, attempt: Attempt) -> Backend | None:
        """The next backend for `attempt`, or None when no serving backend is left to try."""
        if attempt.exhausted:
            return None
        candidates = [b for b in self.backends if b.serves and b not in attempt.tried]
        if not candidates:
            return None
        # Rotating the start breaks ties, so equal loads still spread.
        start = next(self._rr) % len(candidates)
        if self.balance == "roundrobin":
            chosen = candidates[start]
        else:
            rotated = candidates[start:] + candidates[:start]
            chosen = min(rotated, key=_active)
        attempt.tried.append(chosen)
        if attempt.first is None:
            attempt.first = chosen
        return chosen

    def connect_failed(self, backend: Backend, reason: str) -> None:
        """Passive check: a refused or timed-out connect takes the backend down at once."""
        backend.connect_failures += 1
        backend.handle(Event.CONNECT_FAIL, reason)

    # ---- reconfiguration --------------------------------------------------------------

    def update(
        self, configs: Iterable[BackendConfig], now: float
    ) -> tuple[list[Backend], list[Backend]]:
        """Apply a new backend list; return (joined, draining). Kept backends keep state."""
        wanted = {c.key: c for c in configs}
        current = {b.key: b for b in self.backends}
        joined = [self._new(c) for key, c in wanted.items() if key not in current]
        leaving = [b for key, b in current.items() if key not in wanted]
        for backend in leaving:
            backend.handle(Event.DRAIN, "removed from the configuration")
            backend.removed_at = now
        self.backends = [b for b in self.backends if b.key in wanted] + joined
        self.draining.extend(leaving)
        return joined, leaving

    def forget_idle_drained(self) -> list[Backend]:
        """Drop draining backends whose last connection ended; return them."""
        gone = [b for b in self.draining if b.active == 0]
        self.draining = [b for b in self.draining if b.active > 0]
        return gone

    def all(self) -> list[Backend]:
        return self.backends + self.draining


def _active(backend: Backend) -> int:
    return backend.active
