"""One `check` run as a library call: spec + options -> results (and a drill report).

`rke2ha check` and the lab's `up` both call `check_deployment`; the command module only
parses flags and prints. Defaults that depend on the provider live here: the lab's port
offset (real ports as root) and the lab CA as the trust anchor for `tls.certificate`.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from rke2ha.check.drill import DrillReport, DrillSettings, FaultInjector, run_drill
from rke2ha.check.lbdrill import LbDrillReport, LbDrillSettings
from rke2ha.check.result import CheckResult, all_ok
from rke2ha.check.runner import run_checks
from rke2ha.check.target import CheckOptions, CheckTarget, load_target
from rke2ha.errors import Rke2haError, UsageError
from rke2ha.spec import Spec

if TYPE_CHECKING:
    from rke2ha.check.pair_probe import PairTarget

LB_DRILL_NEEDS_PAIR = (
    "--drill --lb fails the load balancer pair: the spec needs two load_balancer.hosts "
    "sharing load_balancer.address (with load_balancer.vrrp)"
)
PAIR_PREFIXES = ("lb.pair.", "lb.host.")
# The lab provider's `fault_injector(spec, port_offset) -> FaultInjector` lives here.
LAB_FAULTS_MODULE = "rke2ha.providers.lab.faults"


@dataclass
class CheckRun:
    results: list[CheckResult]
    seconds: float
    drill: DrillReport | None = None
    drill_skipped: str | None = None  # why a requested drill did not run
    lb_drill: LbDrillReport | None = None

    @property
    def ok(self) -> bool:
        drills = [d.ok for d in (self.drill, self.lb_drill) if d is not None]
        return all_ok(self.results) and all(drills) and self.drill_skipped is None


def lab_ca_file(spec: Spec) -> Path | None:
    """The lab CA certificate, once `up` has created it."""
    if spec.provider != "lab":
        return None
    from rke2ha.lab.material import LabPki, default_pki_dir

    path = LabPki(default_pki_dir(spec)).ca_cert
    return path if path.is_file() else None


def default_port_offset(spec: Spec) -> int:
    """The offset a running lab was started with (its state file), else the lab's rule
    (real ports as root, else lab.port_offset); 0 for other providers."""
    if spec.provider != "lab":
        return 0
    from rke2ha.lab.node_setup import port_offset

    recorded = _recorded_lab_offset(spec)
    return recorded if recorded is not None else port_offset(spec)


def _recorded_lab_offset(spec: Spec) -> int | None:
    """The port offset in the lab's state, when `up` left one (read only, no lock)."""
    from rke2ha.providers.lab.records import load_state, process_records

    try:
        records = process_records(load_state(spec))
    except Rke2haError:
        return None  # no usable state: the rule decides
    offsets = {record.offset for record in records.values()}
    return offsets.pop() if len(offsets) == 1 else None


def lab_not_up(spec: Spec, spec_file: str | Path) -> str | None:
    """Why `check` of a lab spec would only fail: no process of its lab runs (None when
    some run, for another provider, or when the state cannot tell)."""
    if spec.provider != "lab":
        return None
    from rke2ha.providers.lab.records import (
        foreign_lab_message,
        foreign_spec_file,
        running_records,
    )

    try:
        other = foreign_spec_file(spec, Path(spec_file))
        if other is not None:
            return foreign_lab_message(spec, Path(spec_file), other)
        if running_records(spec):
            return None
    except Rke2haError:
        return None  # a state to repair: the probes say what answers
    return (
        f"the lab {spec.name!r} is not up: no lab process of this spec runs, so every check "
        f"would fail; start it with `rke2ha up -f {spec_file}` (or give --port-offset N to "
        "probe a lab started some other way)"
    )


def with_defaults(spec: Spec, options: CheckOptions, port_offset: int | None) -> CheckOptions:
    """Fill in what the caller left open: the port offset and, in the lab, the lab CA."""
    offset = default_port_offset(spec) if port_offset is None else port_offset
    ca = options.ca_file if options.ca_file is not None else lab_ca_file(spec)
    return replace(options, port_offset=offset, ca_file=ca)


def lab_fault_injector(spec: Spec, port_offset: int) -> FaultInjector:
    if spec.provider != "lab":
        raise UsageError(
            f"--drill kills and freezes nodes, so it runs only in the lab (provider: lab); "
            f"this spec has provider: {spec.provider}"
        )
    try:
        module = importlib.import_module(LAB_FAULTS_MODULE)
    except ImportError:
        raise UsageError(
            f"--drill needs the lab's fault injection ({LAB_FAULTS_MODULE}), which this "
            "build does not have yet"
        ) from None
    injector: FaultInjector = module.fault_injector(spec, port_offset)
    return injector


async def check_deployment_async(
    spec: Spec,
    options: CheckOptions,
    *,
    injector: FaultInjector | None = None,
    drill_node: str | None = None,
    drill_settings: DrillSettings | None = None,
    lb_drill: LbDrillSettings | None = None,
) -> CheckRun:
    """Every check; then the node drill (`injector`) or the pair's (`lb_drill`) if asked."""
    target = load_target(spec, options)
    pair = _pair(spec)
    if lb_drill is not None and pair is None:
        raise UsageError(LB_DRILL_NEEDS_PAIR)
    start = time.monotonic()
    if pair is not None:
        # The pair's hosts over SSH while the probes go through the address they share.
        from rke2ha.check.pair_probe import pair_checks

        results, from_pair = await asyncio.gather(run_checks(target), pair_checks(pair))
        results += from_pair
    else:
        results = await run_checks(target)
    seconds = time.monotonic() - start
    run = CheckRun(results, seconds)
    if lb_drill is not None and pair is not None:
        await _lb_drill(run, target, pair, lb_drill)
    elif injector is not None and not all_ok(results):
        # Failing over from a lab that is already broken measures nothing useful.
        run.drill_skipped = "not run: the lab must pass every check first"
    elif injector is not None:
        run.drill = await run_drill(target, injector, drill_node, settings=drill_settings)
    return run


def _pair(spec: Spec) -> PairTarget | None:
    """The keepalived pair of the spec's load balancer hosts (SSH code loads only then)."""
    if len(spec.load_balancer.hosts) != 2:
        return None
    from rke2ha.check.pair_probe import pair_target

    return pair_target(spec)


async def _lb_drill(
    run: CheckRun, target: CheckTarget, pair: PairTarget, settings: LbDrillSettings
) -> None:
    """The pair drill, when the pair's own checks passed (the node checks may fail: the
    drill measures the load balancers, and needs only an HTTP answer through them)."""
    from rke2ha.check.lbdrill_run import run_lb_drill

    failing = [r.id for r in run.results if r.id.startswith(PAIR_PREFIXES) and not r.ok]
    endpoint = target.lb(80)
    if failing:
        run.drill_skipped = f"not run: the pair must pass {', '.join(failing)} first"
    elif endpoint is None or target.lb_address is None:
        run.drill_skipped = "not run: the drill needs load_balancer.address and port 80"
    else:
        run.lb_drill = await run_lb_drill(
            pair, endpoint, target.ingress.path, target.lb_address, settings
        )


def check_deployment(
    spec: Spec,
    options: CheckOptions,
    *,
    injector: FaultInjector | None = None,
    drill_node: str | None = None,
    lb_drill: LbDrillSettings | None = None,
) -> CheckRun:
    return asyncio.run(
        check_deployment_async(
            spec, options, injector=injector, drill_node=drill_node, lb_drill=lb_drill
        )
    )
