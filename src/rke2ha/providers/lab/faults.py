"""Failures on purpose: kill, freeze, thaw, restart or (re)join one lab node.

Which fault a node accepts is decided by the emulator's own state machine
(`rke2ha.lab.node_states`): the node's state is read from the running system (process
gone -> down, stopped -> frozen, else what the lab last set) and the event is checked
against `TRANSITIONS` before any signal is sent, so `freeze` on a killed node fails with
the machine's hint instead of signalling nothing.

How each fault is made:
- kill    -> SIGKILL (a crash: nothing is closed cleanly); the record stays for `restart`;
- freeze  -> SIGSTOP (the kernel still accepts connections, nothing answers);
- thaw    -> SIGCONT;
- join    -> SIGUSR1 (9345 up, 6443 not ready, 80/443 closed); on a down node: a new
             process started with `--state joining`; `join --done` -> SIGUSR2 (ready);
- restart -> stop (SIGCONT, SIGTERM, SIGKILL after a bound), start the recorded command
             line again, wait until it listens.
Each call returns once the node shows the new state. `LabFaultInjector` adapts these to
the drill's `FaultInjector` protocol (`rke2ha.check.drill`).
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

from rke2ha.errors import InvalidError, UsageError
from rke2ha.invocation import command, spec_command
from rke2ha.lab.node_states import NodeEvent, NodeState, NodeStateMachine
from rke2ha.providers.lab import processes
from rke2ha.providers.lab.logexcerpt import log_excerpt
from rke2ha.providers.lab.provider import start_process
from rke2ha.providers.lab.readiness import wait_process
from rke2ha.providers.lab.records import ProcessRecord, locked_state, process_records
from rke2ha.providers.lab.topology import NODE_PREFIX, LabTopology, build_topology
from rke2ha.spec import Spec
from rke2ha.state import State

SIGNAL_TIMEOUT = 10.0


def node_state(record: ProcessRecord) -> NodeState:
    """The node's state as the system shows it now."""
    info = record.inspect()
    if not info.ours:
        return NodeState.DOWN
    if info.liveness is processes.Liveness.STOPPED:
        return NodeState.FROZEN
    return (
        NodeState(record.node_state)
        if record.node_state in ("ready", "joining")
        else NodeState.READY
    )


def _machine(name: str, record: ProcessRecord) -> NodeStateMachine:
    current = node_state(record)
    if current is NodeState.FROZEN:
        base = NodeState(record.node_state) if record.node_state == "joining" else NodeState.READY
        machine = NodeStateMachine(name, base)
        machine.handle(NodeEvent.FREEZE)
        return machine
    return NodeStateMachine(name, current)


