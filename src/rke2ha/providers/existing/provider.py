"""`ExistingProvider`: the provider protocol for `provider: existing`.

Two resources, applied in this order and destroyed in the reverse one:
- `load_balancer.engine` (kind `lb_engine`): the engine process rke2ha started on this
  host; compared by engine name and config fingerprint. A different fingerprint is an
  in-place update (checked, then reloaded); a different engine is a restart (the new
  config is checked before the old engine is stopped).
- `dns_record.hostname` (kind `dns_record`): the hostname's record through `dns.provider`,
  published once the load balancer answers.
With `load_balancer.hosts`, the engine resource is one `load_balancer.hosts.<name>` per
host instead (kind `lb_host`, `hosted.py`): the engine runs there as a systemd service.
Without hosts, where rke2ha runs as root and systemd is the init system (`placement.py`),
it is `load_balancer.unit` (kind `lb_unit`, `unitengine.py`): an enabled unit here.
Facts come from the state file, checked against the live system: a pid counts only while
its command line still names our config, a record only while its ownership marker is ours.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rke2ha import maintenance_run
from rke2ha.dns.manual import instructions
from rke2ha.dns.ownership import Ownership
from rke2ha.errors import InvalidError
from rke2ha.invocation import spec_command
from rke2ha.lbhost import local
from rke2ha.lbhost.decide import ENGINES
from rke2ha.plan import Change, Desired, Observed, Plan, destroy_plan, diff
from rke2ha.providers.base import Facts, Outcome, ProviderOptions, Reporter
from rke2ha.providers.existing import dnsrecord
from rke2ha.providers.existing.configs import EngineConfig, config_diffs, engine_config
from rke2ha.providers.existing.dnsrecord import HostnameRecord, RecordFacts
from rke2ha.providers.existing.health import wait_healthy
from rke2ha.providers.existing.hosted import KIND as HOST_KIND
from rke2ha.providers.existing.hosted import HostedEngine
from rke2ha.providers.existing.hosted import parse as hosted_parse
from rke2ha.providers.existing.placement import Placement, packaged_in_use, placement
from rke2ha.providers.existing.rancher_release import KIND as RANCHER_KIND
from rke2ha.providers.existing.rancher_release import RancherRelease
from rke2ha.providers.existing.runner import EngineRunner
from rke2ha.providers.existing.servers import KIND as SERVER_KIND
from rke2ha.providers.existing.servers import KUBE_KIND, Rke2Servers
from rke2ha.providers.existing.servers import KUBECONFIG as SERVERS_DONE
from rke2ha.providers.existing.unitengine import ADDRESS as UNIT_ADDRESS
from rke2ha.providers.existing.unitengine import KIND as UNIT_KIND
from rke2ha.providers.existing.unitengine import UnitEngine
from rke2ha.spec import Spec
from rke2ha.specdiff import field_changes, spec_fields, spec_record
from rke2ha.state import ResourceEntry, State, StateStore

ENGINE = "load_balancer.engine"
ENGINE_KIND = "lb_engine"
KIND_RANK = {
    ENGINE_KIND: 1,
    HOST_KIND: 1,
    UNIT_KIND: 1,
    dnsrecord.KIND: 2,
    SERVER_KIND: 3,
    KUBE_KIND: 4,
    RANCHER_KIND: 5,
}
RKE2_KINDS = (SERVER_KIND, KUBE_KIND, RANCHER_KIND)
NGINX_NOTE = (
    "nginx (open source) has no active health checks: a node leaves the pool only after "
    "failed connections; prefer haproxy or builtin where readiness matters"
)


class ExistingProvider:
    name = "existing"

    def __init__(self, spec: Spec, options: ProviderOptions) -> None:
        self.spec = spec
        self.options = options
        self.store = StateStore(spec.state_dir, spec.name)
        self._state: State | None = None
        self._record: HostnameRecord | None = None
        self._record_facts: RecordFacts | None = None
        self._config: EngineConfig | None = None
        self._stale_engine = False
        self._hosted: HostedEngine | None = None
        self._placement: Placement | None = None
        self._unit: UnitEngine | None = None
        self._servers: Rke2Servers | None = None
        self._rancher: RancherRelease | None = None

    @property
    def state(self) -> State:
        if self._state is None:
            state = self.store.load_or_new(self.name)
            if state.provider != self.name:
                raise InvalidError(
                    f"{self.store.path}: this state belongs to provider {state.provider}, not "
                    f"existing; run `rke2ha down` with the spec that made it first"
                )
            self._state = state
        return self._state

    @property
    def hosted(self) -> HostedEngine | None:
        """The engine on `load_balancer.hosts`; None when it runs on this machine."""
        if not self.spec.load_balancer.hosts:
            return None
        if self._hosted is None:
            self._hosted = HostedEngine(self.spec, self.state, self.store)
        return self._hosted

    @property
    def placement(self) -> Placement | None:
        """Without `load_balancer.hosts`: a unit here, or a child process (and why)."""
        if self.spec.load_balancer.hosts:
            return None
        if self._placement is None:
            root, booted = local.is_root(), local.systemd_booted()
            where = placement(self.spec, root=root, systemd_booted=booted)
            if where.unit:  # only then is the machine's own unit worth reading
                in_use = self._packaged_in_use()
                where = placement(self.spec, root=root, systemd_booted=booted, in_use=in_use)
            self._placement = where
        return self._placement

    def _packaged_in_use(self) -> str | None:
        """Whether the spec's packaged engine here serves the machine's own config. The
        unit the state records for this engine is rke2ha's already (`down` gives the
        machine's back)."""
        engine = ENGINES.get(self.spec.load_balancer.engine)
        recorded = self.state.resources.get(UNIT_ADDRESS)
        if engine is None or (recorded is not None and recorded.attrs.get("engine") == engine.name):
            return None
        found = local.read_facts(engine)
        ours = local.config_is_rke2ha(engine.config)
        return packaged_in_use(engine.unit, engine.config, found, ours)

    @property
    def unit(self) -> UnitEngine | None:
        """The engine as a systemd unit on this machine; None when it is not one."""
        where = self.placement
        if where is None or not where.unit:
            return None
        if self._unit is None:
            self._unit = UnitEngine(self.spec, self.state, self.store)
        return self._unit

    @property
    def servers(self) -> Rke2Servers | None:
        """RKE2 on the nodes (`rke2.install`); None when rke2ha does not install it."""
        if self.spec.rke2.install == "none":
            return None
        if self._servers is None:
            self._servers = Rke2Servers(
                self.spec,
                self.state,
                self.store,
                merge_kubeconfig=self.options.merge_kubeconfig,
                uninstall=self.options.uninstall_rke2,
            )
        return self._servers

    @property
    def rancher(self) -> RancherRelease | None:
        """Rancher as HelmChart manifests (`rancher.install`); None when not asked for."""
        servers = self.servers
        if servers is None or not self.spec.rancher.install:
            return None
        if self._rancher is None:
            first = servers.targets[servers.names[0]]
            self._rancher = RancherRelease(self.spec, self.state, self.store, first)
        return self._rancher

    def _engine_addresses(self) -> tuple[str, ...]:
        """What the DNS record waits for: the engine here, or every host's."""
        hosted = self.hosted
        if hosted is not None:
            return tuple(hosted.addresses())
        return (UNIT_ADDRESS,) if self.unit is not None else (ENGINE,)

    @property
    def record(self) -> HostnameRecord | None:
        if self.spec.dns.provider == "builtin":
            return None
        if self._record is None:
            self._record = HostnameRecord(self.spec)
        return self._record

    @property
    def config(self) -> EngineConfig:
        if self._config is None:
            self._config = engine_config(self.spec, self.state.drained)
        return self._config

    def _listen(self) -> str:
        lb = self.spec.load_balancer
        return f"{lb.address or '*'}:{','.join(str(p) for p in lb.ports)}"

    # ---- describe -------------------------------------------------------------------------

    def describe(self) -> Facts:
        facts = Facts({})
        entry = self.state.resources.get(ENGINE)
        if entry is not None:
            self._describe_engine(entry, facts)
        if self.unit is not None:
            self.unit.describe(facts)
        elif UNIT_ADDRESS in self.state.resources:
            facts.notes.append(
                f"the state holds {UNIT_ADDRESS} (a systemd unit on this machine) but rke2ha "
                "cannot manage units here now (not root, or systemd not running); run `down` "
                "as root where it was made"
            )
        if self.hosted is not None:
            self.hosted.describe(facts)
        else:
            for key, held in self.state.resources.items():
                if held.kind == HOST_KIND:
                    facts.notes.append(
                        f"the state holds {key} but the spec has no load_balancer.hosts: "
                        "rke2ha cannot reach it to undo what it set up there; run `down` "
                        "with the spec that made it"
                    )
        # `down` takes RKE2's resources from the state file (plan_destroy): reading the
        # nodes' facts there would only let one unreachable server block the rest.
        if self.servers is not None and not self.options.for_down:
            self.servers.describe(facts)
        if self.rancher is not None and not self.options.for_down:
            self.rancher.describe(facts)
        record = self.record
        if record is None:
            facts.notes.append(
                "dns.provider is builtin: provider existing publishes nothing; serve the "
                f"zone with `{spec_command(self.spec, 'dns', 'serve')}`"
            )
        elif record.readable:
            found = record.describe()
            self._record_facts = found
            if found.properties is not None:
                facts.observed[dnsrecord.ADDRESS] = Observed(
                    dnsrecord.ADDRESS,
                    dnsrecord.KIND,
                    dnsrecord.record_name(self.spec),
                    found.properties,
                    self._engine_addresses(),
                )
        else:
            facts.notes.append(
                "dns.provider is manual: rke2ha cannot read that zone; the record counts as "
                "published once `up` printed its instructions (kept in the state file)"
            )
            saved = self.state.resources.get(dnsrecord.ADDRESS)
            if saved is not None:
                facts.observed[dnsrecord.ADDRESS] = Observed(
                    dnsrecord.ADDRESS,
                    dnsrecord.KIND,
                    str(saved.id),
                    dict(saved.attrs.get("properties") or {}),
                    self._engine_addresses(),
                )
        return facts

    def _describe_engine(self, entry: ResourceEntry, facts: Facts) -> None:
        engine = str(entry.attrs.get("engine", ""))
        recorded = entry.attrs.get("pid")
        runner = EngineRunner(self.spec, engine)
        pid = runner.running_pid(int(recorded) if isinstance(recorded, int) else None)
        if pid is None:
            self._stale_engine = True
            facts.notes.append(
                f"{runner.what} recorded in the state (pid {recorded}) is not running; "
                "`up` starts it again, `down` removes its files"
            )
            return
        if entry.status == "pending":
            facts.resumed.append(ENGINE)
        facts.observed[ENGINE] = Observed(
            ENGINE,
            ENGINE_KIND,
            f"{engine} pid {pid}",
            {k: entry.attrs.get(k) for k in ("engine", "config", "listen")},
        )

    # ---- plan -----------------------------------------------------------------------------

    def _desired(self) -> list[Desired]:
        if self.hosted is not None:
            resources = self.hosted.desired()
        elif self.unit is not None:
            resources = [self.unit.desired()]
        else:
            config = self.config
            resources = [
                Desired(
                    ENGINE,
                    ENGINE_KIND,
                    {"engine": config.engine, "config": config.short, "listen": self._listen()},
                    replace_on=frozenset({"engine"}),
                )
            ]
        if self.record is not None:
            resources.append(
                Desired(
                    dnsrecord.ADDRESS,
                    dnsrecord.KIND,
                    self.record.desired_properties(),
                    depends_on=self._engine_addresses(),
                )
            )
        if self.servers is not None:
            # Joiners register at https://<hostname>:9345: the load balancer and the record
            # come first.
            after = self._engine_addresses()
            if self.record is not None:
                after = (*after, dnsrecord.ADDRESS)
            resources += self.servers.desired(after=after)
        if self.rancher is not None:
            resources.append(self.rancher.desired(after=(SERVERS_DONE,)))
        return resources

    def plan(self, facts: Facts) -> Plan:
        found = self._record_facts
        foreign = found is not None and found.ownership not in (Ownership.FREE, Ownership.OURS)
        if self.record is not None and found is not None and foreign:
            # Someone else's record at the hostname: stop before anything is started.
            self.record.refuse_foreign(found)
        notes = list(facts.notes)
        if self.spec.load_balancer.engine == "nginx":
            notes.append(NGINX_NOTE)
        if self.placement is not None:
            notes.append(self.placement.why)
        the_plan = diff(self._desired(), facts.observed, kind_rank=KIND_RANK, notes=notes)
        self._explain(the_plan)
        if self.hosted is not None:
            self.hosted.explain(the_plan)
        if self.unit is not None:
            self.unit.explain(the_plan)
        if self.servers is not None:
            self.servers.explain(the_plan)
        return the_plan

    def _explain(self, the_plan: Plan) -> None:
        """What a changed config hash stands for: the spec fields and the config lines."""
        if not any(c.kind == ENGINE_KIND for c in the_plan.changes):
            return
        recorded = self.state.spec
        if recorded is not None:
            the_plan.spec_changes = field_changes(
                recorded.get("fields") or {}, spec_fields(self.spec)
            )
            the_plan.spec_from = recorded.get("file")
        entry = self.state.resources.get(ENGINE)
        if entry is not None and entry.attrs.get("config_file"):
            the_plan.file_diffs = config_diffs(
                Path(str(entry.attrs["config_file"])), str(entry.attrs.get("engine")), self.config
            )

    # ---- apply ----------------------------------------------------------------------------

    def apply(self, plan: Plan, facts: Facts, reporter: Reporter) -> Outcome:
        done: list[Change] = []
        steps: list[str] = []
        records: list[str] = []
        servers = self.servers
        # Refused upgrades and bad artifact sums stop the run before anything changes.
        artifacts = servers.check_before_apply(plan) if servers is not None else []
        for change in plan.changes:
            with reporter.step(change):
                if change.kind == RANCHER_KIND and self.rancher is not None:
                    self.rancher.apply(change, reporter)
                elif change.kind in RKE2_KINDS:
                    self._require_servers().apply(change, reporter, artifacts)
                elif change.kind == ENGINE_KIND and change.action == "delete":
                    self._destroy_engine(reporter)  # the engine moved to load_balancer.hosts
                elif change.kind == ENGINE_KIND:
                    self._apply_engine(change, reporter)
                elif change.kind == HOST_KIND and change.action == "delete":
                    self._require_hosted().destroy(change, reporter)
                elif change.kind == HOST_KIND:
                    self._require_hosted().apply(change, reporter)
                elif change.kind == UNIT_KIND and change.action == "delete":
                    self._require_unit().destroy(change, reporter)
                elif change.kind == UNIT_KIND:
                    self._require_unit().apply(change, reporter)
                else:
                    records += self._apply_record(change, reporter)
            done.append(change)
        lb = self.spec.load_balancer
        where = f" (on {', '.join(h.name for h in lb.hosts)})" if lb.hosts else ""
        if self.unit is not None:
            where = f" (systemd unit {self.unit.engine.unit}, enabled)"
        steps.append(
            f"{lb.engine} serves {self.spec.hostname} on {self._listen()}{where}; "
            f"verify the whole path: {spec_command(self.spec, 'check')}"
        )
        if lb.engine == "haproxy":
            on = f"on {', '.join(h.name for h in lb.hosts)}, " if lb.hosts else ""
            steps.append(f"HAProxy's stats page: http://{lb.admin}/ ({on}loopback only)")
        # Rancher answered /ping: `up` runs `check` now, so it ends with the whole path proven.
        check_after = any(c.kind == RANCHER_KIND and c.action != "delete" for c in done)
        return Outcome(done, steps, records, check_after=check_after)

    def _require_servers(self) -> Rke2Servers:
        servers = self.servers
        if servers is None:
            raise InvalidError(
                "the state holds RKE2 on the nodes but the spec has rke2.install: none; "
                "run `down --uninstall-rke2` with the spec that installed it"
            )
        return servers

    def _require_hosted(self) -> HostedEngine:
        hosted = self.hosted
        if hosted is None:
            raise InvalidError(
                "the state holds a load balancer host but the spec has no load_balancer.hosts; "
                "run `down` with the spec that made it"
            )
        return hosted

    def _require_unit(self) -> UnitEngine:
        unit = self.unit
        if unit is None:
            raise InvalidError(
                f"the state holds {UNIT_ADDRESS}, a systemd unit on this machine, but rke2ha "
                "cannot manage units here now; run `down` as root on the machine that made it"
            )
        return unit

    def reapply_engine(self, reporter: Reporter) -> list[tuple[str, bool]]:
        """`up`'s step for the load balancer engine alone, from the state as it is now (its
        drained nodes): rendered, checked by the engine's binary, put in place, reloaded,
        where the state says the engine runs: each `load_balancer.hosts` machine in turn
        (a failure stops at that host, naming it), the unit here, or the child process.
        For `lb drain|enable` with nginx. Each place, and whether its config changed."""
        state = self.state
        if ENGINE in state.resources:
            entry = state.resources[ENGINE]
            runner = EngineRunner(self.spec, str(entry.attrs.get("engine")))
            recorded = entry.attrs.get("pid")
            pid = runner.running_pid(int(recorded) if isinstance(recorded, int) else None)
            if pid is None:
                raise InvalidError(
                    f"{runner.what} recorded in {self.store.path} is not running; "
                    "`rke2ha up` starts it"
                )
            changed = entry.attrs.get("config") != self.config.short
            if changed:
                self._apply_engine(Change("update", ENGINE, ENGINE_KIND), reporter)
            return [(f"this machine, pid {pid}", changed)]
        if UNIT_ADDRESS in state.resources:
            unit = self._require_unit()
            before = state.resources[UNIT_ADDRESS].attrs.get("config_sha")
            unit.apply(Change("update", UNIT_ADDRESS, UNIT_KIND), reporter)
            after = state.resources[UNIT_ADDRESS].attrs.get("config_sha")
            return [(f"this machine, {unit.engine.unit}", before != after)]
        hosted = self.hosted
        keys = [k for k in hosted.addresses() if not hosted_parse(k)[1]] if hosted else []
        if not keys or any(k not in state.resources for k in keys):
            raise InvalidError(
                f"{self.spec.load_balancer.engine} is not running under rke2ha for this spec "
                f"(not in {self.store.path}); `rke2ha up` starts it"
            )
        assert hosted is not None
        done: list[tuple[str, bool]] = []
        for key in keys:
            before = state.resources[key].attrs.get("config_sha")
            hosted.apply(Change("update", key, HOST_KIND), reporter)
            after = state.resources[key].attrs.get("config_sha")
            done.append((hosted_parse(key)[0], before != after))
        return done

    def _save_engine(self, runner: EngineRunner, pid: int | None, status: Any) -> None:
        config = self.config
        self.state.resources[ENGINE] = ResourceEntry(
            ENGINE_KIND,
            f"{config.engine} pid {pid}" if pid is not None else None,
            status,
            {
                "engine": config.engine,
                "pid": pid,
                "pidfile": str(runner.paths.pidfile),
                "config": config.short,
                "config_file": str(runner.paths.running_config),
                "listen": self._listen(),
            },
        )
        self.state.spec = spec_record(self.spec, self.spec.source_file)
        self.store.save(self.state)

    def _apply_engine(self, change: Change, reporter: Reporter) -> None:
        runner = EngineRunner(self.spec, self.config.engine)
        # Written and checked by the engine's binary before anything running is touched.
        version = runner.prepare(self.config)
        old = self.state.resources.get(ENGINE)
        old_engine = str(old.attrs.get("engine")) if old is not None else None
        old_runner = EngineRunner(self.spec, old_engine) if old_engine else None
        old_pid = old_runner.running_pid() if old_runner is not None else None
        same_engine = old_pid is not None and old_engine == runner.engine
        reloadable = change.action == "update"
        if reloadable and same_engine and old_pid is not None:
            worker = self._haproxy_worker(runner)
            runner.make_current(version)
            runner.reload(old_pid)
            reporter.note(f"{runner.what} (pid {old_pid}) reloaded with config {self.config.short}")
            self._save_engine(runner, old_pid, "created")
            self._drain_again(runner, worker, reporter)
            runner.prune()
            return
        if old_runner is not None and old_pid is not None:
            reporter.note(f"stopping {old_runner.what} (pid {old_pid})")
            old_runner.stop(old_pid)
        if old_runner is not None and old_engine != runner.engine:
            old_runner.remove_files()
        runner.make_current(version)
        self._save_engine(runner, None, "pending")
        try:
            pid = runner.start()
        except BaseException:
            del self.state.resources[ENGINE]
            self.store.save(self.state)
            raise
        reporter.note(f"{runner.what} started (pid {pid})")
        self._save_engine(runner, pid, "created")
        self._drain_again(runner, "-", reporter)
        runner.prune()

    def _haproxy_worker(self, runner: EngineRunner) -> str:
        """The pid of the HAProxy worker answering now ("-": none, or nothing to keep)."""
        if runner.engine != "haproxy" or not self.state.drained:
            return "-"
        return maintenance_run.local_worker_pid(runner.paths.running_config.read_text())

    def _drain_again(self, runner: EngineRunner, worker: str, reporter: Reporter) -> None:
        """HAProxy forgets runtime-API states on a reload or start: drain the state's drained
        nodes again on the new worker (`rke2ha.maintenance`, why not a server-state file)."""
        if runner.engine != "haproxy" or not self.state.drained:
            return
        text = runner.paths.running_config.read_text()
        said = maintenance_run.drain_again_local(text, self.state.drained, worker)
        reporter.note(f"{', '.join(self.state.drained)}: {said}")

    def _apply_record(self, change: Change, reporter: Reporter) -> list[str]:
        """Publish or unpublish; the manual instructions (zone-file lines) to hand over."""
        record = self.record
        assert record is not None
        lines: list[str] = []
        if change.action == "delete":
            if record.readable:
                record.unpublish()
            else:
                lines = instructions(record.desired, remove=True)
            self.state.resources.pop(dnsrecord.ADDRESS, None)
        else:
            outcome = record.publish()
            lines = record.manual_lines()
            self.state.resources[dnsrecord.ADDRESS] = ResourceEntry(
                dnsrecord.KIND,
                dnsrecord.record_name(self.spec),
                "created",
                {"provider": record.provider, "properties": record.desired_properties()},
            )
            if outcome.applied and record.readable:
                reporter.note(f"{record.provider}: {outcome.plan.action} ({outcome.plan.reason})")
        self.store.save(self.state)
        return lines

    # ---- destroy --------------------------------------------------------------------------

    def plan_destroy(self, facts: Facts) -> Plan:
        # RKE2 on the nodes goes only with --uninstall-rke2, and only where rke2ha put it.
        observed = {a: o for a, o in facts.observed.items() if o.kind not in RKE2_KINDS}
        servers = self.servers
        if servers is not None:
            observed.update(servers.destroy_observed())
        entry = self.state.resources.get(ENGINE)
        if self._stale_engine and entry is not None:
            observed[ENGINE] = Observed(ENGINE, ENGINE_KIND, "not running", dict(entry.attrs))
        plan = destroy_plan(observed, kind_rank=KIND_RANK)
        plan.notes.extend(facts.notes)
        if servers is not None and self.options.uninstall_rke2:
            on = [c.address for c in plan.changes if c.kind == SERVER_KIND]
            if on:
                plan.notes.append(
                    f"--uninstall-rke2 on {', '.join(on)}: " + servers.what_uninstall_deletes()
                )
            if (merged := servers.merged_context_note()) is not None:
                plan.notes.append(merged)
        elif any(e.kind == SERVER_KIND for e in self.state.resources.values()):
            plan.notes.append(
                "RKE2 on the nodes is left alone; `down --uninstall-rke2` removes it where "
                "rke2ha installed it"
            )
        return plan

    def destroy(self, plan: Plan, facts: Facts, reporter: Reporter) -> Outcome:
        done: list[Change] = []
        records: list[str] = []
        if self.options.uninstall_rke2 and self.servers is not None:
            self.servers.check_before_destroy(plan)
        for change in plan.changes:
            with reporter.step(change):
                if change.kind in RKE2_KINDS:
                    self._require_servers().destroy(change, reporter)
                elif change.kind == ENGINE_KIND:
                    self._destroy_engine(reporter)
                elif change.kind == HOST_KIND:
                    self._require_hosted().destroy(change, reporter)
                elif change.kind == UNIT_KIND:
                    self._require_unit().destroy(change, reporter)
                else:
                    records += self._apply_record(change, reporter)
            done.append(change)
        if self.options.uninstall_rke2:
            for key, entry in list(self.state.resources.items()):
                if entry.kind == SERVER_KIND and not entry.attrs.get("installed"):
                    del self.state.resources[key]  # RKE2 rke2ha found there stays there
                elif entry.kind == RANCHER_KIND:
                    del self.state.resources[key]  # it went with the cluster
            self.store.save(self.state)
        if not self.state.resources:
            self.store.delete()
        return Outcome(done, [], records)

    def _destroy_engine(self, reporter: Reporter) -> None:
        entry = self.state.resources.get(ENGINE)
        if entry is None:
            return
        runner = EngineRunner(self.spec, str(entry.attrs.get("engine")))
        recorded = entry.attrs.get("pid")
        pid = runner.running_pid(int(recorded) if isinstance(recorded, int) else None)
        if pid is not None:
            runner.stop(pid)
            reporter.note(f"{runner.what} (pid {pid}) stopped")
        runner.remove_files()
        del self.state.resources[ENGINE]
        self.store.save(self.state)

    def addressed_spec(self) -> Spec:
        """Provider existing assigns no address: the spec already names them all."""
        return self.spec

    def wait_ready(self, timeout: float, reporter: Reporter) -> list[str]:
        if self.spec.load_balancer.hosts:
            # The stats page listens on the host's loopback; read over SSH in a later slice.
            return [
                "up --wait does not read the engine's view on load_balancer.hosts yet; "
                f"run `{spec_command(self.spec, 'check')}`"
            ]
        return wait_healthy(self.spec, timeout, reporter)
