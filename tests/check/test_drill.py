"""The failover drill against the real lab: kill, then freeze a node under a request
stream through the built-in load balancer; the node comes back afterwards."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

from rich.console import Console
from topology import OFFSET, LabProcesses, failing_ids, lab_spec, wait_for, write_spec

from rke2ha.check.drill import DrillReport, DrillSettings, run_drill
from rke2ha.check.lbstatus import rotation_probe
from rke2ha.check.report import print_drill
from rke2ha.check.session import check_deployment_async, with_defaults
from rke2ha.check.target import CheckOptions, load_target
from rke2ha.specfile import load_spec

# The test lab's health checks: interval 300ms, timeout 600ms, fall 2. The bound is the
# load balancer's target (interval x fall + timeout + 0.5 s).
DETECTION_BOUND = 0.3 * 2 + 0.6 + 0.5


def test_drill_kill_and_freeze(healthy_lab: LabProcesses) -> None:
    spec = load_spec(healthy_lab.spec_file)
    target = load_target(spec, with_defaults(spec, CheckOptions(), OFFSET))
    settings = DrillSettings(
        rate=20, phase_seconds=2.5, fault_after=0.5, request_timeout=2.0, rejoin_timeout=8
    )

    async def drill() -> DrillReport:
        probe = rotation_probe(target, 443)
        assert probe is not None and await probe("node-3") is True
        return await run_drill(target, healthy_lab, "node-3", settings=settings)

    report = asyncio.run(drill())
    out = io.StringIO()
    print_drill(report, Console(file=out, width=200, color_system=None))
    print(out.getvalue())
    kill, freeze = report.phases
    assert kill.requests == freeze.requests == 50
    # A killed node refuses connections: the load balancer retries elsewhere. Only a
    # request in flight on it at the kill (at most one at 20/s, ~10 ms each) is lost.
    assert kill.failed_after_left == 0, kill.errors
    assert kill.lost_in_flight <= 1
    assert kill.left_rotation_seen_by == "load balancer /status"
    assert kill.left_rotation_after is not None and kill.left_rotation_after < DETECTION_BOUND
    assert freeze.left_rotation_after is not None
    assert freeze.left_rotation_after < DETECTION_BOUND
    # No request that started after the frozen node left rotation failed; the ones
    # already relayed to it when it froze are reported as lost in flight.
    assert freeze.failed_after_left == 0
    assert report.ok
    assert "drill OK" in out.getvalue()
    assert kill.back_in_rotation_after is not None and freeze.back_in_rotation_after is not None
    assert set(kill.served_by) >= {"node-1", "node-2"}
    # Restored: the whole lab checks healthy again.
    results, _ = wait_for(healthy_lab.spec_file, lambda r: not failing_ids(r), within=8)
    assert not failing_ids(results)


class _MustNotBeCalled:
    async def kill(self, node: str) -> None:
        raise AssertionError("the drill ran against a failing lab")

    freeze = restore = kill


def test_drill_is_not_run_on_a_lab_that_fails_its_checks(tmp_path: Path) -> None:
    spec_file = write_spec(tmp_path / "lab.yaml", lab_spec(23000))  # nothing runs there
    spec = load_spec(spec_file)
    options = with_defaults(spec, CheckOptions(timeout=1.0), 23000)
    run = asyncio.run(check_deployment_async(spec, options, injector=_MustNotBeCalled()))
    assert run.drill is None and run.drill_skipped is not None
    assert not run.ok
