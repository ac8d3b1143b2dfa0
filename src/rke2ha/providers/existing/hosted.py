"""`provider: existing` with `load_balancer.hosts`: the engine as a systemd service on each
host, over SSH (`rke2ha.lbhost`), in place of the engine process on this machine.

One resource per host, `load_balancer.hosts.<name>` (kind `lb_host`). Its properties are
what can be read back from the host: the engine, the config's digest and the unit's
state; the plan line of a change lists the steps `decide` chose for it. The state entry
holds `decide.Record`: what rke2ha changed there, so `down` undoes exactly that.
"""

from __future__ import annotations

from dataclasses import replace

from rke2ha.errors import InvalidError
from rke2ha.lbhost import remote
from rke2ha.lbhost.decide import (
    ENGINES,
    Engine,
    HostFacts,
    Record,
    Step,
    down_steps,
    sha256,
    up_steps,
)
from rke2ha.lbhost.requirements import require
from rke2ha.plan import Change, Desired, Observed, Plan
from rke2ha.providers.base import Facts, Reporter
from rke2ha.providers.existing.configs import host_config_text
from rke2ha.spec import Spec
from rke2ha.ssh.target import Target, host_targets
from rke2ha.state import ResourceEntry, State, StateStore, Status

KIND = "lb_host"
PREFIX = "load_balancer.hosts."
WANTED_SERVICE = "enabled, active"
# Steps that change the host: after one of them ran, the record must be kept for `down`.
CHANGING = frozenset({"install", "save_original", "replace", "enable", "start", "restart"})


def address(name: str) -> str:
    return PREFIX + name


class HostedEngine:
    def __init__(self, spec: Spec, state: State, store: StateStore) -> None:
        require(spec)
        self.spec = spec
        self.state = state
        self.store = store
        self.engine: Engine = ENGINES[spec.load_balancer.engine]
        self.targets: dict[str, Target] = {t.node: t for t in host_targets(spec)}
        self.facts: dict[str, HostFacts] = {}
        self._text: str | None = None

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = host_config_text(self.spec)
        return self._text

    def addresses(self) -> list[str]:
        return [address(name) for name in self.targets]

    def _record(self, name: str) -> Record | None:
        entry = self.state.resources.get(address(name))
        return Record.from_attrs(entry.attrs) if entry is not None else None

    def describe(self, facts: Facts) -> None:
        """Each host's facts over SSH; a host in the state is observed as it is now."""
        for name, target in self.targets.items():
            found = remote.read_facts(target, self.engine)
            self.facts[name] = found
            if address(name) not in self.state.resources:
                continue
            facts.observed[address(name)] = Observed(
                address(name), KIND, f"{name} {target.endpoint.host}", self._properties(found)
            )
        for key, entry in self.state.resources.items():
            if (
                entry.kind == KIND
                and key not in facts.observed
                and key[len(PREFIX) :] not in self.targets
            ):
                facts.notes.append(
                    f"{key} is in the state but no longer in load_balancer.hosts; remove it "
                    "with `down` using the spec that made it"
                )

    def _properties(self, found: HostFacts) -> dict[str, str]:
        return {
            "engine": self.engine.name,
            "config": (found.config_sha or "none")[:16],
            "service": found.service,
        }

    def desired(self) -> list[Desired]:
        props = {"engine": self.engine.name, "config": sha256(self.text)[:16],
                 "service": WANTED_SERVICE}  # fmt: skip
        return [Desired(address(name), KIND, props) for name in self.targets]

    def explain(self, plan: Plan) -> None:
        """Each host change's line names the steps it will take, in order."""
        for index, change in enumerate(plan.changes):
            name = change.address[len(PREFIX) :]
            if change.kind != KIND or name not in self.facts:
                continue
            found, record = self.facts[name], self._record(name)
            if change.action == "delete":
                if record is None:
                    continue
                steps, _ = down_steps(self.engine, found, record)
            else:
                steps, _ = up_steps(self.engine, found, self.text, record)
            what = "; ".join(s.what for s in steps if s.kind != "verify") or "nothing"
            plan.changes[index] = replace(change, reason=f"on {name}: {what}")

    def apply(self, change: Change, reporter: Reporter) -> None:
        name = change.address[len(PREFIX) :]
        target = self.targets[name]
        previous = self._record(name)
        chosen: dict[str, Record] = {}

        def plan(found: HostFacts) -> list[Step]:
            steps, record = up_steps(self.engine, found, self.text, previous)
            chosen["record"] = record
            if previous is None and any(s.kind in CHANGING for s in steps):
                # Written before the host changes, so an interrupted run leaves `down`
                # the record of what it may have done.
                self._save(name, target, record, "pending")
            return steps

        try:
            remote.run(target, self.engine, plan, reporter.note)
        except remote.StepFailed as failed:
            if previous is None and not any(s.kind in CHANGING for s in failed.done):
                self._forget(name)  # nothing was changed there
            raise
        self._save(name, target, chosen["record"], "created")

    def destroy(self, change: Change, reporter: Reporter) -> None:
        name = change.address[len(PREFIX) :]
        record = self._record(name)
        target = self.targets.get(name)
        if record is None:
            return
        if target is None:
            raise InvalidError(
                f"{change.address}: the spec no longer names this host, so rke2ha cannot "
                "reach it; run `down` with the spec that made it"
            )
        notes: list[str] = []

        def plan(found: HostFacts) -> list[Step]:
            steps, said = down_steps(self.engine, found, record)
            notes.extend(said)
            return steps

        remote.run(target, self.engine, plan, reporter.note)
        for note in notes:
            reporter.note(f"{name}: {note}")
        self._forget(name)

    def _save(self, name: str, target: Target, record: Record, status: Status) -> None:
        attrs = {**record.attrs(), "host": target.endpoint.host}
        self.state.resources[address(name)] = ResourceEntry(
            KIND, f"{name} {target.endpoint.host}", status, attrs
        )
        self.store.save(self.state)

    def _forget(self, name: str) -> None:
        self.state.resources.pop(address(name), None)
        self.store.save(self.state)
