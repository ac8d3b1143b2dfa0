"""`check --drill`: fail one node under a bounded request stream and measure the failover.

Two phases on one node: `kill` (the process is gone: connections are refused) and
`freeze` (SIGSTOP: the kernel still accepts, nothing answers). In each phase a stream of
requests (`rate`/s for `phase_seconds`, each on a new connection: GET /ping through the
load balancer with the Rancher Host) runs while the fault is injected `fault_after`
seconds in; then the node is restored and the drill waits until the load balancer sends
it traffic again. It reports per phase: requests, failed requests (target 0), when the
node left rotation, and the slowest answer. Failed requests are split into those lost in
flight before the node left rotation (at layer 4 a request already relayed to a node that
freezes cannot be replayed) and those after (the load balancer's fault: must be 0).

"Left rotation" is read from the load balancer's admin `/status` when it is reachable
(the time the backend stopped serving), else from the responses: the start time of the
last request after the fault that was served by, or lost on, the failed node.

Faults come through `FaultInjector`, a three-method protocol the lab orchestration
implements (`rke2ha lab kill|freeze|restart`); the drill never signals processes itself.
`analyse_phase` is sans-I/O and unit-tested; `run_drill` is the thin asyncio driver.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from rke2ha.check import probes
from rke2ha.check.checks import NODE_HEADER
from rke2ha.check.lbstatus import RotationProbe, rotation_probe
from rke2ha.check.probes import ProbeError
from rke2ha.check.target import CheckTarget, Endpoint
from rke2ha.errors import UsageError

Fault = Literal["kill", "freeze"]
STATUS_SOURCE = "load balancer /status"


class FaultInjector(Protocol):
    """What the drill needs from whoever runs the nodes. Each call returns once done."""

    async def kill(self, node: str) -> None:
        """Stop the node's process for good: every port refuses connections."""

    async def freeze(self, node: str) -> None:
        """Suspend the node's process (SIGSTOP): connections hang."""

    async def restore(self, node: str) -> None:
        """Bring the node back to ready: restart it if killed, thaw it if frozen."""


@dataclass(frozen=True)
class DrillSettings:
    rate: float = 20.0  # requests per second
    phase_seconds: float = 3.0  # stream length per fault
    fault_after: float = 0.5  # seconds into the stream
    request_timeout: float = 2.0  # a request slower than this counts as failed
    rejoin_timeout: float = 10.0  # how long the restored node may take to get traffic again


@dataclass(frozen=True)
class Outcome:
    """One request of the stream: when it started (s from stream start), how it ended."""

    started: float
    elapsed: float
    node: str | None  # the node that served it; None when it failed
    error: str | None = None


@dataclass
class PhaseReport:
    fault: Fault
    node: str
    requests: int
    failed: int
    # Requests that started after the node left rotation and still failed (target 0).
    failed_after_left: int
    left_rotation_after: float | None  # seconds after the fault; None: never observed
    left_rotation_seen_by: str  # "load balancer /status" or "responses"
    slowest: float
    served_by: dict[str, int]
    back_in_rotation_after: float | None = None  # seconds after restore
    errors: list[str] = field(default_factory=list)  # a few distinct reasons

    @property
    def lost_in_flight(self) -> int:
        """Failed requests that started before the node left rotation."""
        return self.failed - self.failed_after_left

    @property
    def ok(self) -> bool:
        """The node came back, and no request failed once the load balancer could know.

        At layer 4 a request already relayed to a node that then freezes is lost (nothing
        can replay its bytes); only with /status can those be told apart from failures
        the load balancer should have prevented, so without it every failure counts.
        """
        if self.back_in_rotation_after is None:
            return False
        if self.left_rotation_seen_by != STATUS_SOURCE:
            return self.failed == 0
        return self.failed_after_left == 0


@dataclass
class DrillReport:
    node: str
    settings: DrillSettings
    phases: list[PhaseReport]

    @property
    def ok(self) -> bool:
        return all(phase.ok for phase in self.phases)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "node": self.node,
            "settings": asdict(self.settings),
            "phases": [
                dict(asdict(phase), ok=phase.ok, lost_in_flight=phase.lost_in_flight)
                for phase in self.phases
            ],
        }


def analyse_phase(
    fault: Fault,
    node: str,
    outcomes: Sequence[Outcome],
    fault_at: float,
    status_left_at: float | None,
) -> PhaseReport:
    """Sum up one phase. `status_left_at`: when /status showed the node out (stream time)."""
    failed = [o for o in outcomes if o.node is None]
    if status_left_at is not None:
        left: float | None = max(0.0, status_left_at - fault_at)
        seen_by = STATUS_SOURCE
        cutoff = status_left_at
    else:
        touched = [o.started for o in outcomes if o.started >= fault_at and o.node in (node, None)]
        left = (max(touched) - fault_at) if touched else 0.0
        seen_by = "responses"
        cutoff = fault_at + left
    errors = list(dict.fromkeys(o.error for o in failed if o.error))[:3]
    return PhaseReport(
        fault=fault,
        node=node,
        requests=len(outcomes),
        failed=len(failed),
        failed_after_left=sum(1 for o in failed if o.started > cutoff),
        left_rotation_after=None if left is None else round(left, 3),
        left_rotation_seen_by=seen_by,
        slowest=round(max((o.elapsed for o in outcomes), default=0.0), 3),
        served_by=dict(Counter(o.node for o in outcomes if o.node is not None)),
        errors=errors,
    )


