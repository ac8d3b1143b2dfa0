"""The lab node state machine: which state a node emulator is in and what the network sees.

Rules of this file (after h11's `_state.py`): everything that decides a node's state lives
here, as two tables; this file does no I/O and does not know who drives it (the emulator
process reacting to its own signals, or the lab orchestration tracking a node from outside).

Theory of operation
-------------------
A node is in one of four states:

- `ready`   — a joined RKE2 server: ingress on 80/443, kube-apiserver ready on 6443,
  supervisor on 9345.
- `joining` — RKE2 is running but the node has not joined the cluster yet. The supervisor
  (9345) already listens and answers `/ping` — why `healthplan.py` checks 9345 with 6443 —
  and kube-apiserver (6443) answers but is not ready: `/readyz` is **500** with a failed
  etcd check, which is what a real kube-apiserver's healthz handler returns while a check
  fails (there is no 503 in that handler); `/livez` stays 200 and anonymous callers still
  get 401 first. The ingress ports (80/443) do not listen yet: the ingress controller is a
  DaemonSet pod that is scheduled only after the node has joined.
- `frozen`  — the process is stopped from outside (SIGSTOP). The kernel still completes
  TCP handshakes into the listen backlog, but nothing answers: every request hangs until
  the client times out. The emulator itself never observes this state (time just stops);
  the orchestration records it.
- `down`    — the process is gone: every port refuses connections.

Events move a node between states through `TRANSITIONS`; an event a state does not accept
raises `NodeStateError` instead of being silently ignored. Freezing remembers the state it
froze, and thawing returns to it (a stopped process resumes where it was). A restart is a
`kill` followed by `start`/`start_joining`.

`EXPOSURE` says, for each state, what each port does (serve / refuse / hang) and whether
kube-apiserver reports ready; the node server opens and closes listeners from it, and
checks can derive their expected results from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from rke2ha.errors import InvalidError


class NodeState(StrEnum):
    READY = "ready"
    JOINING = "joining"
    FROZEN = "frozen"
    DOWN = "down"


class NodeEvent(StrEnum):
    START = "start"  # the process is spawned and comes up joined
    START_JOINING = "start_joining"  # spawned with `--state joining`
    JOIN = "join"  # SIGUSR1: (re)start joining: not ready until `joined`
    JOINED = "joined"  # SIGUSR2: the node has joined
    FREEZE = "freeze"  # SIGSTOP from outside
    THAW = "thaw"  # SIGCONT from outside
    KILL = "kill"  # SIGKILL / SIGTERM: the process is gone


class PortRole(StrEnum):
    """The four things an RKE2 server node serves, by their real port."""

    INGRESS_HTTP = "ingress-http"
    INGRESS_HTTPS = "ingress-https"
    APISERVER = "apiserver"
    SUPERVISOR = "supervisor"


REAL_PORTS: dict[PortRole, int] = {
    PortRole.INGRESS_HTTP: 80,
    PortRole.INGRESS_HTTPS: 443,
    PortRole.APISERVER: 6443,
    PortRole.SUPERVISOR: 9345,
}


class Exposure(StrEnum):
    SERVE = "serve"  # listening and answering
    REFUSE = "refuse"  # nothing listens: connection refused
    HANG = "hang"  # the handshake completes in the kernel, nothing ever answers


@dataclass(frozen=True)
class StateView:
    """What the network sees of a node in one state."""

    ports: dict[PortRole, Exposure]
    apiserver_ready: bool

    def listens(self, role: PortRole) -> bool:
        """True when a socket must be bound for `role` (answering or hanging)."""
        return self.ports[role] is not Exposure.REFUSE


_ALL_SERVE = dict.fromkeys(PortRole, Exposure.SERVE)

EXPOSURE: dict[NodeState, StateView] = {
    NodeState.READY: StateView(_ALL_SERVE, apiserver_ready=True),
    NodeState.JOINING: StateView(
        {
            PortRole.INGRESS_HTTP: Exposure.REFUSE,
            PortRole.INGRESS_HTTPS: Exposure.REFUSE,
            PortRole.APISERVER: Exposure.SERVE,
            PortRole.SUPERVISOR: Exposure.SERVE,
        },
        apiserver_ready=False,
    ),
    NodeState.FROZEN: StateView(dict.fromkeys(PortRole, Exposure.HANG), apiserver_ready=False),
    NodeState.DOWN: StateView(dict.fromkeys(PortRole, Exposure.REFUSE), apiserver_ready=False),
}

# Thawing returns to whatever state was frozen; the machine fills that in.
RESUME = "resume"

TRANSITIONS: dict[tuple[NodeState, NodeEvent], NodeState | str] = {
    (NodeState.DOWN, NodeEvent.START): NodeState.READY,
    (NodeState.DOWN, NodeEvent.START_JOINING): NodeState.JOINING,
    (NodeState.DOWN, NodeEvent.KILL): NodeState.DOWN,
    (NodeState.READY, NodeEvent.JOIN): NodeState.JOINING,
    (NodeState.READY, NodeEvent.JOINED): NodeState.READY,
    (NodeState.READY, NodeEvent.FREEZE): NodeState.FROZEN,
    (NodeState.READY, NodeEvent.KILL): NodeState.DOWN,
    (NodeState.JOINING, NodeEvent.JOIN): NodeState.JOINING,
    (NodeState.JOINING, NodeEvent.JOINED): NodeState.READY,
    (NodeState.JOINING, NodeEvent.FREEZE): NodeState.FROZEN,
    (NodeState.JOINING, NodeEvent.KILL): NodeState.DOWN,
    (NodeState.FROZEN, NodeEvent.FREEZE): NodeState.FROZEN,
    (NodeState.FROZEN, NodeEvent.THAW): RESUME,
    # SIGKILL ends a stopped process too.
    (NodeState.FROZEN, NodeEvent.KILL): NodeState.DOWN,
}

_HINTS: dict[NodeState, str] = {
    NodeState.DOWN: "start it first (rke2ha lab restart NODE)",
    NodeState.FROZEN: "thaw it first (rke2ha lab thaw NODE)",
    NodeState.READY: "it is running and joined",
    NodeState.JOINING: "it is running and joining",
}


class NodeStateError(InvalidError):
    """An event the node's current state does not accept (e.g. `join` on a down node)."""


