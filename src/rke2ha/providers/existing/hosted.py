"""`provider: existing` with `load_balancer.hosts`: the engine as a systemd service on each
host, over SSH (`rke2ha.lbhost`), in place of the engine process on this machine.

One resource per host, `load_balancer.hosts.<name>` (kind `lb_host`). Its properties are
what can be read back from the host: the engine, the config's digest and the unit's
state; the plan line of a change lists the steps `decide` chose for it. The state entry
holds `decide.Record`: what rke2ha changed there, so `down` undoes exactly that.

With two hosts each also gets keepalived, `load_balancer.hosts.<name>/keepalived` (a host
name has no `/`), depending on its engine: the resources come in spec order, host 1's
engine and keepalived before host 2's, so the first host holds the virtual IP with a
working engine before the second is touched. keepalived's config holds the VRRP password,
so its plan property says only whether the host runs rke2ha's config, never a digest.
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
from rke2ha.lbhost.files import SideFile, fingerprint
from rke2ha.lbhost.requirements import require
from rke2ha.maintenance import keep_drained_steps
from rke2ha.plan import Change, Desired, Observed, Plan
from rke2ha.providers.base import Facts, Reporter
from rke2ha.providers.existing.configs import host_files
from rke2ha.render.keepalived import render_host_keepalived
from rke2ha.secretfiles import read_secret
from rke2ha.spec import Spec
from rke2ha.ssh.target import Target, host_targets
from rke2ha.state import ResourceEntry, State, StateStore, Status

KIND = "lb_host"
PREFIX = "load_balancer.hosts."
WANTED_SERVICE = "enabled, active"
# Steps that change the host: after one of them ran, the record must be kept for `down`.
CHANGING = frozenset(
    {"install", "save_original", "replace", "enable", "start", "restart", "helper", "mkdir"}
)
VRRP_SUFFIX = "/keepalived"
SPEC_LABEL = "the spec (rke2ha up, provider existing)"


def address(name: str, engine: str = "") -> str:
    return PREFIX + name + (VRRP_SUFFIX if engine == "keepalived" else "")


def parse(key: str) -> tuple[str, bool]:
    """(host name, is the keepalived resource) of an `lb_host` address."""
    rest = key[len(PREFIX) :]
    return (rest[: -len(VRRP_SUFFIX)], True) if rest.endswith(VRRP_SUFFIX) else (rest, False)


def vrrp_password(spec: Spec) -> str:
    """The VRRP password from `load_balancer.vrrp.auth_file` (0600); errors never show it."""
    vrrp = spec.load_balancer.vrrp
    if vrrp is None:
        raise InvalidError("load_balancer.vrrp: two load balancer hosts need vrrp.auth_file")
    secret = read_secret(spec.resolve(vrrp.auth_file), what="VRRP password")
    if not secret or any(c.isspace() or c in "\"#!'" for c in secret[:8]):
        raise InvalidError(
            f"load_balancer.vrrp.auth_file {vrrp.auth_file}: the password must be 1-8 "
            "characters without spaces, quotes, # or ! (keepalived reads the first 8)"
        )
    return secret


class HostedEngine:
    def __init__(self, spec: Spec, state: State, store: StateStore) -> None:
        require(spec)
        self.spec = spec
        self.state = state
        self.store = store
        self.engine: Engine = ENGINES[spec.load_balancer.engine]
        self.targets: dict[str, Target] = {t.node: t for t in host_targets(spec)}
        self.pair = len(self.targets) == 2
        self.keepalived: Engine = ENGINES["keepalived"]
        self.facts: dict[str, HostFacts] = {}  # by resource address
        self._text: str | None = None
        self._files: tuple[SideFile, ...] = ()
        self._vrrp_texts: dict[str, str] = {}

    @property
    def text(self) -> str:
        if self._text is None:
            self._text, self._files = host_files(self.spec, self.state.drained)
        return self._text

    def _files_for(self, key: str) -> tuple[SideFile, ...]:
        """The engine's side files (a layer 7 certificate, the health token); keepalived
        has none."""
        if parse(key)[1]:
            return ()
        _ = self.text
        return self._files

    def _paths(self, key: str) -> tuple[str, ...]:
        """Side files to read back: the spec's and those the state says rke2ha wrote."""
        record = self._record(key)
        wanted = [f.path for f in self._files_for(key)]
        return tuple(dict.fromkeys([*wanted, *(record.file_paths if record else ())]))

    def _engine(self, key: str) -> Engine:
        return self.keepalived if parse(key)[1] else self.engine

    def _text_for(self, key: str) -> str:
        name, vrrp = parse(key)
        if not vrrp:
            return self.text
        if not self._vrrp_texts:
            secret = vrrp_password(self.spec)
            for index, host in enumerate(self.spec.load_balancer.hosts):
                self._vrrp_texts[host.name] = render_host_keepalived(
                    self.spec, SPEC_LABEL, index, secret
                )
        return self._vrrp_texts[name]

    def addresses(self) -> list[str]:
        """Spec order, each host's engine before its keepalived (`up` applies them so)."""
        engines = [self.engine.name, *(["keepalived"] if self.pair else [])]
        return [address(name, engine) for name in self.targets for engine in engines]

    def _record(self, key: str) -> Record | None:
        entry = self.state.resources.get(key)
        return Record.from_attrs(entry.attrs) if entry is not None else None

    def describe(self, facts: Facts) -> None:
        """Each host's facts over SSH; a host in the state is observed as it is now."""
        wanted = self.addresses()
        # keepalived left from a two-host spec on a host still listed: observed, so the
        # plan removes it (with the record's engine) rather than forgetting it there.
        leftover = [
            key
            for key, entry in self.state.resources.items()
            if entry.kind == KIND and key not in wanted and parse(key)[0] in self.targets
        ]
        for key in wanted + leftover:
            name = parse(key)[0]
            target = self.targets[name]
            found = remote.read_facts(target, self._engine(key), self._paths(key))
            self.facts[key] = found
            if key not in self.state.resources:
                continue
            # keepalived after its host's engine, so `down` stops it first there: the
            # address leaves a host before the engine behind it does.
            after = (address(name),) if parse(key)[1] else ()
            facts.observed[key] = Observed(
                key,
                KIND,
                f"{name} {target.endpoint.host}",
                self._properties(key, found),
                depends_on=after,
            )
        for key, entry in self.state.resources.items():
            if entry.kind == KIND and key not in facts.observed and key not in self.facts:
                facts.notes.append(
                    f"{key} is in the state but no longer in load_balancer.hosts; remove it "
                    "with `down` using the spec that made it"
                )

    def _properties(self, key: str, found: HostFacts) -> dict[str, str]:
        engine = self._engine(key)
        if engine.mode == "0600":  # holds a secret: no digest of it in the plan
            record = self._record(key)
            if key in self.addresses() or record is None:
                ours = found.config_sha == sha256(self._text_for(key))
            else:  # a leftover the spec no longer asks for: is it still what rke2ha wrote?
                ours = found.config_sha == record.config_sha
            config = "rke2ha's" if ours else ("none" if found.config_sha is None else "other")
        else:
            config = (found.config_sha or "none")[:16]
        props = {"engine": engine.name, "config": config, "service": found.service}
        record = self._record(key)
        paths = {f.path for f in self._files_for(key)} | set(record.file_paths if record else ())
        if paths:  # secret files: only their fingerprint, never their text or digests
            props["files"] = fingerprint({p: found.files.sha(p) for p in paths})
        return props

    def desired(self) -> list[Desired]:
        wanted: list[Desired] = []
        for key in self.addresses():
            engine = self._engine(key)
            config = "rke2ha's" if engine.mode == "0600" else sha256(self._text_for(key))[:16]
            props = {"engine": engine.name, "config": config, "service": WANTED_SERVICE}
            files = self._files_for(key)
            record = self._record(key)
            if files or (record is not None and record.files):
                # "none" when the spec no longer asks for files rke2ha put there: a change,
                # so `up` removes them.
                props["files"] = fingerprint({f.path: f.sha for f in files})
            after = (address(parse(key)[0]),) if parse(key)[1] else ()
            wanted.append(Desired(key, KIND, props, depends_on=after))
        return wanted

    def explain(self, plan: Plan) -> None:
        """Each host change's line names the steps it will take, in order."""
        for index, change in enumerate(plan.changes):
            key = change.address
            if change.kind != KIND or key not in self.facts:
                continue
            name = parse(key)[0]
            found, record, engine = self.facts[key], self._record(key), self._engine(key)
            if change.action == "delete":
                if record is None:
                    continue
                steps, _ = down_steps(engine, found, record)
            else:
                text = self._text_for(key)
                steps, _ = up_steps(engine, found, text, record, self._files_for(key))
                steps = keep_drained_steps(
                    engine.name, steps, text, self.state.drained, engine.unit
                )
            what = "; ".join(s.what for s in steps if s.kind != "verify") or "nothing"
            plan.changes[index] = replace(change, reason=f"on {name}: {what}")

    def apply(self, change: Change, reporter: Reporter) -> None:
        key = change.address
        name = parse(key)[0]
        target = self.targets[name]
        previous = self._record(key)
        engine, text, files = self._engine(key), self._text_for(key), self._files_for(key)
        chosen: dict[str, Record] = {}

        def plan(found: HostFacts) -> list[Step]:
            steps, record = up_steps(engine, found, text, previous, files)
            steps = keep_drained_steps(engine.name, steps, text, self.state.drained, engine.unit)
            chosen["record"] = record
            if previous is None and any(s.kind in CHANGING for s in steps):
                # Written before the host changes, so an interrupted run leaves `down`
                # the record of what it may have done.
                self._save(key, target, record, "pending")
            return steps

        try:
            remote.run(target, engine, plan, reporter.note, self._paths(key))
        except remote.StepFailed as failed:
            if previous is None and not any(s.kind in CHANGING for s in failed.done):
                self._forget(key)  # nothing was changed there
            raise
        self._save(key, target, chosen["record"], "created")

    def destroy(self, change: Change, reporter: Reporter) -> None:
        key = change.address
        name = parse(key)[0]
        record = self._record(key)
        engine = ENGINES[record.engine] if record is not None else self._engine(key)
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
            steps, said = down_steps(engine, found, record)
            notes.extend(said)
            return steps

        remote.run(target, engine, plan, reporter.note, record.file_paths)
        for note in notes:
            reporter.note(f"{name}: {note}")
        self._forget(key)

    def _save(self, key: str, target: Target, record: Record, status: Status) -> None:
        attrs = {**record.attrs(), "host": target.endpoint.host}
        self.state.resources[key] = ResourceEntry(
            KIND, f"{parse(key)[0]} {target.endpoint.host}", status, attrs
        )
        self.store.save(self.state)

    def _forget(self, key: str) -> None:
        self.state.resources.pop(key, None)
        self.store.save(self.state)
