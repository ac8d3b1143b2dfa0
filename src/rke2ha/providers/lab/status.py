"""What each lab process is doing right now: for the live status of `up` and `lab status`.

Read-only and cheap enough to run every second: the state file's records, each checked
against `/proc` (running / frozen / gone / not ours), the node state the lab set, and the
load balancer's own view of every node from its admin `/status` (in rotation on which
ports). `collect` gathers, `rows` turns the result into plain table rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rke2ha.providers.lab.processes import Liveness
from rke2ha.providers.lab.readiness import lb_backends, lb_status
from rke2ha.providers.lab.records import load_state, process_records
from rke2ha.providers.lab.topology import LabProcess, LabTopology
from rke2ha.spec import Spec


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    kind: str
    host: str
    ports: str
    pid: int | None
    state: str  # running | frozen | joining | down | not started | stale
    rotation: str = ""  # nodes: the load balancer's view


@dataclass
class LabStatus:
    components: list[ComponentStatus] = field(default_factory=list)
    lb_answers: bool = False

    @property
    def all_up(self) -> bool:
        return all(c.state == "running" for c in self.components)

    @property
    def any_up(self) -> bool:
        """Some process of the lab runs (frozen or joining counts): the lab is up, maybe
        degraded. False: nothing of it runs, and its addresses would only refuse."""
        return any(c.state in ("running", "frozen", "joining") for c in self.components)

    @property
    def recorded(self) -> bool:
        """The state remembers some process (running or not), so a table says something."""
        return any(c.state != "not started" for c in self.components)

    def as_dict(self) -> dict[str, object]:
        return {
            "all_up": self.all_up,
            "up": self.any_up,
            "components": [c.__dict__ for c in self.components],
        }


_REAL_PORTS = frozenset({53, 80, 443, 6443, 9345})


def _ports(proc: LabProcess, offset: int) -> str:
    """The real ports (the table's title gives the offset); others, like admin, as they are."""
    shown = [p - offset if p - offset in _REAL_PORTS else p for p in proc.tcp_ports]
    return ",".join(str(p) for p in shown)


def collect(spec: Spec, topology: LabTopology) -> LabStatus:
    records = process_records(load_state(spec))
    document = lb_status(topology, timeout=0.5)
    view = lb_backends(topology, document) if document is not None else {}
    status = LabStatus(lb_answers=document is not None)
    for proc in topology.processes:
        record = records.get(proc.address)
        if record is None:
            state, pid = "not started", None
        else:
            pid = record.pid
            liveness = record.inspect().liveness
            state = {
                Liveness.RUNNING: "running",
                Liveness.STOPPED: "frozen",
                Liveness.GONE: "down",
                Liveness.FOREIGN: "stale",
            }[liveness]
            if state == "running" and proc.is_node and record.node_state == "joining":
                state = "joining"
        rotation = ""
        if proc.is_node:
            ports = view.get(proc.name, {})
            serving = [str(p) for p, serves in sorted(ports.items()) if serves]
            if not status.lb_answers:
                rotation = "(no /status)"
            else:
                everything = bool(ports) and len(serving) == len(ports)
                rotation = "all ports" if everything else ",".join(serving) or "none"
        status.components.append(
            ComponentStatus(
                proc.name, proc.kind, proc.host, _ports(proc, topology.offset), pid, state, rotation
            )
        )
    return status


COLUMNS = ("component", "address", "ports", "pid", "state", "rotation")


def rows(status: LabStatus) -> list[tuple[str, str, str, str, str, str]]:
    """One row per component, in `COLUMNS` order."""
    return [
        (c.name, c.host, c.ports, "-" if c.pid is None else str(c.pid), c.state, c.rotation)
        for c in status.components
    ]
