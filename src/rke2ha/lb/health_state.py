"""The health state machine of one backend: everything that decides up or down lives here.

Theory of operation (in the spirit of h11's `_state.py`):

- This module does no I/O and does not know where its events come from. Active checks
  (`checks.py`) feed `CHECK_OK` / `CHECK_FAIL`, the data plane (`frontend.py`) feeds
  `CONNECT_FAIL` when a connect is refused or times out, and a reload feeds `DRAIN` when
  the backend leaves the configuration.
- Five states. `UP` and `FALLING` receive new connections; `DOWN`, `RISING` and
  `DRAINING` do not. `FALLING` is "up, but the last checks failed" and `RISING` is
  "down, but the last checks passed": they count towards `fall` and `rise` the way
  HAProxy's `inter`/`rise`/`fall` do.
- A failed *connect* is stronger evidence than a failed check: a client was just refused
  by that node, so `CONNECT_FAIL` takes the backend down at once (passive check) instead
  of waiting for `fall` more checks. It then needs `rise` passing checks to come back.
- `DRAINING` is terminal: a backend removed by a reload takes no new connections and
  ignores check results until its last connection ends. Draining twice is misuse.
- The transitions are a table, not nested ifs: `(state, event) -> Rule`. A rule names the
  state to enter once the counter reaches its threshold (`rise` or `fall`) and the state to
  stay in before that. An event with no entry raises `HealthStateError`.
- Every change returns a `Change` carrying the reason, so each one can be logged.

A backend starts `UP`: a freshly started load balancer (or the new process of a handover)
must not refuse clients while it waits for `rise` checks; the first check runs at once
and the passive check covers a dead node in the meantime.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal


class State(enum.Enum):
    UP = "up"
    FALLING = "falling"
    DOWN = "down"
    RISING = "rising"
    DRAINING = "draining"

    @property
    def serves(self) -> bool:
        """True when a backend in this state may receive new connections."""
        return self in (State.UP, State.FALLING)


class Event(enum.Enum):
    CHECK_OK = "check-ok"
    CHECK_FAIL = "check-fail"
    CONNECT_FAIL = "connect-fail"
    DRAIN = "drain"


class HealthStateError(Exception):
    """An event that makes no sense in the current state (a bug in the caller)."""


Threshold = Literal["rise", "fall"] | None


@dataclass(frozen=True)
class Rule:
    """Where an event leads: `reached` once `counter` hits its threshold, else `before`."""

    reached: State
    before: State | None = None
    counter: Threshold = None


# The whole machine. Counting rules keep a run of equal results; any other entry resets it.
TRANSITIONS: dict[tuple[State, Event], Rule] = {
    (State.UP, Event.CHECK_OK): Rule(State.UP),
    (State.UP, Event.CHECK_FAIL): Rule(State.DOWN, State.FALLING, "fall"),
    (State.UP, Event.CONNECT_FAIL): Rule(State.DOWN),
    (State.UP, Event.DRAIN): Rule(State.DRAINING),
    (State.FALLING, Event.CHECK_OK): Rule(State.UP),
    (State.FALLING, Event.CHECK_FAIL): Rule(State.DOWN, State.FALLING, "fall"),
    (State.FALLING, Event.CONNECT_FAIL): Rule(State.DOWN),
    (State.FALLING, Event.DRAIN): Rule(State.DRAINING),
    (State.DOWN, Event.CHECK_OK): Rule(State.UP, State.RISING, "rise"),
    (State.DOWN, Event.CHECK_FAIL): Rule(State.DOWN),
    (State.DOWN, Event.CONNECT_FAIL): Rule(State.DOWN),
    (State.DOWN, Event.DRAIN): Rule(State.DRAINING),
    (State.RISING, Event.CHECK_OK): Rule(State.UP, State.RISING, "rise"),
    (State.RISING, Event.CHECK_FAIL): Rule(State.DOWN),
    (State.RISING, Event.CONNECT_FAIL): Rule(State.DOWN),
    (State.RISING, Event.DRAIN): Rule(State.DRAINING),
    # A check already in flight when the drain began may still report: ignore it.
    (State.DRAINING, Event.CHECK_OK): Rule(State.DRAINING),
    (State.DRAINING, Event.CHECK_FAIL): Rule(State.DRAINING),
    (State.DRAINING, Event.CONNECT_FAIL): Rule(State.DRAINING),
}


@dataclass(frozen=True)
class Change:
    """One state change of one backend, with the reason an operator reads in the log."""

    old: State
    new: State
    event: Event
    reason: str


UNCHECKED = "initial state: assumed up until the first check"


class HealthMachine:
    """The state of one backend; `handle()` applies an event and returns the change, if any."""

    __slots__ = ("_run", "checked", "fall", "last_reason", "rise", "state")

    def __init__(self, rise: int, fall: int, state: State = State.UP) -> None:
        if rise < 1 or fall < 1:
            raise ValueError("rise and fall must be at least 1")
        self.rise = rise
        self.fall = fall
        self.state = state
        self.last_reason = UNCHECKED
        self.checked = False  # an event came: the state is no longer only assumed
        self._run = 0  # length of the current run of results counted by the rule

    def handle(self, event: Event, reason: str) -> Change | None:
        """Apply `event`; return the `Change` when the state changed, else None.

        Raises HealthStateError for an event with no rule in the current state.
        """
        rule = TRANSITIONS.get((self.state, event))
        if rule is None:
            raise HealthStateError(
                f"event {event.value} is not allowed in state {self.state.value}"
            )
        old = self.state
        if rule.counter is None:
            self._run = 0
            new = rule.reached
            detail = ""
        else:
            self._run += 1
            limit = self.rise if rule.counter == "rise" else self.fall
            detail = f" {self._run}/{limit}"
            if self._run >= limit:
                new, self._run = rule.reached, 0
            else:
                new = rule.before if rule.before is not None else old
        if new == old:
            if not self.checked:
                # The first result confirms the assumed state: say what confirmed it.
                self.checked = True
                self.last_reason = _explain(event, reason, detail)
            return None
        self.checked = True
        self.state = new
        self.last_reason = _explain(event, reason, detail)
        return Change(old, new, event, self.last_reason)

    @property
    def progress(self) -> int:
        """How many results of the current run have been counted (for status pages)."""
        return self._run


def _explain(event: Event, reason: str, detail: str) -> str:
    if event is Event.CONNECT_FAIL:
        return f"connect failed ({reason}): down at once (passive check)"
    if event is Event.DRAIN:
        return f"draining: {reason}"
    if event is Event.CHECK_FAIL:
        return f"check failed{detail}: {reason}"
    return f"check passed{detail}: {reason}"