async def _one_request(endpoint: Endpoint, target: CheckTarget, timeout: float) -> Outcome:
    start = time.monotonic()
    try:
        answer = await probes.http_get(
            endpoint, "/ping", host=target.hostname, tls=probes.insecure_context(), timeout=timeout
        )
    except ProbeError as err:
        return Outcome(0.0, time.monotonic() - start, None, str(err))
    elapsed = time.monotonic() - start
    if answer.status != 200 or answer.text != "pong":
        return Outcome(0.0, elapsed, None, f"HTTP {answer.status}")
    return Outcome(0.0, elapsed, answer.headers.get(NODE_HEADER, ""))


async def _stream(
    endpoint: Endpoint,
    target: CheckTarget,
    settings: DrillSettings,
    fault: Callable[[], Awaitable[None]],
    rotation: RotationProbe | None,
    node: str,
) -> tuple[list[Outcome], float, float | None]:
    """Run the stream; inject `fault` on time; return outcomes, fault time, /status time."""
    origin = time.monotonic()
    count = max(1, round(settings.rate * settings.phase_seconds))
    pending: list[asyncio.Task[Outcome]] = []
    starts: list[float] = []
    fault_at = settings.fault_after
    status_left_at: float | None = None

    async def inject() -> None:
        await asyncio.sleep(fault_at)
        await fault()

    async def watch() -> None:
        nonlocal status_left_at
        if rotation is None:
            return
        await asyncio.sleep(fault_at)
        while time.monotonic() - origin < settings.phase_seconds + settings.request_timeout:
            if await rotation(node) is False:
                status_left_at = time.monotonic() - origin
                return
            await asyncio.sleep(0.05)

    injector = asyncio.ensure_future(inject())
    watcher = asyncio.ensure_future(watch())
    try:
        for index in range(count):
            delay = origin + index / settings.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            starts.append(time.monotonic() - origin)
            pending.append(
                asyncio.ensure_future(_one_request(endpoint, target, settings.request_timeout))
            )
        await injector
        results = await asyncio.gather(*pending)
        await watcher
    finally:
        for task in (injector, watcher, *pending):
            task.cancel()
    outcomes = [
        Outcome(started, r.elapsed, r.node, r.error)
        for started, r in zip(starts, results, strict=True)
    ]
    return outcomes, fault_at, status_left_at


async def _back_in_rotation(
    endpoint: Endpoint,
    target: CheckTarget,
    node: str,
    rotation: RotationProbe | None,
    settings: DrillSettings,
) -> float | None:
    """Seconds until the restored node is in rotation again; None if not within the bound."""
    origin = time.monotonic()
    while time.monotonic() - origin < settings.rejoin_timeout:
        state = await rotation(node) if rotation is not None else None
        if state is True:
            return round(time.monotonic() - origin, 3)
        if state is None:
            # No /status: concurrent requests, as lb.spread does, until the node answers one.
            batch = await asyncio.gather(
                *(_one_request(endpoint, target, settings.request_timeout) for _ in range(6))
            )
            if any(outcome.node == node for outcome in batch):
                return round(time.monotonic() - origin, 3)
        await asyncio.sleep(0.1)
    return None


async def run_drill(
    target: CheckTarget,
    injector: FaultInjector,
    node: str | None = None,
    *,
    settings: DrillSettings | None = None,
    rotation: RotationProbe | None = None,
) -> DrillReport:
    """Kill, restore, freeze, restore one node under load; the node is restored even if the
    drill is interrupted."""
    chosen = node or target.nodes[-1].name
    if chosen not in {n.name for n in target.nodes}:
        known = ", ".join(n.name for n in target.nodes)
        raise UsageError(f"--drill-node {chosen!r} is not in the spec (nodes: {known})")
    endpoint = target.lb(443)
    if endpoint is None:
        raise UsageError("the drill needs load_balancer.address and port 443")
    config = settings or DrillSettings()
    if rotation is None:
        rotation = rotation_probe(target, 443)
        # One look now: an admin endpoint that does not know this node tells us nothing.
        if rotation is not None and await rotation(chosen) is None:
            rotation = None
    phases: list[PhaseReport] = []
    faults: dict[Fault, Callable[[str], Awaitable[None]]] = {
        "kill": injector.kill,
        "freeze": injector.freeze,
    }
    for fault, inject in faults.items():
        try:
            outcomes, fault_at, status_left_at = await _stream(
                endpoint, target, config, functools.partial(inject, chosen), rotation, chosen
            )
        finally:
            await injector.restore(chosen)
        phase = analyse_phase(fault, chosen, outcomes, fault_at, status_left_at)
        phase.back_in_rotation_after = await _back_in_rotation(
            endpoint, target, chosen, rotation, config
        )
        phases.append(phase)
    return DrillReport(chosen, config, phases)
