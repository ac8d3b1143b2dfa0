"""The node state machine: the transition table, freeze/thaw memory, misuse errors, exposure."""

from __future__ import annotations

import itertools

import pytest

from rke2ha.errors import InvalidError
from rke2ha.lab.node_states import (
    EXPOSURE,
    TRANSITIONS,
    Exposure,
    NodeEvent,
    NodeState,
    NodeStateError,
    NodeStateMachine,
    PortRole,
)


def machine(state: NodeState) -> NodeStateMachine:
    """A machine brought into `state` through legal events only."""
    m = NodeStateMachine("node-1")
    if state is NodeState.DOWN:
        return m
    m.handle(NodeEvent.START)
    if state is NodeState.JOINING:
        m.handle(NodeEvent.JOIN)
    elif state is NodeState.FROZEN:
        m.handle(NodeEvent.FREEZE)
    return m


@pytest.mark.parametrize(
    ("start", "event", "expected"),
    [
        (NodeState.DOWN, NodeEvent.START, NodeState.READY),
        (NodeState.DOWN, NodeEvent.START_JOINING, NodeState.JOINING),
        (NodeState.READY, NodeEvent.JOIN, NodeState.JOINING),
        (NodeState.READY, NodeEvent.JOINED, NodeState.READY),
        (NodeState.JOINING, NodeEvent.JOINED, NodeState.READY),
        (NodeState.JOINING, NodeEvent.JOIN, NodeState.JOINING),
        (NodeState.READY, NodeEvent.KILL, NodeState.DOWN),
        (NodeState.JOINING, NodeEvent.KILL, NodeState.DOWN),
        (NodeState.FROZEN, NodeEvent.KILL, NodeState.DOWN),
        (NodeState.READY, NodeEvent.FREEZE, NodeState.FROZEN),
        (NodeState.JOINING, NodeEvent.FREEZE, NodeState.FROZEN),
    ],
)
def test_legal_transitions(start: NodeState, event: NodeEvent, expected: NodeState) -> None:
    m = machine(start)
    assert m.state is start
    assert m.handle(event) is expected
    assert m.state is expected


@pytest.mark.parametrize("frozen_from", [NodeState.READY, NodeState.JOINING])
def test_thaw_returns_to_the_state_that_was_frozen(frozen_from: NodeState) -> None:
    m = machine(frozen_from)
    m.handle(NodeEvent.FREEZE)
    m.handle(NodeEvent.FREEZE)  # freezing twice keeps the memory
    assert m.handle(NodeEvent.THAW) is frozen_from


def test_kill_while_frozen_then_restart_comes_back_ready() -> None:
    m = machine(NodeState.JOINING)
    m.handle(NodeEvent.FREEZE)
    m.handle(NodeEvent.KILL)
    assert m.handle(NodeEvent.START) is NodeState.READY


def test_every_pair_outside_the_table_raises_a_named_error() -> None:
    rejected = 0
    for state, event in itertools.product(NodeState, NodeEvent):
        m = machine(state)
        if (state, event) in TRANSITIONS:
            assert m.accepts(event)
            continue
        assert not m.accepts(event)
        with pytest.raises(NodeStateError) as err:
            m.handle(event)
        assert isinstance(err.value, InvalidError)  # the CLI prints it, exit 1
        assert event.value in str(err.value) and state.value in str(err.value)
        assert m.state is state  # a rejected event changes nothing
        rejected += 1
    assert rejected > 0


def test_misuse_messages_say_what_to_do() -> None:
    with pytest.raises(NodeStateError, match=r"node-1: cannot join a node that is down; start"):
        machine(NodeState.DOWN).handle(NodeEvent.JOIN)
    with pytest.raises(NodeStateError, match=r"thaw it first"):
        machine(NodeState.FROZEN).handle(NodeEvent.JOINED)


def test_a_node_cannot_begin_frozen() -> None:
    with pytest.raises(NodeStateError):
        NodeStateMachine("node-1", NodeState.FROZEN)


def test_exposure_table_matches_design() -> None:
    ready, joining = EXPOSURE[NodeState.READY], EXPOSURE[NodeState.JOINING]
    assert all(ready.ports[role] is Exposure.SERVE for role in PortRole)
    assert ready.apiserver_ready
    # Joining: the supervisor and the apiserver answer, the apiserver is not ready, the
    # ingress (a DaemonSet pod scheduled after the join) does not listen.
    assert joining.ports[PortRole.SUPERVISOR] is Exposure.SERVE
    assert joining.ports[PortRole.APISERVER] is Exposure.SERVE
    assert not joining.apiserver_ready
    assert not joining.listens(PortRole.INGRESS_HTTP)
    assert not joining.listens(PortRole.INGRESS_HTTPS)
    frozen, down = EXPOSURE[NodeState.FROZEN], EXPOSURE[NodeState.DOWN]
    assert all(frozen.ports[role] is Exposure.HANG and frozen.listens(role) for role in PortRole)
    assert all(not down.listens(role) for role in PortRole)
