"""The lab's `up` and `down` as library calls: start, wait, verify, time it; stop.

`up` = under the cluster's state lock: describe, plan, apply (the same order as
`providers.lifecycle`, which cannot be used as is because starting lab processes needs
the spec *file*: each process reads it); then, without the lock (so fault commands and
`down` work while a foreground lab runs): wait until the load balancer sees every node
healthy (bounded), run every check of `rke2ha.check` and time the whole thing from the
call to the verdict ("time to verified"). The lab only starts local processes on
loopback, so `up` does not ask for confirmation.

`down` stops every process the state file knows (and only those) and then looks again:
the result says whether any lab process or listening socket is left.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from rke2ha.check.result import CheckResult
from rke2ha.check.session import CheckRun, check_deployment, with_defaults
from rke2ha.check.target import CheckOptions
from rke2ha.errors import Rke2haError
from rke2ha.lab.material import health_token_file
from rke2ha.lab.node_setup import port_offset as default_offset
from rke2ha.plan import Change, Plan
from rke2ha.providers.base import ProviderOptions, Reporter, SilentReporter
from rke2ha.providers.lab.faults import LabFaultInjector
from rke2ha.providers.lab.provider import LabProvider
from rke2ha.providers.lab.readiness import tcp_open
from rke2ha.providers.lab.records import load_state, process_records
from rke2ha.providers.lab.topology import LabTopology
from rke2ha.spec import Spec
from rke2ha.state import StateLock

DEFAULT_WAIT = 30.0


@dataclass
class LabUp:
    plan: Plan
    topology: LabTopology
    applied: list[Change] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    ready: list[str] = field(default_factory=list)
    healthy: bool = False
    check: CheckRun | None = None
    seconds: float = 0.0  # from the call to the checks' verdict
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.healthy and self.check is not None and self.check.ok

    @property
    def results(self) -> list[CheckResult]:
        return self.check.results if self.check is not None else []


def lab_check_options(spec: Spec, topology: LabTopology, timeout: float = 2.0) -> CheckOptions:
    """Check options for the lab: its offset, its CA and its health token (readiness)."""
    token = health_token_file(spec)
    options = CheckOptions(
        token_file=token if token.is_file() else None,
        timeout=timeout,
    )
    return replace(with_defaults(spec, options, topology.offset), ca_file=topology.ca_file)


def up(
    spec: Spec,
    spec_file: Path,
    *,
    port_offset: int | None = None,
    reporter: Reporter | None = None,
    wait_timeout: float = DEFAULT_WAIT,
    force_unlock: bool = False,
    drill: bool = False,
) -> LabUp:
    """Bring the lab of `spec` up (idempotent), wait until healthy, run the checks."""
    start = time.monotonic()
    steps = reporter or SilentReporter()
    # `up` makes the lab match the spec: its offset (or the root rule), not the offset a
    # running lab happens to use; a different one restarts the processes on the new ports.
    offset = port_offset if port_offset is not None else default_offset(spec)
    provider = LabProvider(
        spec, ProviderOptions(force_unlock), spec_file=spec_file, port_offset=offset
    )
    lock = StateLock(spec.state_dir, spec.name)
    with lock.acquire("up", force_unlock=force_unlock):
        facts = provider.describe()
        the_plan = provider.plan(facts)
        result = LabUp(the_plan, provider.topology, notices=list(lock.notices))
        for note in the_plan.notes:
            steps.note(f"note: {note}")
        if the_plan.has_changes:
            try:
                result.applied = provider.apply(the_plan, facts, steps).done
            except BaseException as err:
                _stop_after_failure(provider, err)
                raise
    result.ready = provider.wait_ready(wait_timeout, steps)
    result.healthy = bool(provider.healthy)
    options = lab_check_options(spec, provider.topology)
    injector = LabFaultInjector(spec) if drill else None
    result.check = check_deployment(spec, options, injector=injector)
    result.seconds = time.monotonic() - start
    result.timings = dict(provider.timings)
    return result


def _stop_after_failure(provider: LabProvider, err: BaseException) -> None:
    """A failed `up` that started processes stops every process of the lab (those an
    earlier `up` started too): never half a lab.

    Called with the state lock held. The error's message says so (the cause stays first).
    """
    if not provider.started:
        return
    facts = provider.describe()
    the_plan = provider.plan_destroy(facts)
    provider.destroy(the_plan, facts, SilentReporter())
    if isinstance(err, Rke2haError) and err.args:
        stopped = f"stopped the lab's {len(the_plan.changes)} process(es) again"
        err.args = (f"{err.args[0]}\n{stopped}: nothing of this lab runs",)


@dataclass
class LabDown:
    plan: Plan
    stopped: list[Change] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)  # processes or sockets still there


def down(spec: Spec, *, reporter: Reporter | None = None, force_unlock: bool = False) -> LabDown:
    """Stop every lab process of `spec`; report anything that is still there."""
    provider = LabProvider(spec, ProviderOptions(force_unlock))
    lock = StateLock(spec.state_dir, spec.name)
    with lock.acquire("down", force_unlock=force_unlock):
        facts = provider.describe()
        topology = provider.topology
        the_plan = provider.plan_destroy(facts)
        result = LabDown(the_plan, notices=list(lock.notices))
        if the_plan.has_changes:
            result.stopped = provider.destroy(the_plan, facts, reporter or SilentReporter()).done
    result.leftovers = leftovers(spec, topology)
    return result


def leftovers(spec: Spec, topology: LabTopology) -> list[str]:
    """Lab processes still recorded and alive, and lab ports still accepting connections."""
    found = [
        f"{address}: pid {record.pid} still runs"
        for address, record in process_records(load_state(spec)).items()
        if record.inspect().ours
    ]
    for proc in topology.processes:
        found += [
            f"{proc.name}: {proc.host}:{port} still accepts connections"
            for port in proc.tcp_ports
            if tcp_open(proc.host, port, timeout=0.2)
        ]
    return found
