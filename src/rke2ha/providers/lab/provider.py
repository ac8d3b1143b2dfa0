"""The lab provider: describe -> plan -> apply, and destroy, for local lab processes.

Facts (`describe`) are the state file's process records, each verified against the
running system: a pid counts only while it is alive *and* runs the recorded command line
(`processes.inspect`), so the state of a crashed lab or of a rebooted machine shows as
stale (`running: false`) instead of pointing at someone else's process. The lab CA and
certificates are read from their files.

The plan (`rke2ha.plan.diff`) then says what to do: `+` start a missing process, `-/+`
restart a stale one or one whose ports, spec file or spec content changed, `~` bring a
frozen or joining node back to ready (SIGCONT, SIGUSR2) without restarting it, `-/+` the
PKI when a certificate is missing, expired or names the wrong hosts (the nodes follow).
`up` on a running, healthy lab plans nothing: it is idempotent.

`apply` starts every process first and then waits for each (they come up in parallel),
recording each pid in the state file the moment it exists, so a crash of `up` itself
leaves nothing untracked; an orphan with our exact command line is stopped before its
replacement starts. `destroy` stops every process (SIGCONT, SIGTERM, SIGKILL after a
bound) and drops the records; the CA stays, so a `ca.crt` a user copied keeps working.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rke2ha.errors import InvalidError, UsageError
from rke2ha.invocation import shown_path
from rke2ha.lab.ca import LabCA
from rke2ha.lab.material import (
    RENEW_BEFORE,
    LabPki,
    _leaf_is_current,
    ensure_lab_material,
    ingress_names,
    node_names,
)
from rke2ha.plan import Change, Desired, Observed, Plan, destroy_plan, diff
from rke2ha.providers.base import Facts, Outcome, ProviderOptions, Reporter
from rke2ha.providers.lab import processes
from rke2ha.providers.lab.ports import busy_message, busy_ports
from rke2ha.providers.lab.readiness import wait_healthy, wait_process
from rke2ha.providers.lab.records import (
    PKI_ADDRESS,
    ProcessRecord,
    load_state,
    process_records,
    save_state,
)
from rke2ha.providers.lab.topology import LabProcess, LabTopology, build_topology, command_line
from rke2ha.render.ingress import INGRESS_CONFIG, ingress_files
from rke2ha.spec import Spec

# A changed spec (its digest) restarts the lab's processes.
from rke2ha.specdiff import field_changes, spec_digest, spec_fields, spec_record
from rke2ha.state import State

KIND_RANK = {"lab-pki": 0, "node-emulator": 1, "load-balancer": 2, "dns-server": 3}
PROCESS_KEYS = frozenset({"host", "ports", "spec_file", "spec_digest", "running"})


def pki_is_current(spec: Spec, pki: LabPki) -> bool:
    """The CA and every leaf exist, are signed by the CA, valid for a while, right names."""
    if not (pki.ca_cert.is_file() and pki.ca_key.is_file()):
        return False
    try:
        ca = LabCA.load(pki.ca_cert, pki.ca_key)
    except Exception:
        return False
    if not ca.is_valid(datetime.now(UTC) + RENEW_BEFORE):
        return False
    leaves = [(pki.ingress_cert, pki.ingress_key, ingress_names(spec))]
    leaves += [
        (pki.node_cert(n.name), pki.node_key(n.name), node_names(spec, n)) for n in spec.nodes
    ]
    return all(_leaf_is_current(ca, cert, key, names) for cert, key, names in leaves)


@dataclass
class Started:
    """A process `apply` has spawned and still has to wait for."""

    change: Change
    proc: LabProcess
    record: ProcessRecord
    log_offset: int


class LabProvider:
    """`provider: lab`. `spec_file` is needed to start processes (they read it themselves)."""

    name = "lab"

    def __init__(
        self,
        spec: Spec,
        options: ProviderOptions | None = None,
        *,
        spec_file: Path | None = None,
        port_offset: int | None = None,
    ) -> None:
        self.spec = spec
        self.options = options or ProviderOptions()
        self.spec_file = spec_file.resolve() if spec_file is not None else None
        self._explicit_offset = port_offset
        self._topology: LabTopology | None = None
        self.state: State | None = None
        # Seconds each process took from spawn to ready, for the closing report.
        self.timings: dict[str, float] = {}
        self.healthy: bool | None = None  # set by `wait_ready`
        # Addresses of the processes `apply` spawned (a failed `up` stops the lab again).
        self.started: list[str] = []

    # ---- facts -------------------------------------------------------------------------------

    @property
    def topology(self) -> LabTopology:
        if self._topology is None:
            self._topology = build_topology(self.spec, self._offset())
        return self._topology

    def _offset(self) -> int | None:
        """The explicit offset, else the one a running lab uses (so `down` finds it)."""
        if self._explicit_offset is not None:
            return self._explicit_offset
        state = self.state if self.state is not None else load_state(self.spec)
        for record in process_records(state).values():
            if record.inspect().ours:
                return record.offset
        return None

    def describe(self) -> Facts:
        self.state = load_state(self.spec)
        observed: dict[str, Observed] = {}
        notes: list[str] = []
        for address, record in process_records(self.state).items():
            info = record.inspect()
            if info.liveness is processes.Liveness.GONE:
                notes.append(
                    f"{address}: pid {record.pid} is gone (crashed, killed or rebooted); "
                    "stale state, it is started again"
                )
            elif info.liveness is processes.Liveness.FOREIGN:
                notes.append(
                    f"{address}: pid {record.pid} now runs another program (stale state "
                    "from a crash or reboot); that process is left alone"
                )
            observed[address] = Observed(
                address, record.kind, str(record.pid), self._properties(record, info)
            )
        pki = LabPki(self.topology.pki_dir)
        if pki.ca_cert.exists():
            valid = pki_is_current(self.spec, pki)
            observed[PKI_ADDRESS] = Observed(
                PKI_ADDRESS, "lab-pki", str(pki.directory), {"current": valid}
            )
        return Facts(observed, notes)

    def _properties(self, record: ProcessRecord, info: processes.ProcessInfo) -> dict[str, Any]:
        properties: dict[str, Any] = {
            "running": info.ours,
            "spec_file": record.spec_file,
            "spec_digest": self._recorded_digest(record.address),
        }
        entry = self.state.resources[record.address] if self.state is not None else None
        if entry is not None:
            properties["host"] = entry.attrs.get("host")
            properties["ports"] = entry.attrs.get("ports")
        if record.kind == "node-emulator" and info.ours:
            frozen = info.liveness is processes.Liveness.STOPPED
            properties["node_state"] = "frozen" if frozen else record.node_state
        return properties

    def _recorded_digest(self, address: str) -> str | None:
        assert self.state is not None
        entry = self.state.resources.get(address)
        return None if entry is None else entry.attrs.get("spec_digest")

    # ---- plan --------------------------------------------------------------------------------

    def desired(self) -> list[Desired]:
        topology = self.topology
        digest = spec_digest(self.spec)
        resources = [
            Desired(PKI_ADDRESS, "lab-pki", {"current": True}, replace_on=frozenset({"current"}))
        ]
        node_addresses = tuple(p.address for p in topology.nodes)
        for proc in topology.processes:
            properties: dict[str, Any] = {
                "host": proc.host,
                "ports": list(proc.tcp_ports),
                "running": True,
                "spec_digest": digest,
            }
            if self.spec_file is not None:
                properties["spec_file"] = str(self.spec_file)
            depends: tuple[str, ...] = (PKI_ADDRESS,)
            rebind: tuple[str, ...] = (PKI_ADDRESS,)
            if proc.is_node:
                properties["node_state"] = "ready"
            elif proc.kind == "load-balancer":
                depends = node_addresses
                rebind = (PKI_ADDRESS,) if topology.layer == 7 else ()
            else:
                depends, rebind = (topology.lb.address,), ()
            resources.append(
                Desired(proc.address, proc.kind, properties, depends, PROCESS_KEYS, rebind)
            )
        return resources

    def plan(self, facts: Facts) -> Plan:
        the_plan = diff(self.desired(), facts.observed, kind_rank=KIND_RANK, notes=facts.notes)
        recorded = self.state.spec if self.state is not None else None
        if the_plan.has_changes and recorded is not None:
            # What the digests in the process diffs stand for: the fields that changed.
            the_plan.spec_changes = field_changes(
                recorded.get("fields") or {}, spec_fields(self.spec)
            )
            the_plan.spec_from = recorded.get("file")
        return the_plan

    def plan_destroy(self, facts: Facts) -> Plan:
        processes_only = {a: o for a, o in facts.observed.items() if a != PKI_ADDRESS}
        the_plan = destroy_plan(processes_only, kind_rank=KIND_RANK)
        the_plan.notes.extend(facts.notes)
        return the_plan

    # ---- apply -------------------------------------------------------------------------------

    def apply(self, plan: Plan, facts: Facts, reporter: Reporter) -> Outcome:
        if self.spec_file is None:
            raise UsageError(
                "the lab needs the spec file to start its processes; run `rke2ha up -f FILE`"
            )
        state = self.state if self.state is not None else load_state(self.spec)
        self.state = state
        records = process_records(state)
        self._refuse_taken_ports(plan, records)
        started: list[Started] = []
        done: list[Change] = []
        for change in plan.changes:
            if change.address == PKI_ADDRESS:
                with reporter.step(change):
                    ensure_lab_material(self.spec, self.topology.pki_dir)
                done.append(change)
                continue
            record = records.get(change.address)
            if change.action == "update" and record is not None and self._signal_only(change):
                with reporter.step(change):
                    self._make_ready(state, record)
                done.append(change)
                continue
            if change.action == "delete":
                with reporter.step(change):
                    self._forget(state, record)
                done.append(change)
                continue
            self._forget(state, record)  # a replaced process must free its ports first
            started.append(self._start(state, change))
        for item in started:
            with reporter.step(item.change):
                self.timings[item.proc.name] = wait_process(
                    self.topology, item.proc, item.log_offset, item.record.inspect
                )
            done.append(item.change)
        state.spec = spec_record(self.spec, self.spec_file)
        save_state(self.spec, state)
        return Outcome(done, self.next_steps())

    def _refuse_taken_ports(self, plan: Plan, records: dict[str, ProcessRecord]) -> None:
        """InvalidError, before anything starts, when another program holds a lab port.

        A process of ours that is about to be replaced holds its own ports: not asked.
        """
        assert self.spec_file is not None
        starting = [
            self.topology.process(c.address)
            for c in plan.changes
            if c.address != PKI_ADDRESS
            and c.action != "delete"
            and not (c.action == "update" and self._signal_only(c))
            and not (c.address in records and records[c.address].inspect().ours)
        ]
        busy = busy_ports(self.topology, starting)
        if busy:
            raise InvalidError(busy_message(self.topology, busy, shown_path(self.spec_file)))

    def _forget(self, state: State, record: ProcessRecord | None) -> None:
        """Stop the recorded process (if it is still ours) and drop its entry."""
        if record is None:
            return
        processes.stop(record.pid, record.argv, record.started)
        state.resources.pop(record.address, None)
        save_state(self.spec, state)

    @staticmethod
    def _signal_only(change: Change) -> bool:
        return bool(change.diffs) and all(d.key == "node_state" for d in change.diffs)

    def _make_ready(self, state: State, record: ProcessRecord) -> None:
        """Thaw a frozen node and finish a joining one, without restarting it."""
        processes.send(record.pid, signal.SIGCONT)
        if record.node_state == "joining":
            processes.send(record.pid, signal.SIGUSR2)
        entry = state.resources[record.address]
        entry.attrs["node_state"] = "ready"
        save_state(self.spec, state)

    def _start(self, state: State, change: Change) -> Started:
        assert self.spec_file is not None
        topology = self.topology
        proc = topology.process(change.address)
        record, log_offset = start_process(self.spec, topology, proc, self.spec_file, state)
        self.started.append(proc.address)
        return Started(change, proc, record, log_offset)

    def next_steps(self) -> list[str]:
        topology = self.topology
        return [
            f"Rancher: {topology.rancher_url}  (CA: {topology.ca_file})",
            *topology.commands(),
        ]

    # ---- wait and destroy -----------------------------------------------------------------

    def wait_ready(self, timeout: float, reporter: Reporter) -> list[str]:
        healthy, seconds, detail = wait_healthy(self.topology, timeout)
        self.timings["healthy"] = seconds
        self.healthy = healthy
        if not healthy:
            return [f"not healthy after {seconds:.1f}s: {detail}"]
        return [f"healthy after {seconds:.2f}s: {detail}"]

    def destroy(self, plan: Plan, facts: Facts, reporter: Reporter) -> Outcome:
        state = self.state if self.state is not None else load_state(self.spec)
        records = process_records(state)
        doomed = [records[c.address] for c in plan.changes if c.address in records]
        processes.stop_all([(r.pid, r.argv, r.started) for r in doomed])
        done: list[Change] = []
        for change in plan.changes:
            with reporter.step(change):
                state.resources.pop(change.address, None)
            done.append(change)
        save_state(self.spec, state)
        return Outcome(done)


def write_ingress_config(spec: Spec, spec_file: Path, path: Path) -> None:
    """Render the ingress HelmChartConfig for the nodes to read (what `render` writes)."""
    files, skipped = ingress_files(spec, spec_file.name)
    if INGRESS_CONFIG not in files:
        raise UsageError(f"the lab cannot render {INGRESS_CONFIG}: {skipped.get(INGRESS_CONFIG)}")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(files[INGRESS_CONFIG])


def start_process(
    spec: Spec,
    topology: LabTopology,
    proc: LabProcess,
    spec_file: Path,
    state: State,
    *,
    joining: bool = False,
) -> tuple[ProcessRecord, int]:
    """Spawn `proc` detached and record it in `state` (saved at once).

    Returns the record and where in its log this run's output begins.
    """
    argv = command_line(topology, proc, spec_file, joining=joining)
    config = topology.ingress_config_file
    if proc.is_node and config is not None:
        write_ingress_config(spec, spec_file, config)
    for orphan in processes.find_by_cmdline(argv):
        processes.stop(orphan, argv, None)
    log = topology.log_file(proc)
    offset = log.stat().st_size if log.exists() else 0
    log.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with log.open("ab") as handle:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        handle.write(f"--- {stamp} rke2ha lab: starting {proc.name}\n".encode())
    pid, started = processes.spawn(argv, log, spec.source_dir)
    record = ProcessRecord(
        address=proc.address,
        kind=proc.kind,
        pid=pid,
        argv=argv,
        started=started,
        offset=topology.offset,
        spec_file=str(spec_file),
        node_state="joining" if joining else "ready",
    )
    entry = record.to_entry()
    entry.attrs.update(spec_digest=spec_digest(spec), host=proc.host, ports=list(proc.tcp_ports))
    state.resources[proc.address] = entry
    save_state(spec, state)
    return record, offset
