"""Read both hosts of a keepalived pair over SSH (the thin adapter behind `verdicts_pair`).

The same SSH code as pre-flight and `up` (`rke2ha.ssh`): host keys verified against the
spec's known_hosts, root through `sudo -n` (HAProxy's stats socket is mode 600). Each host
gets one read-only command, `pair_state.view_script`; a host that cannot be reached is a
`HostView` with `error`, never an exception, so the other host is still judged.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from rke2ha.check import verdicts_pair
from rke2ha.check.pair_state import HostView, parse_view, view_script
from rke2ha.check.result import CheckResult
from rke2ha.lbhost.decide import ENGINES
from rke2ha.render.common import DEFAULT_LAYOUT
from rke2ha.spec import Spec
from rke2ha.ssh.connection import Connection, SshError, connect
from rke2ha.ssh.target import Target, host_targets


@dataclass(frozen=True)
class PairTarget:
    """Where the pair is: its hosts, the virtual IP and the interface it lives on."""

    hosts: tuple[Target, ...]
    address: str
    interface: str
    socket_path: str | None  # HAProxy's stats socket; None for an engine without one
    nodes: tuple[str, ...]
    engine: str = "haproxy"  # `load_balancer.engine`

    @property
    def engine_unit(self) -> str:
        return ENGINES[self.engine].unit

    def script(self) -> str:
        return view_script(self.interface, self.socket_path, self.engine)


def pair_target(spec: Spec) -> PairTarget | None:
    """The pair of `load_balancer.hosts` sharing a virtual IP, or None without one."""
    lb = spec.load_balancer
    if len(lb.hosts) != 2 or lb.vrrp is None or not lb.address:
        return None
    return PairTarget(
        hosts=tuple(host_targets(spec)),
        address=lb.address,
        interface=lb.vrrp.interface,
        # The rendered global section's `stats socket` on a host (`render/haproxy.py`).
        socket_path=DEFAULT_LAYOUT.haproxy_socket if lb.engine == "haproxy" else None,
        nodes=tuple(node.name for node in spec.nodes),
        engine=lb.engine,
    )


async def read_view(conn: Connection, pair: PairTarget) -> HostView:
    """One host's view over an open connection."""
    result = await conn.run(pair.script())
    if result.timed_out:
        return HostView(conn.target.node, error="the read-only script did not finish in time")
    return parse_view(conn.target.node, result.stdout, pair.address, pair.engine)


async def _view(target: Target, pair: PairTarget) -> HostView:
    try:
        conn = await connect(target)
    except SshError as err:
        return HostView(target.node, error=err.message)
    try:
        return await read_view(conn, pair)
    except SshError as err:
        return HostView(target.node, error=err.message)
    finally:
        await conn.close()


async def read_views(pair: PairTarget) -> list[HostView]:
    """Both hosts at once, in spec order."""
    return list(await asyncio.gather(*(_view(target, pair) for target in pair.hosts)))


async def pair_checks(pair: PairTarget) -> list[CheckResult]:
    views = await read_views(pair)
    return verdicts_pair.pair_results(views, pair.address, pair.nodes)
