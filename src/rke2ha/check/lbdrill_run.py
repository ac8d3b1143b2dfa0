"""The I/O of `check --drill --lb`: a request stream through the virtual IP, faults on the
host holding it over SSH, and a watch of both hosts' addresses. Decisions in `lbdrill`.

Per fault: a stream of `rate` requests/s for `phase_seconds` (each a new connection to
port 80 of the virtual IP: any HTTP answer means the path load balancer -> node works;
port 80 needs no TLS, so the stream measures the failover, not handshakes) starts; after
`fault_after` seconds the fault goes to the holder; both hosts' `ip -o addr` are read
every `poll_interval` until the stream has ended; then the fault is undone, the driver
waits until the restored host would take over again (`verdicts_pair.standby_ready`), and
watches `settle_seconds` more for the address coming back to it.

The faults are what an operator can do over SSH to a host that still answers:
- `engine`: `systemctl stop` of the engine's unit (`load_balancer.engine`'s packaged unit,
  haproxy.service or nginx.service; undone by `systemctl start`);
- `freeze`: SIGSTOP to every process of keepalived.service and the engine's unit
  (`systemctl kill --signal=SIGSTOP`, which signals all processes of the unit's cgroup:
  systemctl(1), `kill`); undone by SIGCONT. A frozen keepalived sends no adverts, as on a
  hung machine: the peer takes over once three adverts are missing plus the skew
  (Master_Down_Interval = 3 x Advertisement_Interval + (256 - Priority) / 256 s,
  RFC 3768 §6.1), 3.4-3.6 s with `advert_int 1`.
A fault is always undone, also when the drill is interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import time

from rke2ha.check import probes, verdicts_pair
from rke2ha.check.lbdrill import (
    LbDrillReport,
    LbDrillSettings,
    LbFault,
    Observed,
    Request,
    analyse,
    moved,
)
from rke2ha.check.pair_probe import PairTarget, read_view
from rke2ha.check.pair_state import KEEPALIVED_UNIT, holds_address
from rke2ha.check.probes import ProbeError
from rke2ha.check.target import Endpoint
from rke2ha.ssh.connection import Connection, connect

FAULTS: tuple[LbFault, ...] = ("engine", "freeze")
# The full view (sudo, journal, HAProxy's socket) is read at most this often: the drill must
# not load the hosts whose track scripts it is timing.
READY_INTERVAL = 1.0


def inject_command(fault: LbFault, engine_unit: str) -> str:
    unit = shlex.quote(engine_unit)
    if fault == "engine":
        return f"systemctl stop {unit}"
    return f"systemctl kill --signal=SIGSTOP {KEEPALIVED_UNIT} {unit}"


def undo_command(fault: LbFault, engine_unit: str) -> str:
    unit = shlex.quote(engine_unit)
    if fault == "engine":
        return f"systemctl start {unit}"
    return f"systemctl kill --signal=SIGCONT {KEEPALIVED_UNIT} {unit}"


class Pair:
    """Open SSH connections to both hosts, and the few things the drill asks of them."""

    def __init__(self, pair: PairTarget, conns: dict[str, Connection]) -> None:
        self.pair = pair
        self.conns = conns

    async def holders(self) -> list[str]:
        """The hosts whose interface carries the address now (spec order). `ip addr` needs
        no root, so no sudo round trip slows the poll."""
        command = f"ip -o addr show dev {shlex.quote(self.pair.interface)}"

        async def one(name: str, conn: Connection) -> str | None:
            result = await conn.run(command, root=False, timeout=2.0)
            return name if holds_address(result.stdout.splitlines(), self.pair.address) else None

        found = await asyncio.gather(*(one(n, c) for n, c in self.conns.items()))
        return [name for name in found if name is not None]

    async def standby_ready(self) -> bool:
        views = await asyncio.gather(*(read_view(c, self.pair) for c in self.conns.values()))
        return verdicts_pair.standby_ready(views).ok

    async def run(self, host: str, command: str) -> str:
        result = await self.conns[host].run(command)
        said = (result.stdout + result.stderr).strip()
        return "done" if result.ok else f"`{command}` failed: {said or result.exit_status}"


async def _request(endpoint: Endpoint, path: str, host: str, timeout: float) -> tuple[bool, str]:
    try:
        await probes.http_get(endpoint, path, host=host, timeout=timeout)
    except ProbeError as err:
        return False, str(err)
    return True, ""


async def _stream(
    endpoint: Endpoint, path: str, host: str, settings: LbDrillSettings, origin: float
) -> list[Request]:
    """`settings.requests` requests, one every 1/rate s from `origin`, each on its own task."""
    starts: list[float] = []
    tasks: list[asyncio.Task[tuple[bool, str]]] = []
    try:
        for index in range(settings.requests):
            delay = origin + index / settings.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            starts.append(time.monotonic() - origin)
            tasks.append(
                asyncio.ensure_future(_request(endpoint, path, host, settings.request_timeout))
            )
        results = await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    return [
        Request(started, ok, error or None)
        for started, (ok, error) in zip(starts, results, strict=True)
    ]


async def _phase(
    pair: Pair,
    fault: LbFault,
    holder: str,
    peer: str,
    endpoint: Endpoint,
    path: str,
    host: str,
    settings: LbDrillSettings,
) -> Observed:
    origin = time.monotonic()
    stream = asyncio.ensure_future(_stream(endpoint, path, host, settings, origin))
    fault_at = settings.fault_after
    moved_at: float | None = None
    flapped_at: float | None = None
    notes: list[str] = []
    injected = False
    try:
        await asyncio.sleep(max(0.0, origin + fault_at - time.monotonic()))
        fault_at = time.monotonic() - origin  # the command is sent now: the clock starts
        injected = True
        said = await pair.run(holder, inject_command(fault, pair.pair.engine_unit))
        if said != "done":
            notes.append(f"fault: {said}")
        watch_until = settings.phase_seconds + settings.request_timeout
        while time.monotonic() - origin < watch_until:
            holders = await pair.holders()
            now = time.monotonic() - origin
            now_moved = moved(holders, holder, peer, fault)
            if moved_at is None and now_moved:
                moved_at = now
            elif moved_at is not None and flapped_at is None and not now_moved:
                flapped_at = now
            await asyncio.sleep(settings.poll_interval)
        requests = await stream
    finally:
        stream.cancel()
        if injected:
            said = await pair.run(holder, undo_command(fault, pair.pair.engine_unit))
            notes.append(f"restore: {said}")
    came_back = await _settle(pair, holder, settings)
    return Observed(
        fault, holder, peer, requests, fault_at, moved_at, flapped_at, came_back, "; ".join(notes)
    )


async def _settle(pair: Pair, holder: str, settings: LbDrillSettings) -> bool:
    """After the restore: until the pair is ready again, then `settle_seconds`; did the
    address go back to `holder` meanwhile?"""
    came_back = False
    deadline = time.monotonic() + settings.recover_timeout
    asked = 0.0
    while time.monotonic() < deadline:
        came_back |= holder in await pair.holders()
        if time.monotonic() - asked >= READY_INTERVAL:
            asked = time.monotonic()
            if await pair.standby_ready():
                break
        await asyncio.sleep(settings.poll_interval)
    deadline = time.monotonic() + settings.settle_seconds
    while time.monotonic() < deadline:
        came_back |= holder in await pair.holders()
        await asyncio.sleep(settings.poll_interval)
    return came_back


async def _one_holder(pair: Pair, settings: LbDrillSettings) -> list[str]:
    """The holders once exactly one host holds the address and the other would take over
    (the pair may still be settling from the fault before); as seen at the deadline else."""
    deadline = time.monotonic() + settings.recover_timeout
    holders = await pair.holders()
    while time.monotonic() < deadline:
        if len(holders) == 1 and await pair.standby_ready():
            return holders
        await asyncio.sleep(READY_INTERVAL)
        holders = await pair.holders()
    return holders


async def run_lb_drill(
    pair_target: PairTarget,
    endpoint: Endpoint,
    path: str,
    host: str,
    settings: LbDrillSettings | None = None,
) -> LbDrillReport:
    """Each fault in turn on whichever host holds the address then; both hosts restored."""
    config = settings or LbDrillSettings()
    conns: dict[str, Connection] = {}
    try:
        for target in pair_target.hosts:
            conns[target.node] = await connect(target)
        pair = Pair(pair_target, conns)
        reports = []
        for fault in FAULTS:
            holders = await _one_holder(pair, config)
            if len(holders) != 1:
                names = ", ".join(holders) or "none"
                seen = Observed(fault, names, "", [], 0.0, None, None, None,
                                f"not run: hosts holding the address: {names}")  # fmt: skip
                reports.append(analyse(seen))
                continue
            holder = holders[0]
            peer = next(name for name in conns if name != holder)
            seen = await _phase(pair, fault, holder, peer, endpoint, path, host, config)
            reports.append(analyse(seen))
        return LbDrillReport(config, reports, pair_target.engine)
    finally:
        for conn in conns.values():
            with contextlib.suppress(Exception):
                await conn.close()
