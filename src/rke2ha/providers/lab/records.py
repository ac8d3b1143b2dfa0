"""The lab's entries in the state file: which process runs what, since when.

One `ResourceEntry` per lab process (`node.node-1`, `lb.builtin`, `dns.builtin`) in the
cluster's state file (`rke2ha.state`, the same file and lock every provider uses): the pid
as its id, and in `attrs` the command line, the start time (so a reused pid is not taken
for ours), the port offset, the spec file and, for nodes, the state the lab put it in
(`ready` or `joining`; frozen is read from the process itself). The lab's CA and
certificates are the entry `pki.lab` (its id: the CA's SHA-256 fingerprint).

Fault commands change entries while a lab runs, so every read-modify-write goes through
`locked_state`, which waits briefly for the lock instead of failing at once.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rke2ha.errors import InvalidError
from rke2ha.invocation import command as program_command
from rke2ha.providers.lab.processes import ProcessInfo, inspect
from rke2ha.spec import Spec
from rke2ha.state import ResourceEntry, State, StateLock, StateStore

PKI_ADDRESS = "pki.lab"
LOCK_WAIT = 10.0


@dataclass(frozen=True)
class ProcessRecord:
    """A lab process as the state file remembers it."""

    address: str
    kind: str
    pid: int
    argv: tuple[str, ...]
    started: int | None
    offset: int
    spec_file: str
    node_state: str = "ready"  # nodes: ready | joining (as the lab last set it)

    def inspect(self) -> ProcessInfo:
        return inspect(self.pid, self.argv, self.started)

    def to_entry(self) -> ResourceEntry:
        attrs: dict[str, Any] = {
            "argv": list(self.argv),
            "started": self.started,
            "offset": self.offset,
            "spec_file": self.spec_file,
        }
        if self.kind == "node-emulator":
            attrs["node_state"] = self.node_state
        return ResourceEntry(self.kind, str(self.pid), "created", attrs)

    @classmethod
    def from_entry(cls, address: str, entry: ResourceEntry) -> ProcessRecord | None:
        """The record, or None for an entry that is not a lab process (or is unreadable)."""
        attrs = entry.attrs
        try:
            if entry.id is None or "argv" not in attrs:
                return None
            started = attrs.get("started")
            return cls(
                address=address,
                kind=entry.kind,
                pid=int(entry.id),
                argv=tuple(str(a) for a in attrs["argv"]),
                started=None if started is None else int(started),
                offset=int(attrs.get("offset", 0)),
                spec_file=str(attrs.get("spec_file", "")),
                node_state=str(attrs.get("node_state", "ready")),
            )
        except (TypeError, ValueError):
            return None


def store(spec: Spec) -> StateStore:
    return StateStore(spec.state_dir, spec.name)


def load_state(spec: Spec) -> State:
    state = store(spec).load_or_new("lab")
    if state.provider != "lab" and state.resources:
        raise InvalidError(
            f"{store(spec).path}: this state belongs to provider {state.provider}, "
            "not lab; use another spec name or state folder"
        )
    state.provider = "lab"
    return state


def process_records(state: State) -> dict[str, ProcessRecord]:
    records: dict[str, ProcessRecord] = {}
    for address, entry in state.resources.items():
        record = ProcessRecord.from_entry(address, entry)
        if record is not None:
            records[address] = record
    return records


def running_records(spec: Spec) -> list[ProcessRecord]:
    """The lab processes of the spec's state that still run (a frozen one counts: it holds
    its ports). Empty when the lab is not up: nothing recorded, or everything gone."""
    records = process_records(load_state(spec))
    return [record for record in records.values() if record.inspect().ours]


def foreign_spec_file(spec: Spec, spec_file: Path) -> str | None:
    """The spec file a running lab in this spec's state folder was started from, when that
    is another file than `spec_file`: two specs with the same name and folder (lab.yaml
    and lab-l7.yaml) share one state, and one must not take the other's lab for its own."""
    mine = str(spec_file.resolve())
    for record in running_records(spec):
        if record.spec_file and record.spec_file != mine:
            return record.spec_file
    return None


def foreign_lab_message(spec: Spec, spec_file: Path, other: str, command: str = "up") -> str:
    """Why `command` (up, down, status, check) refuses another spec's lab, and the two ways
    out: that spec's own `down`, or this one's with `--replace`."""
    started = (
        f"the lab {spec.name!r} running from {spec.state_dir} was started from {other}, "
        f"not from {spec_file}"
    )
    theirs = program_command("down", "-f", Path(other))
    if command == "down":
        ours = program_command("down", "-f", spec_file, "--replace")
        return f"{started}; stop it with its own spec (`{theirs}`), or stop it anyway with `{ours}`"
    ours = program_command("up", "-f", spec_file, "--replace")
    return f"{started}; stop it first (`{theirs}`), or replace it with `{ours}`"


@contextlib.contextmanager
def locked_state(spec: Spec, operation: str) -> Iterator[State]:
    """Hold the cluster's state lock (waiting up to `LOCK_WAIT`), yield the state, save it."""
    lock = StateLock(spec.state_dir, spec.name)
    deadline = time.monotonic() + LOCK_WAIT
    with contextlib.ExitStack() as stack:
        while True:
            try:
                stack.enter_context(lock.acquire(operation))
                break
            except InvalidError:
                # Another lab command holds it for a moment; `up` or `down` may hold it
                # for seconds. Anything longer is reported with the holder's name.
                if lock.holder() is None or time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)
        state = load_state(spec)
        yield state
        save_state(spec, state)


def save_state(spec: Spec, state: State) -> None:
    """Save `state`, or remove the file when the lab has nothing left in it."""
    if state.resources:
        store(spec).save(state)
    else:
        store(spec).delete()