def _wait_log(log: Path, offset: int, needle: str, timeout: float = SIGNAL_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with log.open("rb") as handle:
                handle.seek(offset)
                if needle.encode() in handle.read():
                    return
        except OSError:
            pass
        time.sleep(0.02)
    raise InvalidError(
        f"the node did not report {needle} within {timeout:g}s: {log_excerpt(log, offset)}"
    )


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


class LabFaults:
    """Fault commands for the running lab of `spec` (found through its state file)."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec

    def _record(self, state: State, node: str) -> tuple[ProcessRecord, LabTopology]:
        address = f"{NODE_PREFIX}{node}"
        record = process_records(state).get(address)
        if record is None:
            names = [n.name for n in self.spec.nodes]
            if node not in names:
                raise UsageError(f"no node named {node!r} in the spec (nodes: {', '.join(names)})")
            raise UsageError(
                f"the lab has no record of {node}: is it up? "
                f"({spec_command(self.spec, 'up', '--detach')})"
            )
        # The offset the node was started with: its command line (its identity) has it.
        return record, build_topology(self.spec, record.offset)

    def _event(self, record: ProcessRecord, node: str, event: NodeEvent) -> NodeState:
        """Check `event` against the node state machine (raises its NodeStateError)."""
        return _machine(node, record).handle(event)

    def kill(self, node: str) -> str:
        with locked_state(self.spec, "lab kill") as state:
            record, _ = self._record(state, node)
            self._event(record, node, NodeEvent.KILL)
            processes.kill(record.pid, record.argv, record.started)
        return f"{node}: killed (pid {record.pid}); every port refuses connections"

    def freeze(self, node: str) -> str:
        with locked_state(self.spec, "lab freeze") as state:
            record, _ = self._record(state, node)
            self._event(record, node, NodeEvent.FREEZE)
            processes.send(record.pid, signal.SIGSTOP)
            self._wait_liveness(record, processes.Liveness.STOPPED)
        return f"{node}: frozen (SIGSTOP to pid {record.pid}); connections hang"

    def thaw(self, node: str) -> str:
        with locked_state(self.spec, "lab thaw") as state:
            record, _ = self._record(state, node)
            after = self._event(record, node, NodeEvent.THAW)
            processes.send(record.pid, signal.SIGCONT)
            self._wait_liveness(record, processes.Liveness.RUNNING)
        return f"{node}: thawed (SIGCONT); {after.value} again"

    def join(self, node: str, *, done: bool = False) -> str:
        """Start joining (SIGUSR1, or a new joining process if down); `done`: joined."""
        with locked_state(self.spec, "lab join") as state:
            record, topology = self._record(state, node)
            if done:
                self._event(record, node, NodeEvent.JOINED)
                self._signal_state(state, record, topology, signal.SIGUSR2, "ready")
                return f"{node}: joined (ready)"
            if node_state(record) is NodeState.DOWN:
                self._event(record, node, NodeEvent.START_JOINING)
                self._restart(state, record, topology, joining=True)
            else:
                self._event(record, node, NodeEvent.JOIN)
                self._signal_state(state, record, topology, signal.SIGUSR1, "joining")
        return (
            f"{node}: joining (9345 answers, 6443 not ready, 80/443 closed); "
            f"finish with `rke2ha lab join {node} --done`"
        )

    def restart(self, node: str) -> str:
        with locked_state(self.spec, "lab restart") as state:
            record, topology = self._record(state, node)
            new = self._restart(state, record, topology, joining=False)
        return f"{node}: restarted (pid {new.pid}), ready"

    # ---- helpers -----------------------------------------------------------------------------

    def _signal_state(
        self,
        state: State,
        record: ProcessRecord,
        topology: LabTopology,
        sig: signal.Signals,
        new_state: str,
    ) -> None:
        proc = topology.node(record.address.removeprefix(NODE_PREFIX))
        log = topology.log_file(proc)
        offset = _size(log)
        processes.send(record.pid, sig)
        _wait_log(log, offset, f'"state": "{new_state}", "event": "state"')
        state.resources[record.address].attrs["node_state"] = new_state

    def _restart(
        self, state: State, record: ProcessRecord, topology: LabTopology, *, joining: bool
    ) -> ProcessRecord:
        processes.stop(record.pid, record.argv, record.started)
        proc = topology.node(record.address.removeprefix(NODE_PREFIX))
        spec_file = Path(record.spec_file)
        if not spec_file.is_file():
            again = command("up", "-f", "FILE")
            raise UsageError(f"{spec_file}: the lab's spec file is gone; run `{again}`")
        new, log_offset = start_process(
            self.spec, topology, proc, spec_file, state, joining=joining
        )
        wait_process(topology, proc, log_offset, new.inspect)
        return new

    @staticmethod
    def _wait_liveness(record: ProcessRecord, want: processes.Liveness) -> None:
        deadline = time.monotonic() + SIGNAL_TIMEOUT
        while record.inspect().liveness is not want:
            if time.monotonic() > deadline:
                raise InvalidError(f"pid {record.pid} did not become {want.value}")
            time.sleep(0.01)


class LabFaultInjector:
    """The drill's `FaultInjector` for the lab: each call runs in a worker thread."""

    def __init__(self, spec: Spec) -> None:
        self.faults = LabFaults(spec)

    async def kill(self, node: str) -> None:
        await asyncio.to_thread(self.faults.kill, node)

    async def freeze(self, node: str) -> None:
        await asyncio.to_thread(self.faults.freeze, node)

    async def restore(self, node: str) -> None:
        await asyncio.to_thread(self._restore, node)

    def _restore(self, node: str) -> None:
        with locked_state(self.faults.spec, "lab restore") as state:
            record = process_records(state).get(f"{NODE_PREFIX}{node}")
        if record is None:
            raise UsageError(f"the lab has no record of {node}")
        current = node_state(record)
        if current is NodeState.FROZEN:
            self.faults.thaw(node)
        if current is NodeState.DOWN:
            self.faults.restart(node)
        elif record.node_state == "joining":
            self.faults.join(node, done=True)


def fault_injector(spec: Spec, port_offset: int) -> LabFaultInjector:
    """What `rke2ha check --drill` loads (see `rke2ha.check.session.LAB_FAULTS_MODULE`).

    `port_offset` is the checker's; the nodes are restarted with the offset they were
    started with (their recorded command line), whatever the checker assumed.
    """
    del port_offset
    return LabFaultInjector(spec)