class NodeStateMachine:
    """One node's state; `handle(event)` moves it through `TRANSITIONS` or raises."""

    def __init__(self, name: str, state: NodeState = NodeState.DOWN) -> None:
        if state is NodeState.FROZEN:
            raise NodeStateError(f"{name}: a node cannot begin frozen; freeze it from a state")
        self.name = name
        self.state: NodeState = state
        self._frozen_from: NodeState | None = None

    @property
    def view(self) -> StateView:
        return EXPOSURE[self.state]

    def accepts(self, event: NodeEvent) -> bool:
        return (self.state, event) in TRANSITIONS

    def handle(self, event: NodeEvent) -> NodeState:
        """Apply `event`; return the new state. Raises NodeStateError when not accepted."""
        target = TRANSITIONS.get((self.state, event))
        if target is None:
            raise NodeStateError(
                f"{self.name}: cannot {event.value} a node that is {self.state.value}; "
                f"{_HINTS[self.state]}"
            )
        if target == RESUME:
            assert self._frozen_from is not None  # set on every entry into FROZEN
            new_state, self._frozen_from = self._frozen_from, None
        else:
            new_state = NodeState(target)
            if new_state is NodeState.FROZEN and self.state is not NodeState.FROZEN:
                self._frozen_from = self.state
            elif new_state is not NodeState.FROZEN:
                self._frozen_from = None
        self.state = new_state
        return new_state
