"""`provider: existing` without `load_balancer.hosts`, where systemd runs and rke2ha is
root (`placement.py`): the engine as an enabled systemd unit on this machine.

One resource, `load_balancer.unit` (kind `lb_unit`), read back from the machine as
`hosted.py` reads a host: the engine, the config's digest and the unit's state. Its plan
line names the steps `localunit` chose; the state entry holds `decide.Record`, what
rke2ha changed here, so `down` stops, disables and removes exactly that. The steps run
through the local adapter (`lbhost.local`), the same steps the SSH adapter runs on a host.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from rke2ha.lbhost import local
from rke2ha.lbhost.decide import ENGINES, Engine, HostFacts, Record, Step, sha256
from rke2ha.lbhost.remote import StepFailed
from rke2ha.maintenance import keep_drained_steps
from rke2ha.plan import Change, Desired, Observed, Plan
from rke2ha.providers.base import Facts, Reporter
from rke2ha.providers.existing.builtin import builtin_version
from rke2ha.providers.existing.configs import engine_config, host_config_text
from rke2ha.providers.existing.hosted import CHANGING
from rke2ha.providers.existing.localunit import (
    UNIT_DIR,
    builtin_engine,
    builtin_unit_text,
    check_spec_step,
    engine_for,
    local_down_steps,
    local_up_steps,
    served_spec_file,
)
from rke2ha.providers.existing.runner import EngineRunner
from rke2ha.spec import Spec
from rke2ha.state import ResourceEntry, State, StateStore, Status

ADDRESS = "load_balancer.unit"
KIND = "lb_unit"
WANTED_SERVICE = "enabled, active"


def this_python() -> str:
    """The interpreter running rke2ha now (a venv's own, not resolved past its link), so
    the unit runs this rke2ha."""
    return sys.executable


class UnitEngine:
    def __init__(self, spec: Spec, state: State, store: StateStore) -> None:
        self.spec = spec
        self.state = state
        self.store = store
        self.python = this_python()
        self.engine: Engine = engine_for(spec, self.python)
        self.facts: HostFacts | None = None  # for the spec's engine
        self.recorded_facts: HostFacts | None = None  # for the state's (down undoes that)
        self._text: str | None = None

    @property
    def spec_file(self) -> Path:
        """What the built-in unit serves: the copy `up` keeps in the state folder, so an
        edit of the spec reaches the engine only through `up`, and a moved spec breaks
        nothing."""
        return served_spec_file(self.spec)

    def _write_served_copy(self) -> None:
        """The built-in engine's version written and checked the way the child-process
        runner does it (`runner.EngineRunner.prepare`), then made `current`."""
        runner = EngineRunner(self.spec, "builtin")
        config = engine_config(self.spec)
        paths = runner.paths
        version = paths.version_dir(config.fingerprint)
        if not (paths.current.resolve() == version.resolve() and paths.running_config.is_file()):
            runner.make_current(runner.prepare(config))
        runner.prune()

    @property
    def text(self) -> str:
        if self._text is None:
            if self.engine.name == "builtin":
                version = builtin_version(self.spec)
                self._text = builtin_unit_text(
                    self.spec, self.spec_file, self.python, version.fingerprint
                )
            else:
                self._text = host_config_text(self.spec, self.state.drained)
        return self._text

    def _check(self) -> Step | None:
        if self.engine.name != "builtin":
            return None
        return check_spec_step(self.python, self.spec_file)

    def _record(self) -> Record | None:
        entry = self.state.resources.get(ADDRESS)
        return Record.from_attrs(entry.attrs) if entry is not None else None

    def _recorded_engine(self) -> Engine:
        """The engine the state's unit is (the spec may have moved on to another)."""
        entry = self.state.resources.get(ADDRESS)
        if entry is None:
            return self.engine
        name = str(entry.attrs.get("engine"))
        if name == "builtin":
            unit = str(entry.attrs.get("unit") or self.engine.unit)
            engine = builtin_engine(self.spec, self.python)
            return replace(engine, unit=unit, config=f"{UNIT_DIR}/{unit}")
        return ENGINES[name]

    def describe(self, facts: Facts) -> None:
        """This machine's facts for the engine the state holds (else the spec's)."""
        engine = self._recorded_engine()
        found = local.read_facts(engine)
        self.recorded_facts = found
        same = engine.unit == self.engine.unit
        self.facts = found if same else local.read_facts(self.engine)
        if ADDRESS not in self.state.resources:
            return
        props = {
            "engine": engine.name,
            "config": (found.config_sha or "none")[:16],
            "service": found.service,
        }
        facts.observed[ADDRESS] = Observed(ADDRESS, KIND, engine.unit, props)

    def desired(self) -> Desired:
        props = {
            "engine": self.engine.name,
            "config": sha256(self.text)[:16],
            "service": WANTED_SERVICE,
        }
        return Desired(ADDRESS, KIND, props, replace_on=frozenset({"engine"}))

    def explain(self, plan: Plan) -> None:
        for index, change in enumerate(plan.changes):
            if change.kind != KIND or self.facts is None or self.recorded_facts is None:
                continue
            record = self._record()
            old: list[Step] = []
            if record is not None and change.action in ("delete", "replace"):
                old, _ = local_down_steps(self._recorded_engine(), self.recorded_facts, record)
            if change.action == "delete":
                steps = old
            else:
                # Another engine starts from nothing of rke2ha's: its own first `up`.
                previous = None if change.action == "replace" else record
                new, _ = local_up_steps(self.engine, self.facts, self.text, previous, self._check())
                steps = old + new
            what = "; ".join(s.what for s in steps if s.kind != "verify") or "nothing"
            plan.changes[index] = replace(change, reason=f"{self.engine.unit}: {what}")

    def apply(self, change: Change, reporter: Reporter) -> None:
        previous = self._record()
        if previous is not None and previous.engine != self.engine.name:
            self.destroy(change, reporter)  # another engine: the old unit goes first
            previous = None
        chosen: dict[str, Record] = {}

        def plan(found: HostFacts) -> list[Step]:
            steps, record = local_up_steps(self.engine, found, self.text, previous, self._check())
            steps = keep_drained_steps(
                self.engine.name, steps, self.text, self.state.drained, self.engine.unit
            )
            chosen["record"] = record
            if previous is None and any(s.kind in CHANGING for s in steps):
                # Written before the machine changes, so an interrupted run leaves `down`
                # the record of what it may have done.
                self._save(record, "pending")
            return steps

        if self.engine.name == "builtin":
            self._write_served_copy()
        try:
            local.run(self.engine, plan, reporter.note)
        except StepFailed as failed:
            if previous is None and not any(s.kind in CHANGING for s in failed.done):
                self._forget()
            raise
        self._save(chosen["record"], "created")

    def destroy(self, change: Change, reporter: Reporter) -> None:
        record = self._record()
        if record is None:
            return
        engine = self._recorded_engine()
        notes: list[str] = []

        def plan(found: HostFacts) -> list[Step]:
            steps, said = local_down_steps(engine, found, record)
            notes.extend(said)
            return steps

        local.run(engine, plan, reporter.note)
        if engine.name == "builtin":
            EngineRunner(self.spec, "builtin").remove_files()
            reporter.note(f"remove the copy the unit served ({self.spec_file})")
        for note in notes:
            reporter.note(note)
        self._forget()

    def _save(self, record: Record, status: Status) -> None:
        attrs = {**record.attrs(), "unit": self.engine.unit}
        self.state.resources[ADDRESS] = ResourceEntry(KIND, self.engine.unit, status, attrs)
        self.store.save(self.state)

    def _forget(self) -> None:
        self.state.resources.pop(ADDRESS, None)
        self.store.save(self.state)
