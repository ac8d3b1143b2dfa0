"""The backend health state machine (pure, no sockets)."""

from __future__ import annotations

import pytest

from rke2ha.lb.health_state import (
    TRANSITIONS,
    Event,
    HealthMachine,
    HealthStateError,
    State,
)


def test_starts_up_and_falls_after_fall_failures() -> None:
    machine = HealthMachine(rise=2, fall=3)
    assert machine.state is State.UP
    first = machine.handle(Event.CHECK_FAIL, "timeout")
    assert first is not None and first.new is State.FALLING
    assert machine.handle(Event.CHECK_FAIL, "timeout") is None  # still falling, 2/3
    change = machine.handle(Event.CHECK_FAIL, "status 503")
    assert change is not None and change.new is State.DOWN
    assert "3/3" in change.reason and "status 503" in change.reason


def test_one_success_while_falling_restores_up() -> None:
    machine = HealthMachine(rise=2, fall=2)
    machine.handle(Event.CHECK_FAIL, "x")
    change = machine.handle(Event.CHECK_OK, "200")
    assert change is not None and change.new is State.UP
    # the run restarted: one more failure only makes it fall again, not down
    again = machine.handle(Event.CHECK_FAIL, "x")
    assert again is not None and again.new is State.FALLING


def test_rise_needs_consecutive_successes() -> None:
    machine = HealthMachine(rise=3, fall=1, state=State.DOWN)
    assert machine.handle(Event.CHECK_OK, "ok").new is State.RISING  # type: ignore[union-attr]
    assert machine.handle(Event.CHECK_FAIL, "bad").new is State.DOWN  # type: ignore[union-attr]
    machine.handle(Event.CHECK_OK, "ok")
    machine.handle(Event.CHECK_OK, "ok")
    change = machine.handle(Event.CHECK_OK, "ok")
    assert change is not None and change.new is State.UP and "3/3" in change.reason


@pytest.mark.parametrize("state", [State.UP, State.FALLING, State.RISING])
def test_connect_failure_takes_down_at_once(state: State) -> None:
    machine = HealthMachine(rise=2, fall=5, state=state)
    change = machine.handle(Event.CONNECT_FAIL, "ECONNREFUSED")
    assert change is not None and change.new is State.DOWN
    assert "passive" in change.reason and "ECONNREFUSED" in change.reason


def test_draining_is_terminal_and_draining_twice_is_misuse() -> None:
    machine = HealthMachine(rise=1, fall=1)
    assert machine.handle(Event.DRAIN, "removed").new is State.DRAINING  # type: ignore[union-attr]
    assert machine.handle(Event.CHECK_OK, "late check") is None
    assert machine.state is State.DRAINING and not machine.state.serves
    with pytest.raises(HealthStateError, match=r"drain.*draining"):
        machine.handle(Event.DRAIN, "again")


def test_table_covers_every_event_in_every_live_state() -> None:
    for state in (State.UP, State.FALLING, State.DOWN, State.RISING):
        for event in Event:
            assert (state, event) in TRANSITIONS
    assert [s for s in State if s.serves] == [State.UP, State.FALLING]


def test_bad_thresholds_rejected() -> None:
    with pytest.raises(ValueError):
        HealthMachine(rise=0, fall=1)
